"""Register dumps written BY HAND from docs/profiles.md ("Register layout", the worked example),
never produced by the simulator or the codec: the edge's decoding and the simulator's encoding are
each checked against the document, so they cannot agree on the same mistake."""

from __future__ import annotations

import pytest

from device_profiles.codec import decode, encode
from device_profiles.loader import get_profile
from device_profiles.model import DataType, ModbusPoint, Order, Table
from device_profiles.points import ResolvedPoint, resolve_points
from simulators.devices.charger import ChargerDevice


def catalog_point(profile: str, pid: str) -> ResolvedPoint:
    return next(p for p in resolve_points(get_profile(profile)) if p.id == pid)


def synthetic(type_: DataType, byte_order: Order, word_order: Order = Order.BIG, **kw: object) -> ResolvedPoint:
    spec = ModbusPoint(key="p", table=Table.HOLDING, address=0, type=type_, **kw)  # type: ignore[arg-type]
    return ResolvedPoint("p", spec, Table.HOLDING, 0, spec.register_count, byte_order, word_order, None, None)


# (profile, point id, address the doc gives, registers as the doc lays them out, engineering value)
DUMPS = [
    # Worked example: port 3's connector temperature is input register 106 + 2 × 8 = 122, raw 0x0320 → 80.0 °C.
    ("voltpile-cp10", "port.3.connector_temp", 122, [0x0320], 80.0),
    # voltpile: big word order — uint32 123456 (0x0001E240) is [0x0001, 0xE240]; × 0.001 kWh.
    ("voltpile-cp10", "port.1.energy", 104, [0x0001, 0xE240], 123.456),
    # hengtong: word_order little — the low word first: [0xE240, 0x0001]; × 0.01 kWh.
    ("hengtong-ebc12", "port.1.energy", 202, [0xE240, 0x0001], 1234.56),
    # hengtong float32, low word first: 1500.0 = 0x44BB8000 → [0x8000, 0x44BB].
    ("hengtong-ebc12", "port.1.power", 206, [0x8000, 0x44BB], 1500.0),
    # hengtong firmware: text in address order, first character in the high byte; word_order
    # (little on this device) does not apply to text.
    ("hengtong-ebc12", "firmware", 40, [0x332E, 0x3132, 0x0000, 0x0000], "3.12"),
    # ambient: int16 700 × 0.1 − 50 = 20.0 °C; and a negative int16 (0xFFF6 = −10 → −51.0 °C).
    ("hengtong-ebc12", "ambient_temp", 1, [0x02BC], 20.0),
    ("hengtong-ebc12", "ambient_temp", 1, [0xFFF6], -51.0),
    # status word bits: 0x0005 → bit 0 (smoke) and bit 2 (door) set, bit 1 (main relay) clear.
    ("hengtong-ebc12", "smoke", 0, [0x0005], True),
    ("hengtong-ebc12", "main_relay", 0, [0x0005], False),
    ("hengtong-ebc12", "door_open", 0, [0x0005], True),
    # an enum value without a label
    ("hengtong-ebc12", "port.2.state", 210, [0x0004], "unknown(4)"),
    ("hengtong-ebc12", "port.2.state", 210, [0x0002], "charging"),
]


@pytest.mark.parametrize(("profile", "pid", "address", "regs", "value"), DUMPS)
def test_edge_decodes_the_documented_registers(profile: str, pid: str, address: int, regs: list[int],
                                               value: object) -> None:
    p = catalog_point(profile, pid)
    assert p.address == address
    got = decode(p, regs)
    assert got == (pytest.approx(value) if isinstance(value, float) else value)
    assert type(got) is type(value)


@pytest.mark.parametrize(("profile", "pid", "address", "regs", "value"),
                         [d for d in DUMPS if not str(d[4]).startswith("unknown") and d[1] not in
                          ("smoke", "main_relay", "door_open")])
def test_simulator_encodes_the_documented_registers(profile: str, pid: str, address: int, regs: list[int],
                                                    value: object) -> None:
    assert encode(catalog_point(profile, pid), value) == regs  # type: ignore[arg-type]


def test_the_simulated_hengtong_serves_its_firmware_as_documented() -> None:
    """The simulator's register map (what mbpoll would read), not its codec call."""
    dev = ChargerDevice("chg", get_profile("hengtong-ebc12"), {"firmware": "3.12"})
    assert dev.read_registers(Table.HOLDING, 40, 4) == [0x332E, 0x3132, 0x0000, 0x0000]


@pytest.mark.parametrize(
    ("type_", "byte_order", "word_order", "regs", "value"),
    [
        (DataType.INT16, Order.LITTLE, Order.BIG, [0x2003], 800),  # bytes of each register swapped
        (DataType.UINT32, Order.BIG, Order.BIG, [0x0001, 0xE240], 123456),
        (DataType.UINT32, Order.BIG, Order.LITTLE, [0xE240, 0x0001], 123456),
        (DataType.UINT32, Order.LITTLE, Order.BIG, [0x0100, 0x40E2], 123456),
        (DataType.FLOAT32, Order.BIG, Order.BIG, [0x44BB, 0x8000], 1500.0),
        (DataType.INT32, Order.BIG, Order.BIG, [0xFFFF, 0xFFF6], -10),
    ],
)
def test_orders_as_documented(type_: DataType, byte_order: Order, word_order: Order, regs: list[int],
                              value: object) -> None:
    p = synthetic(type_, byte_order, word_order)
    assert decode(p, regs) == value
    assert encode(p, value) == regs  # type: ignore[arg-type]


@pytest.mark.parametrize("word_order", list(Order))
def test_text_with_swapped_bytes_and_any_word_order(word_order: Order) -> None:
    p = synthetic(DataType.STRING, Order.LITTLE, word_order, length=4)
    assert decode(p, [0x2E33, 0x3231, 0x0000, 0x0000]) == "3.12"
    assert encode(p, "3.12") == [0x2E33, 0x3231, 0x0000, 0x0000]
    big = synthetic(DataType.STRING, Order.BIG, word_order, length=3)
    assert decode(big, [0x4142, 0x4320, 0x2020]) == "ABC"  # trailing spaces dropped
