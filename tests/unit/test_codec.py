"""Register decoding/encoding round trips in every type and byte/word order (hypothesis)."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from device_profiles.codec import CodecError, decode, encode, encode_bit, raw_from_registers
from device_profiles.loader import catalog
from device_profiles.model import DataType, ModbusPoint, Order, Table
from device_profiles.points import ResolvedPoint, resolve_points

ORDERS = [(b, w) for b in Order for w in Order]


def point(type_: DataType, byte_order: Order = Order.BIG, word_order: Order = Order.BIG, **kw) -> ResolvedPoint:
    table = kw.pop("table", Table.HOLDING)
    spec = ModbusPoint(key="p", table=table, address=0, type=type_, **kw)
    return ResolvedPoint("p", spec, table, 0, spec.register_count, byte_order, word_order, None, None)


INT_RANGES = {
    DataType.INT16: (-(2**15), 2**15 - 1),
    DataType.UINT16: (0, 2**16 - 1),
    DataType.INT32: (-(2**31), 2**31 - 1),
    DataType.UINT32: (0, 2**32 - 1),
}


@pytest.mark.parametrize(("bo", "wo"), ORDERS)
@pytest.mark.parametrize("t", list(INT_RANGES))
@given(data=st.data())
def test_integer_round_trip(t, bo, wo, data):
    lo, hi = INT_RANGES[t]
    v = data.draw(st.integers(lo, hi))
    p = point(t, bo, wo)
    regs = encode(p, v)
    assert len(regs) == p.count and all(0 <= r <= 0xFFFF for r in regs)
    assert decode(p, regs) == v


@pytest.mark.parametrize(("bo", "wo"), ORDERS)
@given(v=st.floats(width=32, allow_nan=False, allow_infinity=False))
def test_float32_round_trip(bo, wo, v):
    p = point(DataType.FLOAT32, bo, wo)
    assert decode(p, encode(p, v)) == pytest.approx(v, rel=1e-6, abs=1e-6)


@pytest.mark.parametrize(("bo", "wo"), ORDERS)
@given(regs=st.lists(st.integers(0, 0xFFFF), min_size=2, max_size=2))
def test_any_registers_decode_then_encode_back(bo, wo, regs):
    """Decoding never crashes on arbitrary registers, and re-encoding gives the same registers."""
    for t in (DataType.INT32, DataType.UINT32):
        p = point(t, bo, wo)
        assert encode(p, decode(p, regs)) == regs
    p = point(DataType.FLOAT32, bo, wo)
    try:
        v = decode(p, regs)
    except CodecError:
        assert not math.isfinite(raw_from_registers(p, regs))  # NaN / inf are refused, not passed on
    else:
        assert encode(p, v) == regs or math.isclose(v, 0.0)  # -0.0 / +0.0


@given(raw=st.integers(-(2**15), 2**15 - 1), scale=st.sampled_from([0.1, 0.01, 0.001, 2.0]),
       offset=st.sampled_from([0.0, -40.0, -50.0, 10.0]))
def test_scale_and_offset(raw, scale, offset):
    p = point(DataType.INT16, scale=scale, offset=offset)
    v = decode(p, encode(p, raw * scale + offset))
    assert v == pytest.approx(raw * scale + offset, abs=scale / 2 + 1e-9)


def test_word_and_byte_order_on_the_wire():
    """0x11223344 as the four orders put it on the wire (the cases installers meet)."""
    v = 0x11223344
    assert encode(point(DataType.UINT32, Order.BIG, Order.BIG), v) == [0x1122, 0x3344]  # ABCD
    assert encode(point(DataType.UINT32, Order.BIG, Order.LITTLE), v) == [0x3344, 0x1122]  # CDAB
    assert encode(point(DataType.UINT32, Order.LITTLE, Order.BIG), v) == [0x2211, 0x4433]  # BADC
    assert encode(point(DataType.UINT32, Order.LITTLE, Order.LITTLE), v) == [0x4433, 0x2211]  # DCBA
    f = point(DataType.FLOAT32)
    assert encode(f, 1.0) == [int.from_bytes(struct.pack(">f", 1.0)[:2]), 0]


@pytest.mark.parametrize("bo", list(Order))
@given(word=st.integers(0, 0xFFFF), bit=st.integers(0, 15), value=st.booleans())
def test_bit_in_register(bo, word, bit, value):
    p = point(DataType.BIT, bo, bit=bit)
    reg = encode_bit(p, word, value)
    assert decode(p, [reg]) is value
    for other in range(16):  # other bits untouched
        if other != bit:
            q = point(DataType.BIT, bo, bit=other)
            assert decode(q, [reg]) == decode(q, [word])


@given(s=st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=8))
def test_string_round_trip(s):
    p = point(DataType.STRING, length=4)
    assert decode(p, encode(p, s)) == s


def test_enum_and_bool():
    p = point(DataType.ENUM, enum={0: "idle", 1: "charging"})
    assert decode(p, encode(p, "charging")) == "charging"
    assert decode(p, [7]) == "unknown(7)"
    with pytest.raises(CodecError):
        encode(p, "exploding")
    b = point(DataType.BOOL, table=Table.COIL)
    assert decode(b, encode(b, True)) is True and decode(b, [0]) is False


def test_out_of_range_values_are_refused():
    with pytest.raises(CodecError):
        encode(point(DataType.UINT16), 70000)
    with pytest.raises(CodecError):
        encode(point(DataType.INT16), "hot")
    with pytest.raises(CodecError):
        decode(point(DataType.UINT32), [1])


def test_every_catalog_point_round_trips():
    """Each real point of each shipped profile encodes a plausible value and decodes it back."""
    for prof in catalog().values():
        for rp in resolve_points(prof):
            t = rp.spec.type
            if t is DataType.BIT:
                assert decode(rp, [encode_bit(rp, 0, True)]) is True
                continue
            sample = {DataType.ENUM: next(iter((rp.spec.enum or {}).values()), 0), DataType.STRING: "V3.1"}.get(
                t, True if t is DataType.BOOL or rp.table.is_bit else 12.5 if rp.spec.scale < 1 else 12
            )
            got = decode(rp, encode(rp, sample))
            if isinstance(sample, float):
                assert got == pytest.approx(sample, abs=rp.spec.scale), rp.id
            else:
                assert got == sample, rp.id
