"""Reported values checked against the device's profile at ingest (docs/operations.md). Pure.

The schema (wire.py) lets a value be any JSON scalar; the profile says which one each point is
(device_profiles/valuekinds.py). A time-series store keeps one type per field and refuses a whole
batch over one string in a float field, so one bad value would set aside every other device's
readings of that batch. Here each point is judged alone:

* the right kind passes as it is (the common case costs one dict lookup and one type test);
* a lossless change passes changed: an int for a float point (`80` → `80.0`), an integral float
  for an int point (`3.0` → `3`);
* anything else (a string for a number, a bool for a number, a number out of int64, a point the
  profile does not have) is dropped with a reason — `bad_type` or `unknown_point` — and the rest
  of the message goes on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from device_profiles.valuekinds import ValueKind

INT64 = 2**63
_EXACT: dict[ValueKind, type] = {
    ValueKind.BOOL: bool,
    ValueKind.INT: int,
    ValueKind.FLOAT: float,
    ValueKind.TEXT: str,
}
_BAD = object()


def _int64(v: Any) -> bool:
    return bool(-INT64 <= v < INT64)


def coerce(kind: ValueKind, v: Any) -> Any:
    """`v` as a value of `kind`, or `_BAD` when that would change what it says."""
    t = type(v)
    if kind is ValueKind.FLOAT:
        if t is float:
            return v
        if t is int:
            return float(v)
    elif kind is ValueKind.INT:
        if t is int:
            return v if -INT64 <= v < INT64 else _BAD
        if t is float and v.is_integer() and -INT64 <= v < INT64:
            return int(v)
    elif t is _EXACT[kind]:
        return v
    return _BAD


@dataclass(slots=True)
class Checked:
    values: dict[str, Any]
    refused: list[tuple[str, str, str]] = field(default_factory=list)  # (point, reason, detail)


def exact_types(kinds: dict[str, ValueKind]) -> dict[str, type]:
    """Point id → the Python type its values have when nothing needs changing (see `all_exact`)."""
    return {pid: _EXACT[k] for pid, k in kinds.items()}


def all_exact(values: dict[str, Any], exact: dict[str, type]) -> bool:
    """The common case, checked first and fast: every value already has its point's type (and an
    int fits int64 — msgspec also decodes uint64)."""
    for pid, v in values.items():
        t = type(v)
        if exact.get(pid) is not t or (t is int and v >= INT64):
            return False
    return True


def check_values(values: dict[str, Any], kinds: dict[str, ValueKind]) -> Checked:
    """The values this profile can take, and what was refused."""
    out: dict[str, Any] = {}
    refused: list[tuple[str, str, str]] = []
    for pid, v in values.items():
        k = kinds.get(pid)
        if k is None:
            refused.append((pid, "unknown_point", f"{pid}: not a point of this profile"))
            continue
        c = coerce(k, v)
        if c is _BAD:
            refused.append((pid, "bad_type", f"{pid}: expected {k.value}, got {type(v).__name__} {v!r:.40}"))
            continue
        out[pid] = c
    return Checked(out, refused)


def check_scalar(kind: ValueKind | None, v: Any) -> Any:
    """One value (an event's `value` / `previous`): itself, its lossless change, or None when it
    cannot be a value of `kind`. A point the profile does not know (`kind` None) is left alone."""
    if kind is None or v is None:
        return v
    c = coerce(kind, v)
    return None if c is _BAD else c
