"""`edge-agent scan`: find what answers on a bus and which model it is.

Modbus: for each line setting (baud, parity) and each unit id, ONE presence request (holding
register 0; any answer counts, an exception too, except a gateway's "nobody there" codes 10 and
11). Only on a unit that answered, every identification read the candidate profiles declare is made
once, and `device_profiles.identify` decides which profile fits. A dead address costs exactly one
request timeout (no retries), so a bus of N slaves costs (units − N) timeouts per setting plus a
few short transactions per slave; each request is also bounded by a hard guard, so a driver that
hangs cannot hold the bus forever.

Serial line receivers (they talk, we listen): at each baud, lines are collected for up to the
profiles' `identify.listen_s` and parsed with every line profile; `min_lines` valid lines of one
profile (checksum included) identify it.

I/O lives here; the verdicts (device_profiles.identify) and the config written from a report
(edge_agent.scan_config) are pure.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from device_profiles.identify import Answer, Match, ReadKey, identify, requests
from device_profiles.lineproto import LineError, parse_line
from device_profiles.model import Profile, Table, TransportKind
from edge_agent.budget import read_time
from edge_agent.drivers.base import ModbusDriver, TransactionError

PRESENCE: ReadKey = (Table.HOLDING, 0, 1)
NOBODY_THERE = {10, 11}  # gateway path unavailable / gateway target failed to respond (Modbus TCP gateways)
USUAL_BAUDS = (9600, 19200, 38400)
USUAL_PARITIES = ("N", "E")


@dataclass(frozen=True, order=True)
class Setting:
    """How the line is set: baud, parity, stop bits (RTU, serial line); all zero for Modbus TCP."""

    baud: int = 0
    parity: str = "N"
    stop_bits: int = 1

    def __str__(self) -> str:
        return f"{self.baud} 8{self.parity}{self.stop_bits}" if self.baud else "tcp"


@dataclass
class Found:
    """One unit that answered at one setting, with every answer it gave."""

    unit: int
    setting: Setting
    answers: dict[ReadKey, Answer]
    matches: list[Match]
    slow_s: float | None = None  # found only when waiting this long: poll it with a longer timeout

    @property
    def fitting(self) -> list[Match]:
        return [m for m in self.matches if m.fits]

    @property
    def model(self) -> Match | None:
        """The one profile that fits; None when none or several do (never guessed)."""
        fit = self.fitting
        return fit[0] if len(fit) == 1 else None

    @property
    def verdict(self) -> str:
        n = len(self.fitting)
        return "identified" if n == 1 else ("ambiguous" if n > 1 else "unknown")

    def read_text(self) -> str:
        """What was read, for a device nobody recognised: `holding 0: [0x0001], input 900: exception 2`."""
        return ", ".join(f"{t.value} {a}" + (f"+{n - 1}" if n > 1 else "") + f": {ans}"
                         for (t, a, n), ans in self.answers.items())


@dataclass
class LineFound:
    """A serial line receiver heard at one baud."""

    setting: Setting
    lines: int
    valid: dict[str, int]  # profile → lines it parsed
    sample: list[str]  # a few raw lines, for a device nobody recognised
    profile: str | None  # the one profile with enough valid lines


@dataclass
class ScanReport:
    transport: TransportKind
    where: str  # serial device, or host:port
    settings: list[Setting]
    found: list[Found] = field(default_factory=list)
    lines: list[LineFound] = field(default_factory=list)
    transactions: int = 0
    seconds: float = 0.0
    late: list[tuple[Setting, int]] = field(default_factory=list)  # garbled or late answers, asked again
    every_unit: bool = False  # a Modbus TCP device answering on every unit id tried (collapsed to one)
    errors: list[str] = field(default_factory=list)

    def answering(self, s: Setting) -> list[Found]:
        return [f for f in self.found if f.setting == s]

    def chosen(self) -> Setting | None:
        """The line setting for the config: where most units were identified (then answered);
        the first such in scan order."""
        best: tuple[int, int] | None = None
        pick = None
        for s in self.settings:
            fs = self.answering(s)
            key = (sum(1 for f in fs if f.model), len(fs))
            if fs and (best is None or key > best):
                best, pick = key, s
        return pick

    def devices(self) -> list[Found]:
        """Units answering at the chosen setting, by unit id."""
        s = self.chosen()
        return sorted(self.answering(s), key=lambda f: f.unit) if s else []

    def elsewhere(self) -> list[Found]:
        """Units that answered only at another setting: they cannot share the chosen one's line."""
        here = {f.unit for f in self.devices()}
        s = self.chosen()
        out: dict[int, Found] = {}
        for f in self.found:
            if f.setting != s and f.unit not in here:
                out.setdefault(f.unit, f)
        return [out[u] for u in sorted(out)]


