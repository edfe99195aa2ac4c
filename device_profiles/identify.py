"""Recognise a device's model from what it answered to the reads its profile declares. Pure.

`edge-agent scan` reads, on each unit that answered, every identification register any candidate
profile declares (each distinct read once), then asks every profile whether the answers fit it.
A profile fits when each of its reads was answered (with the declared value where it has
`expect:`, with the declared exception where it has `exception:`). Exactly one fitting profile is
an identification; none or several are reported with what was read, never guessed.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from packaging.version import InvalidVersion, Version

from device_profiles.codec import CodecError, Value, decode
from device_profiles.model import IdentifyRead, ModbusTransport, Order, Profile, Table
from device_profiles.points import ResolvedPoint

ReadKey = tuple[Table, int, int]  # (table, address, count): one Modbus request


@dataclass(frozen=True, slots=True)
class Answer:
    """What one request got: registers (bits as 0/1), or a Modbus exception code, or a failure
    (`timeout`, `crc`, `io`: the device said nothing usable)."""

    registers: tuple[int, ...] | None = None
    exception: int | None = None
    failure: str | None = None

    def __str__(self) -> str:
        if self.registers is not None:
            return "[" + ", ".join(f"0x{r:04x}" for r in self.registers) + "]"
        if self.exception is not None:
            return f"exception {self.exception}"
        return self.failure or "?"


def resolved(read: IdentifyRead, profile: Profile) -> ResolvedPoint:
    """The read as an addressed point with the profile's default byte and word order."""
    tr = profile.transport
    spec = read.point()
    bo = tr.byte_order if isinstance(tr, ModbusTransport) else Order.BIG
    wo = tr.word_order if isinstance(tr, ModbusTransport) else Order.BIG
    return ResolvedPoint(read.key, spec, read.table, read.address, spec.register_count,
                         read.byte_order or bo, read.word_order or wo, None, None)


def read_key(read: IdentifyRead) -> ReadKey:
    return (read.table, read.address, read.point().register_count)


def requests(profiles: Iterable[Profile]) -> list[ReadKey]:
    """Every distinct request the profiles' identify sections need, in a stable order."""
    out: dict[ReadKey, None] = {}
    for p in profiles:
        if p.identify is not None:
            for r in p.identify.reads:
                out.setdefault(read_key(r), None)
    return list(out)


@dataclass(frozen=True)
class Match:
    profile: str
    fits: bool
    values: dict[str, Value] = field(default_factory=dict)  # decoded answers, by identify key
    reasons: list[str] = field(default_factory=list)  # why it does not fit
    firmware: str | None = None
    firmware_ok: bool | None = None  # None: the profile gives no range, or the version is unreadable


def _same(got: Value, want: object) -> bool:
    if isinstance(want, bool) or isinstance(got, bool):
        return isinstance(got, bool) and isinstance(want, bool) and got == want
    if isinstance(want, (int, float)) and isinstance(got, (int, float)):
        return abs(float(got) - float(want)) <= 1e-6 * max(1.0, abs(float(want)))
    return got == want


def match(profile: Profile, answers: dict[ReadKey, Answer]) -> Match:
    """Does `profile` fit these answers? Reads the scan did not make count as not fitting."""
    if profile.identify is None or not profile.identify.reads:
        return Match(profile.id, False, reasons=["the profile declares no identify reads"])
    values: dict[str, Value] = {}
    reasons: list[str] = []
    for r in profile.identify.reads:
        a = answers.get(read_key(r))
        where = f"{r.table.value} {r.address}"
        if a is None:
            reasons.append(f"{r.key} ({where}) was not read")
            continue
        if r.exception is not None:
            if a.exception != r.exception:
                reasons.append(f"{r.key} ({where}): expected exception {r.exception}, got {a}")
            continue
        if a.registers is None:
            reasons.append(f"{r.key} ({where}): {a}")
            continue
        try:
            v = decode(resolved(r, profile), list(a.registers))
        except CodecError as e:
            reasons.append(f"{r.key} ({where}): {e}")
            continue
        values[r.key] = v
        if r.expect is not None and not _same(v, r.expect):
            reasons.append(f"{r.key} ({where}): expected {r.expect!r}, got {v!r}")
    fw = values.get("firmware")
    fw_text = None if fw is None else str(fw)
    ok = firmware_in_range(profile.firmware, fw_text) if fw_text is not None else None
    return Match(profile.id, not reasons, values, reasons, fw_text, ok)


def identify(profiles: Iterable[Profile], answers: dict[ReadKey, Answer]) -> list[Match]:
    """Every candidate's verdict, fitting ones first."""
    out = [match(p, answers) for p in profiles if p.identify is not None and p.identify.reads]
    return sorted(out, key=lambda m: (not m.fits, m.profile))


_CLAUSE = re.compile(r"^\s*(==|!=|>=|<=|>|<)?\s*([^\s,]+)\s*$")


def _version(text: str) -> Version | None:
    try:
        return Version(text.strip().lstrip("vV"))
    except InvalidVersion:
        return None


def firmware_in_range(spec: str, version: str) -> bool | None:
    """Is `version` inside a profile's `firmware:` range? Ranges are `*`, a glob (`3.*`) or
    comma-joined comparisons (`>=2.0,<3.0`). None when it cannot be told (unreadable version or
    range): the scan then says so rather than deciding."""
    spec = spec.strip()
    if spec in ("", "*"):
        return True
    ok = True
    for clause in spec.split(","):
        m = _CLAUSE.match(clause)
        if m is None:
            return None
        op, ref = m.group(1), m.group(2)
        if op is None and ref[0] in "~=!<>":
            return None  # an operator we do not know (`~=`): say we cannot tell
        if op is None:
            if not fnmatch.fnmatchcase(version.strip().lstrip("vV"), ref.lstrip("vV")):
                ok = False
            continue
        a, b = _version(version), _version(ref)
        if a is None or b is None:
            return None
        ok = ok and {"==": a == b, "!=": a != b, ">=": a >= b, "<=": a <= b, ">": a > b, "<": a < b}[op]
    return ok
