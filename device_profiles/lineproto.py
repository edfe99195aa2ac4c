"""Serial line-protocol records ↔ values, from a `serial_line` profile. Pure: no I/O.

The edge parses what a receiver prints; the simulator formats what a receiver would print. Every
rejected line carries a short reason (too_long, not_text, no_match, checksum, bad_instance,
bad_value) so garbage on the line is counted by kind in device health.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import reduce

from device_profiles.model import LineField, LineTransport, Profile, point_id

LineValue = bool | int | float | str


class LineError(ValueError):
    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        super().__init__(f"{reason}: {detail}")


@dataclass(frozen=True, slots=True)
class LineRecord:
    index: int
    values: dict[str, LineValue]  # wire point ids → values


def transport_of(profile: Profile) -> LineTransport:
    if not isinstance(profile.transport, LineTransport):
        raise TypeError(f"profile {profile.id} is not a serial_line profile")
    return profile.transport


def nmea_xor(body: str) -> str:
    return f"{reduce(lambda a, c: a ^ ord(c), body, 0):02X}"


def _convert(f: LineField, text: str) -> LineValue:
    if f.type == "bool":
        return text in f.true_values
    if f.type == "str":
        return text
    if f.type == "enum":
        labels = f.enum or {}
        if text not in labels:
            raise LineError("bad_value", f"{f.key}: {text!r} is not one of {sorted(labels)}")
        return labels[text]
    try:
        raw = int(text) if f.type == "int" else float(text)
    except ValueError:
        raise LineError("bad_value", f"{f.key}: {text!r} is not a number") from None
    if f.scale == 1.0 and f.offset == 0.0 and f.type == "int":
        return raw
    return round(raw * f.scale + f.offset, 6)


def parse_line(profile: Profile, raw: bytes) -> LineRecord:
    """One line (terminator already removed) → the values it reports, or LineError."""
    tr = transport_of(profile)
    if len(raw) > tr.max_line:
        raise LineError("too_long", f"{len(raw)} bytes > {tr.max_line}")
    try:
        text = raw.decode(tr.encoding)
    except UnicodeDecodeError:
        raise LineError("not_text", f"not {tr.encoding}: {raw[:32]!r}") from None
    m = _pattern(tr.pattern).match(text.strip())
    if not m:
        raise LineError("no_match", f"{text[:64]!r}")
    if tr.checksum == "nmea_xor" and tr.checksum_group:
        body = text.strip()
        body = body[1 : body.rindex("*")] if body.startswith("$") and "*" in body else body
        if nmea_xor(body) != m.group(tr.checksum_group).upper():
            raise LineError("checksum", f"{m.group(tr.checksum_group)} != {nmea_xor(body)}")
    try:
        index = int(m.group(tr.instance_group))
    except ValueError:
        raise LineError("bad_instance", repr(m.group(tr.instance_group))) from None
    if not 1 <= index <= tr.instance_count:
        raise LineError("bad_instance", f"{tr.block} {index} outside 1..{tr.instance_count}")
    values = {point_id(f.key, tr.block, index): _convert(f, m.group(f.group)) for f in tr.fields}
    return LineRecord(index, values)


def format_line(profile: Profile, index: int, raw_groups: dict[str, str]) -> bytes:
    """Build a line from raw group texts (as the device prints them); used by the simulator.

    Only the NMEA-style `$BODY*CS` layout is generated; the profile's pattern then checks it."""
    tr = transport_of(profile)
    groups = dict(raw_groups)
    groups[tr.instance_group] = f"{index:03d}"
    body = _render_body(tr, groups)
    line = f"${body}*{nmea_xor(body)}" if tr.checksum == "nmea_xor" else body
    return line.encode(tr.encoding) + tr.terminator.encode(tr.encoding)


def _render_body(tr: LineTransport, groups: dict[str, str]) -> str:
    """Fill the pattern's named groups in order, keeping its literal text (prefix, commas)."""
    pat = tr.pattern.strip("^$")
    out, pos = [], 0
    for m in re.finditer(r"\(\?P<(\w+)>(?:[^()]|\([^()]*\))*\)", pat):
        out.append(_literal(pat[pos : m.start()]))
        name = m.group(1)
        if name != tr.checksum_group:
            out.append(groups[name])
        pos = m.end()
    body = "".join(out) + _literal(pat[pos:])
    body = body.lstrip("$")
    return body.rsplit("*", 1)[0] if tr.checksum != "none" else body


def _literal(fragment: str) -> str:
    return re.sub(r"\\(.)", r"\1", fragment)


_cache: dict[str, re.Pattern[str]] = {}


def _pattern(p: str) -> re.Pattern[str]:
    if p not in _cache:
        _cache[p] = re.compile(p)
    return _cache[p]
