"""Report by exception: which values to send, when to send a full snapshot, which events to emit. Pure.

A value is sent when it moved by at least its deadband since it was last *sent* (not last read, so a
slow drift is still reported; a move of exactly the deadband is sent, docs/profiles.md), when it
first appears, and in every periodic full snapshot so the cloud can rebuild state after any loss.
Points declaring `event:` produce an event on every change of state (waterflow, tamper, smoke, bay
occupied/freed, port state).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from device_profiles.model import EventSpec, LineTransport, Profile
from device_profiles.points import resolve_points

Value = bool | int | float | str


@dataclass(frozen=True, slots=True)
class PointInfo:
    deadband: float
    event: EventSpec | None


@dataclass(frozen=True, slots=True)
class StateChange:
    point: str
    value: Value
    previous: Value
    severity: str
    text: str


@dataclass(frozen=True, slots=True)
class Outcome:
    values: dict[str, Value]  # empty: nothing to send
    snapshot: bool
    events: list[StateChange]


def point_info(profile: Profile) -> dict[str, PointInfo]:
    """Deadband and event spec per wire point id (Modbus points and line-protocol fields)."""
    tr = profile.transport
    if isinstance(tr, LineTransport):
        out: dict[str, PointInfo] = {}
        for i in profile.instance_range(tr.block):
            for f in tr.fields:
                out[f"{tr.block}.{i}.{f.key}"] = PointInfo(f.deadband, f.event)
        return out
    return {p.id: PointInfo(p.deadband, p.event) for p in resolve_points(profile)}


def _moved(old: Value, new: Value, deadband: float) -> bool:
    """At least `deadband` apart. Decoded values are scaled binary floats (80.3 - 80.2 is
    0.0999…), so a move equal to the deadband up to float rounding counts as equal."""
    if isinstance(old, bool) or isinstance(new, bool) or isinstance(old, str) or isinstance(new, str):
        return old != new
    if deadband <= 0:
        return old != new
    d = abs(new - old)
    return d >= deadband or math.isclose(d, deadband, rel_tol=1e-9)


def describe(spec: EventSpec, pid: str, value: Value, previous: Value) -> str:
    key = str(value).lower() if isinstance(value, bool) else str(value)
    label = spec.labels.get(key)
    return f"{pid}: {label}" if label else f"{pid}: {previous} → {value}"


@dataclass
class Reporter:
    """The RBE state of one device."""

    info: dict[str, PointInfo]
    snapshot_s: float
    sent: dict[str, Value] = field(default_factory=dict)
    state: dict[str, Value] = field(default_factory=dict)  # last read value of event points
    current: dict[str, Value] = field(default_factory=dict)  # latest value of every point
    last_snapshot: float | None = None

    def __post_init__(self) -> None:
        self.event_points = frozenset(k for k, pi in self.info.items() if pi.event is not None and pi.event.on_change)
        self.deadband = {k: pi.deadband for k, pi in self.info.items()}

    def update(self, values: dict[str, Value], now: float) -> Outcome:
        """Fold in one poll's values (points that could not be read are simply absent)."""
        events: list[StateChange] = []
        for pid in self.event_points.intersection(values):
            v = values[pid]
            prev = self.state.get(pid)
            if prev is not None and prev != v:
                spec = self.info[pid].event
                assert spec is not None
                events.append(StateChange(pid, v, prev, spec.severity_hint, describe(spec, pid, v, prev)))
            self.state[pid] = v
        self.current.update(values)
        snapshot = self.last_snapshot is None or now - self.last_snapshot >= self.snapshot_s
        if snapshot:
            self.last_snapshot = now
            out = dict(self.current)  # poll classes are read at different times: send the latest of all
        else:
            out = {}
            sent = self.sent
            for pid, v in values.items():
                old = sent.get(pid)
                if old is None or (old != v and _moved(old, v, self.deadband.get(pid, 0.0))):
                    out[pid] = v
        self.sent.update(out)
        return Outcome(out, snapshot and bool(out), events)
