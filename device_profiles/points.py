"""Expand a profile's points and blocks into concrete, addressed points.

Block points are declared once for instance `first`; here every instance gets its own absolute
address and its wire name (`port.3.connector_temp`). Everything downstream (poll planning, the
simulators' register maps, time-series mapping) works on this flat list.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from device_profiles.model import (
    Command,
    EventSpec,
    LineTransport,
    ModbusPoint,
    ModbusTransport,
    Order,
    PollClass,
    Profile,
    Table,
    point_id,
)


@dataclass(frozen=True, slots=True)
class ResolvedPoint:
    """A point at its absolute address, with the transport's default orders filled in."""

    id: str
    spec: ModbusPoint
    table: Table
    address: int
    count: int
    byte_order: Order
    word_order: Order
    block: str | None
    index: int | None

    @property
    def key(self) -> str:
        return self.spec.key

    @property
    def poll(self) -> PollClass:
        return self.spec.poll

    @property
    def deadband(self) -> float:
        return self.spec.deadband

    @property
    def event(self) -> EventSpec | None:
        return self.spec.event

    @property
    def end(self) -> int:
        """One past the last address this point occupies."""
        return self.address + self.count


@dataclass(frozen=True, slots=True)
class ResolvedCommand:
    """A command bound to one instance: the exact table/address/value to write."""

    key: str
    table: Table
    address: int
    value: bool | int
    safety: bool


class CommandError(ValueError):
    """The command is not declared by the profile, or its arguments do not fit."""


def resolve_points(profile: Profile) -> tuple[ResolvedPoint, ...]:
    """All points of a Modbus profile, device points first, then blocks instance by instance.

    Computed once per profile object (profiles are immutable) and kept on it.
    """
    if profile._resolved is None:
        profile._resolved = _resolve(profile)
    result: tuple[ResolvedPoint, ...] = profile._resolved
    return result


def _resolve(profile: Profile) -> tuple[ResolvedPoint, ...]:
    if not isinstance(profile.transport, ModbusTransport):
        return ()
    tr = profile.transport
    out: list[ResolvedPoint] = []

    def add(p: ModbusPoint, address: int, block: str | None, index: int | None) -> None:
        out.append(
            ResolvedPoint(
                id=point_id(p.key, block, index),
                spec=p,
                table=p.table,
                address=address,
                count=p.register_count,
                byte_order=p.byte_order or tr.byte_order,
                word_order=p.word_order or tr.word_order,
                block=block,
                index=index,
            )
        )

    for p in profile.points:
        add(p, p.address, None, None)
    for b in profile.blocks:
        for n in range(b.count):
            for p in b.points:
                add(p, p.address + n * b.stride_for(p.table), b.key, b.first + n)
    return tuple(out)


def overlaps(points: tuple[ResolvedPoint, ...]) -> list[tuple[str, str]]:
    """Pairs of points that claim the same register (bit points may share a register)."""
    found: list[tuple[str, str]] = []
    by_table: dict[Table, list[ResolvedPoint]] = {}
    for p in points:
        by_table.setdefault(p.table, []).append(p)
    for pts in by_table.values():
        pts = sorted(pts, key=lambda p: p.address)
        for a, b in itertools.pairwise(pts):
            if b.address < a.end and not (a.spec.type.value == "bit" and b.spec.type.value == "bit"):
                found.append((a.id, b.id))
    return found


def resolve_command(
    profile: Profile, key: str, index: int | None = None, value: bool | int | None = None
) -> ResolvedCommand:
    """Bind a declared command to an instance and value, or refuse with a reason."""
    cmd: Command | None = profile.command(key)
    if cmd is None:
        declared = ", ".join(sorted(c.key for c in profile.commands)) or "none"
        raise CommandError(f"profile {profile.id} declares no command {key!r} (declared: {declared})")
    address = cmd.address
    if cmd.block is not None:
        if index is None:
            raise CommandError(f"command {key!r} needs an instance number of {cmd.block!r}")
        rng = profile.instance_range(cmd.block)
        if index not in rng:
            raise CommandError(f"{cmd.block} {index} does not exist (valid: {rng.start}..{rng.stop - 1})")
        block = profile.block(cmd.block)
        assert block is not None
        address += (index - rng.start) * block.stride_for(cmd.table)
    elif index is not None:
        raise CommandError(f"command {key!r} applies to the whole device; no instance number expected")
    if cmd.value is not None:
        if value is not None and value != cmd.value:
            raise CommandError(f"command {key!r} always writes {cmd.value!r}")
        value = cmd.value
    if value is None:
        raise CommandError(f"command {key!r} needs a value")
    if cmd.value_type == "bool":
        if not isinstance(value, bool) and value not in (0, 1):
            raise CommandError(f"command {key!r} takes true/false, got {value!r}")
        value = bool(value)
    elif isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFFFF:
        raise CommandError(f"command {key!r} takes an integer 0..65535, got {value!r}")
    return ResolvedCommand(key=key, table=cmd.table, address=address, value=value, safety=cmd.safety)


def line_point_ids(profile: Profile) -> list[str]:
    """Wire names of every value a serial-line device can report."""
    tr = profile.transport
    if not isinstance(tr, LineTransport):
        return []
    return [point_id(f.key, tr.block, i) for i in range(1, tr.instance_count + 1) for f in tr.fields]