def rtu_timeout(baud: int, reply_s: float, largest: int = 8) -> float:
    """Long enough for the slowest identification read at this baud on the wire, plus the time a
    device may take to start answering (`reply_s`)."""
    return read_time(baud, Table.HOLDING, largest) + reply_s


def candidates(profiles: Iterable[Profile], kind: TransportKind) -> list[Profile]:
    return sorted((p for p in profiles if p.transport.kind is kind and p.identify is not None), key=lambda p: p.id)


async def ask(drv: ModbusDriver, unit: int, rk: ReadKey, guard_s: float) -> Answer:
    table, address, count = rk
    try:
        regs = await asyncio.wait_for(drv.read(unit, table, address, count), guard_s)
    except TransactionError as e:
        if e.kind == "exception":
            return Answer(exception=e.code)
        return Answer(failure=e.kind)
    except TimeoutError:
        return Answer(failure="timeout (guard)")
    return Answer(registers=tuple(regs))


def present(a: Answer) -> bool:
    return a.registers is not None or (a.exception is not None and a.exception not in NOBODY_THERE)


Progress = Callable[[Setting, int], None]


async def scan_modbus(
    kind: TransportKind,
    where: str,
    open_driver: Callable[[Setting, float], ModbusDriver],
    settings: list[Setting],
    units: Iterable[int],
    profiles: Iterable[Profile],
    timeout_s: Callable[[Setting], float],
    progress: Progress | None = None,
    slow_timeout_s: float = 1.0,
) -> ScanReport:
    """Walk every setting × unit; identify every unit that answers.

    Late answers: bytes that are not the asked unit's answer mean a slower slave answered a request
    made before (on a half-duplex line its reply also delays or garbles the next ones). The units
    that went silent since the last clean answer are then asked again at the end of that setting,
    waiting `slow_timeout_s`, so neither the slow slave nor its neighbours are missed."""
    cands = candidates(profiles, kind)
    reads = [rk for rk in requests(cands) if rk != PRESENCE]
    unit_list = list(units)
    rep = ScanReport(kind, where, list(settings))
    t0 = time.monotonic()
    for s in settings:
        suspects: list[int] = []
        silent: list[int] = []  # units that did not answer since the last clean answer
        await _walk(rep, open_driver(s, timeout_s(s)), s, unit_list, reads, cands, timeout_s(s), progress,
                    suspects, silent)
        if suspects:
            n = len(rep.found)
            await _walk(rep, open_driver(s, slow_timeout_s), s, sorted(set(suspects)), reads, cands,
                        slow_timeout_s, None, [], [])
            for f in rep.found[n:]:
                f.slow_s = slow_timeout_s
    rep.found.sort(key=lambda f: (rep.settings.index(f.setting), f.unit))
    rep.seconds = time.monotonic() - t0
    _collapse_direct_device(rep, unit_list)
    return rep


