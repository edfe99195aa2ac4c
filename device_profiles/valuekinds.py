"""What JSON type each wire point of a profile carries (docs/profiles.md, "Points"). Pure.

The edge decodes a register or a line field into exactly one of four kinds, and a time-series
store keeps one type per field (InfluxDB refuses a whole batch over a string in a float field),
so the cloud checks every reported value against its point's kind (cloud/ingest/typecheck.py):

    bool    coils, discrete inputs, `bool` and `bit` points, line fields of type bool
    int     integer registers (`int16` … `uint32`) and `int` line fields with no scale and no offset
    float   `float32`, and any number with a `scale` or an `offset`
    text    `enum` (its label, or `unknown(<n>)` for a value without one) and `string`
"""

from __future__ import annotations

from enum import StrEnum

from device_profiles.model import DataType, LineTransport, Profile, point_id
from device_profiles.points import resolve_points


class ValueKind(StrEnum):
    BOOL = "bool"
    INT = "int"
    FLOAT = "float"
    TEXT = "text"


def _number(is_float: bool, scale: float, offset: float) -> ValueKind:
    return ValueKind.FLOAT if is_float or scale != 1.0 or offset != 0.0 else ValueKind.INT


def value_kinds(profile: Profile) -> dict[str, ValueKind]:
    """Every wire point id of the profile (block instances expanded) → its kind."""
    tr = profile.transport
    out: dict[str, ValueKind] = {}
    if isinstance(tr, LineTransport):
        for f in tr.fields:
            if f.type == "bool":
                kind = ValueKind.BOOL
            elif f.type in ("str", "enum"):
                kind = ValueKind.TEXT
            else:
                kind = _number(f.type == "float", f.scale, f.offset)
            for i in profile.instance_range(tr.block):
                out[point_id(f.key, tr.block, i)] = kind
        return out
    for p in resolve_points(profile):
        t = p.spec.type
        if p.table.is_bit or t.is_bool:
            out[p.id] = ValueKind.BOOL
        elif t in (DataType.ENUM, DataType.STRING):
            out[p.id] = ValueKind.TEXT
        else:
            out[p.id] = _number(t is DataType.FLOAT32, p.spec.scale, p.spec.offset)
    return out
