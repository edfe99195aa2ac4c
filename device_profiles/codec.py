"""Register ↔ value conversion, pure and exhaustively tested.

Modbus moves 16-bit registers big-endian on the wire; devices disagree on how they lay larger or
odd values across them. `byte_order` says how the two bytes of each register hold the value's bytes
(big = AB as sent), `word_order` which register holds the high word of a 32-bit value (big = first).
A `string` is text in address order, two characters per register, the first in the high byte;
`byte_order: little` swaps the two characters of each register, and `word_order` does not apply to
text (it orders the words of one number, not the registers of a string) — docs/profiles.md.
The edge decodes with `decode`, the simulators encode with `encode`: both from the same profile,
so tests/unit/test_codec_doc.py checks both against register dumps written by hand from the doc.
"""

from __future__ import annotations

import math
import struct

from device_profiles.model import DataType, Order
from device_profiles.points import ResolvedPoint

Value = bool | int | float | str


class CodecError(ValueError):
    """Registers that cannot be a value of this point, or a value that does not fit its registers."""


def _regs_to_bytes(regs: list[int], byte_order: Order, word_order: Order) -> bytes:
    words = list(regs) if word_order is Order.BIG else list(reversed(regs))
    out = bytearray()
    for w in words:
        if not 0 <= w <= 0xFFFF:
            raise CodecError(f"register value {w} is not 16-bit")
        hi, lo = w >> 8, w & 0xFF
        out += bytes((hi, lo)) if byte_order is Order.BIG else bytes((lo, hi))
    return bytes(out)


def _bytes_to_regs(data: bytes, byte_order: Order, word_order: Order) -> list[int]:
    words = []
    for i in range(0, len(data), 2):
        a, b = data[i], data[i + 1]
        words.append((a << 8) | b if byte_order is Order.BIG else (b << 8) | a)
    return words if word_order is Order.BIG else list(reversed(words))


_STRUCT = {
    DataType.INT16: ">h",
    DataType.UINT16: ">H",
    DataType.ENUM: ">H",
    DataType.INT32: ">i",
    DataType.UINT32: ">I",
    DataType.FLOAT32: ">f",
}


def raw_from_registers(p: ResolvedPoint, regs: list[int]) -> int | float | str | bool:
    """The unscaled number (or text / bit) the registers hold."""
    t = p.spec.type
    if len(regs) != p.count:
        raise CodecError(f"{p.id}: expected {p.count} register(s), got {len(regs)}")
    if p.table.is_bit:
        return bool(regs[0])
    if t is DataType.BOOL:
        return regs[0] != 0
    if t is DataType.BIT:
        word = _bytes_to_regs(_regs_to_bytes(regs, p.byte_order, Order.BIG), Order.BIG, Order.BIG)[0]
        return bool((word >> (p.spec.bit or 0)) & 1)
    if t is DataType.STRING:
        text = _regs_to_bytes(regs, p.byte_order, Order.BIG)
        return text.split(b"\x00", 1)[0].decode("ascii", errors="replace").rstrip()
    data = _regs_to_bytes(regs, p.byte_order, p.word_order)
    value: int | float = struct.unpack(_STRUCT[t], data)[0]
    return value


def decode(p: ResolvedPoint, regs: list[int]) -> Value:
    """Registers (or one bit as 0/1) → the engineering value the rest of the system sees."""
    raw = raw_from_registers(p, regs)
    t = p.spec.type
    if isinstance(raw, (bool, str)):
        return raw
    if t is DataType.ENUM:
        labels = p.spec.enum or {}
        return labels.get(int(raw), f"unknown({raw})")
    identity = p.spec.scale == 1.0 and p.spec.offset == 0.0
    if t is DataType.FLOAT32:
        if not math.isfinite(raw):
            raise CodecError(f"{p.id}: register holds {raw} (not a finite number)")
        raw = float(f"{raw:.9g}")  # 9 significant digits: exact for float32, without binary noise
        return raw if identity else raw * p.spec.scale + p.spec.offset
    if identity:
        return int(raw)
    return round(raw * p.spec.scale + p.spec.offset, 6)


def encode(p: ResolvedPoint, value: Value) -> list[int]:
    """Engineering value → registers; what a simulator puts in its register map."""
    t = p.spec.type
    if p.table.is_bit or t is DataType.BOOL:
        return [1 if value else 0]
    if t is DataType.BIT:
        raise CodecError(f"{p.id}: a bit point shares its register; use encode_bit")
    if t is DataType.STRING:
        data = str(value).encode("ascii")[: p.count * 2].ljust(p.count * 2, b"\x00")
        return _bytes_to_regs(data, p.byte_order, Order.BIG)
    if t is DataType.ENUM:
        if isinstance(value, str):
            for k, label in (p.spec.enum or {}).items():
                if label == value:
                    raw: int | float = k
                    break
            else:
                raise CodecError(f"{p.id}: {value!r} is not one of {sorted((p.spec.enum or {}).values())}")
        else:
            raw = int(value)
    else:
        if isinstance(value, str):
            raise CodecError(f"{p.id}: expected a number, got {value!r}")
        raw = (float(value) - p.spec.offset) / p.spec.scale
        if t is not DataType.FLOAT32:
            raw = round(raw)
    fmt = _STRUCT[t]
    try:
        data = struct.pack(fmt, raw)
    except struct.error as e:
        raise CodecError(f"{p.id}: {value!r} does not fit {t.value}: {e}") from None
    return _bytes_to_regs(data, p.byte_order, p.word_order)


def encode_bit(p: ResolvedPoint, register: int, value: bool) -> int:
    """Set or clear this bit point's bit inside the (already laid out) register it shares."""
    bit = p.spec.bit or 0
    word = _bytes_to_regs(_regs_to_bytes([register], p.byte_order, Order.BIG), Order.BIG, Order.BIG)[0]
    word = word | (1 << bit) if value else word & ~(1 << bit)
    return _bytes_to_regs(_regs_to_bytes([word], Order.BIG, Order.BIG), p.byte_order, Order.BIG)[0]