async def _walk(rep: ScanReport, drv: ModbusDriver, s: Setting, units: list[int], reads: list[ReadKey],
                cands: list[Profile], timeout: float, progress: Progress | None, suspects: list[int],
                silent: list[int]) -> None:
    guard = timeout * 3 + 1.0
    try:
        await drv.connect()
    except TransactionError as e:
        rep.errors.append(f"{rep.where} at {s}: {e}")
        return
    try:
        for unit in units:
            if progress:
                progress(s, unit)
            first = await ask(drv, unit, PRESENCE, guard)
            rep.transactions += 1
            if first.failure == "crc":  # someone else's late answer (or noise): ask them all again, slowly
                rep.late.append((s, unit))
                suspects += [*silent, unit]
                silent.clear()
                await asyncio.sleep(timeout * 3)  # let the line go quiet
                continue
            if not present(first):
                silent.append(unit)
                continue
            silent.clear()
            answers = {PRESENCE: first}
            for rk in reads:
                answers[rk] = await ask(drv, unit, rk, guard)
                rep.transactions += 1
            if any(a.failure == "crc" for a in answers.values()):
                rep.late.append((s, unit))
                suspects.append(unit)
                await asyncio.sleep(timeout * 3)
                continue
            rep.found.append(Found(unit, s, answers, identify(cands, answers)))
    finally:
        await drv.close()


def _collapse_direct_device(rep: ScanReport, units: list[int]) -> None:
    """Many Modbus TCP devices answer whatever unit id they are asked: answering on every unit id
    tried, with the same answers, is one device (kept at the first unit id)."""
    if rep.transport is not TransportKind.MODBUS_TCP or len(units) < 2:
        return
    fs = rep.found
    if len(fs) == len(units) and all(f.answers == fs[0].answers for f in fs):
        rep.found = fs[:1]
        rep.every_unit = True


def scan_line(
    serial_port: str,
    bauds: Iterable[int],
    profiles: Iterable[Profile],
    parity: str = "N",
    listen_s: float | None = None,
    progress: Progress | None = None,
) -> ScanReport:
    """Listen at each baud until one line profile has its `min_lines` valid lines (or the longest
    `listen_s` of the candidates has passed). Stops at the first baud that identified a device:
    a port carries one receiver."""
    import serial

    cands = candidates(profiles, TransportKind.SERIAL_LINE)
    settings = [Setting(b, parity, 1) for b in bauds]
    rep = ScanReport(TransportKind.SERIAL_LINE, serial_port, settings)
    window = listen_s or max((p.identify.listen_s for p in cands if p.identify), default=20.0)
    t0 = time.monotonic()
    for s in settings:
        if progress:
            progress(s, 0)
        valid = {p.id: 0 for p in cands}
        sample: list[str] = []
        lines = 0
        try:
            port = serial.Serial(serial_port, s.baud, parity=s.parity, stopbits=s.stop_bits, timeout=0.2)
        except (OSError, serial.SerialException) as e:
            rep.errors.append(f"{serial_port} at {s}: {e}")
            continue
        buf = bytearray()
        winner = None
        try:
            port.reset_input_buffer()
            end = time.monotonic() + window
            while time.monotonic() < end and winner is None:
                buf += port.read(256)
                while b"\n" in buf:
                    raw, _, rest = bytes(buf).partition(b"\n")
                    buf = bytearray(rest)
                    raw = raw.rstrip(b"\r")
                    if not raw.strip():
                        continue
                    lines += 1
                    if len(sample) < 3:
                        sample.append(raw[:80].decode("ascii", "replace"))
                    for p in cands:
                        try:
                            parse_line(p, raw)
                        except LineError:
                            continue
                        valid[p.id] += 1
                    winner = _line_winner(cands, valid)
                if len(buf) > 4096:
                    buf.clear()  # no terminator at all: wrong baud or not a line device
        finally:
            port.close()
        rep.lines.append(LineFound(s, lines, {k: v for k, v in valid.items() if v}, sample, winner))
        if winner is not None:
            break
    rep.seconds = time.monotonic() - t0
    return rep


def _line_winner(cands: list[Profile], valid: dict[str, int]) -> str | None:
    done = [p.id for p in cands if p.identify is not None and valid[p.id] >= p.identify.min_lines]
    return done[0] if len(done) == 1 else None
