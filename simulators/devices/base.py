"""A Modbus device emulator: the physical model seen through the profile's register map.

Registers are built on demand from the model with the SAME profile and codec the edge decodes with
(`resolve_points` + `codec.encode`/`encode_bit`), so what a poll returns is by construction what the
profile says it means. Only points overlapping the requested range are encoded, so reads always see
the model as it is now (a test may poke the model from another thread) and stay cheap.
Writes are accepted only where the profile declares a command; anything else is refused with the
exception a real device would give (2: illegal data address, 3: illegal data value).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from device_profiles.codec import CodecError, Value, encode, encode_bit
from device_profiles.identify import resolved
from device_profiles.model import Command, DataType, Profile, Table
from device_profiles.points import CommandError, ResolvedPoint, resolve_command, resolve_points
from simulators.devices.faults import Faults

ILLEGAL_FUNCTION, ILLEGAL_ADDRESS, ILLEGAL_VALUE, DEVICE_FAILURE = 1, 2, 3, 4

_RAW_RANGE = {DataType.UINT16: 1 << 16, DataType.UINT32: 1 << 32}


class ModbusError(Exception):
    """A request the device answers with a Modbus exception code."""

    def __init__(self, code: int, detail: str = "") -> None:
        self.code = code
        super().__init__(f"exception {code}: {detail}")


Getter = Callable[[ResolvedPoint], Value]
BlockGetter = Callable[[ResolvedPoint, int], Value]


class ModbusDevice:
    """Base of the family emulators; subclasses fill `getters`/`block_getters` and `apply_command`."""

    family = ""

    def __init__(self, device_id: str, profile: Profile, model: Any, seed: int = 0) -> None:
        if not profile.is_modbus:
            raise TypeError(f"{profile.id} is not a Modbus profile")
        self.id = device_id
        self.profile = profile
        self.model = model
        self.faults = Faults()
        self.faults.rng.seed(seed + 7919)
        self.lock = threading.RLock()
        self.points = resolve_points(profile)
        self.getters: dict[str, Getter] = {}
        self.block_getters: dict[str, BlockGetter] = {}
        self.writes: list[tuple[str, int | None, bool | int]] = []  # commands applied, for tests/logs
        self._by_table: dict[Table, list[ResolvedPoint]] = {t: [] for t in Table}
        for p in self.points:
            self._by_table[p.table].append(p)
        for pts in self._by_table.values():
            pts.sort(key=lambda p: p.address)
        self._commands: dict[tuple[Table, int], list[tuple[Command, int | None]]] = {}
        for c in profile.commands:
            idxs: list[int | None] = list(profile.instance_range(c.block)) if c.block else [None]
            for i in idxs:
                probe = c.value if c.value is not None else (True if c.value_type == "bool" else 0)
                rc = resolve_command(profile, c.key, i, probe)
                self._commands.setdefault((rc.table, rc.address), []).append((c, i))
        self.firmware = self._firmware(model)
        self._ident, self._refuse = self._identification()
        # Address window per table: reads wholly or partly outside it get exception 2; gaps inside
        # read as 0 (so an edge reading one contiguous span across unused registers works).
        self._window: dict[Table, tuple[int, int]] = {}
        for t in Table:
            ends = [(p.address, p.end) for p in self._by_table[t]]
            ends += [(a, a + 1) for (tt, a) in self._commands if tt is t]
            ends += [(a, a + 1) for (tt, a) in self._ident if tt is t]
            if ends:
                self._window[t] = (min(a for a, _ in ends), max(e for _, e in ends))

    # ---- identification (what `edge-agent scan` reads) ----
    def _firmware(self, model: Any) -> str:
        """The version this device reports: the site file's `params: {firmware: …}` when given,
        else the example of the profile's `firmware` identify read (a version inside its range)."""
        params = getattr(model, "params", None)
        if params is not None and "firmware" in getattr(params, "model_fields_set", ()):
            return str(params.firmware)
        reads = self.profile.identify.reads if self.profile.identify else []
        ex = next((r.example for r in reads if r.key == "firmware" and r.example is not None), None)
        return str(ex) if ex is not None else str(getattr(params, "firmware", "") or "")

    def _identification(self) -> tuple[dict[tuple[Table, int], int], dict[tuple[Table, int], int]]:
        """Registers the profile's identify reads name, as the real device answers them (the
        expected vendor/model codes, the firmware version, examples), and the addresses it answers
        with an exception. Registers that are also points keep the point's live value."""
        regs: dict[tuple[Table, int], int] = {}
        refuse: dict[tuple[Table, int], int] = {}
        for r in self.profile.identify.reads if self.profile.identify else []:
            if r.exception is not None:
                refuse[(r.table, r.address)] = r.exception
                continue
            rp = resolved(r, self.profile)
            v: Value | None = r.expect if r.expect is not None else r.example
            if r.key == "firmware" and r.expect is None:
                v = self.firmware
            if v is None:
                v = self.default(rp)
            for k, w in enumerate(encode(rp, v)):
                regs[(r.table, r.address + k)] = w
        return regs, refuse

    # ---- values ----
    def value(self, p: ResolvedPoint) -> Value:
        """Engineering value of one point, from the model."""
        if p.block is None:
            g = self.getters.get(p.key)
            return g(p) if g else self.default(p)
        bg = self.block_getters.get(p.key)
        return bg(p, p.index or 0) if bg else self.default(p)

    def default(self, p: ResolvedPoint) -> Value:
        if p.spec.type is DataType.STRING:
            return ""
        if p.spec.type is DataType.ENUM:
            return min((p.spec.enum or {0: ""}).keys())
        if p.spec.type.is_bool or p.table.is_bit:
            return False
        return p.spec.offset

    def values(self) -> dict[str, Value]:
        """Every point's engineering value now (what a decode of the registers should give)."""
        with self.lock:
            return {p.id: self.value(p) for p in self.points}

    def _encode(self, p: ResolvedPoint, v: Value) -> list[int]:
        try:
            return encode(p, v)
        except CodecError:
            t = p.spec.type
            if t in _RAW_RANGE and not isinstance(v, str):
                # Counters wrap like the device's own (e.g. 32-bit energy).
                raw = round((float(v) - p.spec.offset) / p.spec.scale) % _RAW_RANGE[t]
                return encode(p, raw * p.spec.scale + p.spec.offset)
            if t in (DataType.INT16, DataType.INT32) and not isinstance(v, str):
                lim = (1 << (15 if t is DataType.INT16 else 31)) - 1
                raw = max(-lim - 1, min(lim, round((float(v) - p.spec.offset) / p.spec.scale)))
                return encode(p, raw * p.spec.scale + p.spec.offset)
            raise

    # ---- Modbus data access (called by transports through simulators.transport.pdu) ----
    def _check_window(self, table: Table, address: int, count: int) -> None:
        for a in range(address, address + count) if self._refuse else ():
            code = self._refuse.get((table, a))
            if code is not None:
                raise ModbusError(code, f"{table.value} {a} is past the end of the map")
        w = self._window.get(table)
        if w is None or address < w[0] or address + count > w[1]:
            raise ModbusError(ILLEGAL_ADDRESS, f"{table.value} {address}..{address + count - 1} not mapped")

    def read_registers(self, table: Table, address: int, count: int) -> list[int]:
        self._check_window(table, address, count)
        regs = [self._ident.get((table, a), 0) for a in range(address, address + count)] if self._ident else [0] * count
        end = address + count
        with self.lock:
            for p in self._by_table[table]:
                if p.end <= address or p.address >= end:
                    continue
                v = self.value(p)
                if p.spec.type is DataType.BIT:
                    i = p.address - address
                    regs[i] = encode_bit(p, regs[i], bool(v))
                    continue
                words = self._encode(p, v)
                for k, w in enumerate(words):
                    i = p.address + k - address
                    if 0 <= i < count:
                        regs[i] = w
        return regs

    def read_bits(self, table: Table, address: int, count: int) -> list[bool]:
        return [bool(r) for r in self.read_registers(table, address, count)]

    def write(self, table: Table, address: int, values: list[int] | list[bool]) -> None:
        """FC 5/6/15/16. Every address must be a declared command; applied in order."""
        plan: list[tuple[Command, int | None, bool | int]] = []
        for k, raw in enumerate(values):
            cands = self._commands.get((table, address + k))
            if not cands:
                raise ModbusError(ILLEGAL_ADDRESS, f"{table.value} {address + k} is not writable")
            v: bool | int = bool(raw) if table is Table.COIL else int(raw)
            chosen = None
            for c, i in cands:
                if c.value is not None:
                    if (bool(v) == c.value) if isinstance(c.value, bool) else (v == c.value):
                        chosen = (c, i, c.value)
                        break
                elif c.value_type == "bool" and (table is Table.COIL or v in (0, 1)):
                    chosen = (c, i, bool(v))
                    break
                elif c.value_type == "uint16":
                    chosen = (c, i, v)
                    break
            if chosen is None:
                raise ModbusError(ILLEGAL_VALUE, f"{v!r} not accepted at {table.value} {address + k}")
            try:
                resolve_command(self.profile, chosen[0].key, chosen[1], chosen[2])
            except CommandError as e:
                raise ModbusError(ILLEGAL_VALUE, str(e)) from None
            plan.append(chosen)
        with self.lock:
            for c, i, v in plan:
                self.apply_command(c.key, i, v)
                self.writes.append((c.key, i, v))

    def apply_command(self, key: str, index: int | None, value: bool | int) -> None:
        raise ModbusError(ILLEGAL_FUNCTION, f"{self.profile.id} has no handler for {key}")

    # ---- time ----
    def step(self, dt: float) -> None:
        with self.lock:
            self.model.step(dt)


def enum_value(p: ResolvedPoint, label: str, fallback: str = "idle") -> Value:
    """A model state name as the profile's enum label (profiles differ in the states they know)."""
    labels = set((p.spec.enum or {}).values())
    if label in labels:
        return label
    return fallback if fallback in labels else min((p.spec.enum or {0: ""}).keys())
