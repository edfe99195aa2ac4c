"""Pure Modbus framing and PDU handling of the simulators (no I/O)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymodbus.framer import FramerRTU

from device_profiles.loader import get_profile
from simulators.devices.charger import ChargerDevice
from simulators.transport.frames import (
    crc16,
    exception_pdu,
    handle_pdu,
    mbap,
    rtu_frame,
    rtu_request_length,
    rtu_split,
)
from simulators.transport.timing import char_time, read_transaction_s, t35


@given(st.binary(max_size=300))
def test_crc_matches_pymodbus(data: bytes) -> None:
    assert struct.pack("<H", crc16(data)) == struct.pack(">H", FramerRTU.compute_CRC(data))


def test_known_frame() -> None:
    # Read holding registers 0..1 of slave 1: the classic example frame 01 03 00 00 00 02 C4 0B.
    assert rtu_frame(1, bytes.fromhex("0300000002")) == bytes.fromhex("010300000002C40B")


@given(st.integers(1, 247), st.binary(min_size=1, max_size=250))
def test_rtu_round_trip_and_any_single_byte_corruption_is_caught(unit: int, pdu: bytes) -> None:
    frame = rtu_frame(unit, pdu)
    assert rtu_split(frame) == (unit, pdu)
    for i in range(len(frame)):
        bad = bytearray(frame)
        bad[i] ^= 0x01
        assert rtu_split(bytes(bad)) is None


def test_request_lengths_split_back_to_back_frames() -> None:
    a = rtu_frame(3, bytes.fromhex("0400640008"))
    b = rtu_frame(5, bytes.fromhex("10001400010200ff"))
    assert rtu_request_length(a) == 8
    assert rtu_request_length(b) == len(b)
    assert rtu_request_length(b"\x01") is None


def test_mbap_header() -> None:
    assert mbap(7, 1, b"\x03\x02\x00\x01") == bytes.fromhex("00070000000501") + b"\x03\x02\x00\x01"


@pytest.fixture
def voltpile() -> ChargerDevice:
    return ChargerDevice("chg", get_profile("voltpile-cp10"), {"plugged": [1, 3], "arrivals_per_hour": 0})


@pytest.fixture
def hengtong() -> ChargerDevice:
    return ChargerDevice("chg", get_profile("hengtong-ebc12"), {"plugged": [2], "arrivals_per_hour": 0})


def test_read_functions(voltpile: ChargerDevice) -> None:
    r = handle_pdu(voltpile, bytes.fromhex("0400640008"))  # FC4 input regs 100..107
    assert r[:2] == bytes((4, 16))
    regs = struct.unpack(">8H", r[2:])
    assert regs[0] == 1  # port 1 charging
    r = handle_pdu(voltpile, bytes.fromhex("010010000a"))  # FC1 coils 16..25: all ports enabled
    assert r == bytes((1, 2, 0xFF, 0x03))
    r = handle_pdu(voltpile, bytes.fromhex("0200000001"))  # FC2 smoke
    assert r == bytes((2, 1, 0))


def test_exceptions(voltpile: ChargerDevice) -> None:
    assert handle_pdu(voltpile, bytes.fromhex("0300000001")) == exception_pdu(3, 2)  # no holding regs
    assert handle_pdu(voltpile, bytes.fromhex("0400640000")) == exception_pdu(4, 3)  # quantity 0
    assert handle_pdu(voltpile, bytes.fromhex("040064007e")) == exception_pdu(4, 3)  # 126 > 125
    assert handle_pdu(voltpile, bytes.fromhex("04ff000001")) == exception_pdu(4, 2)  # outside the map
    assert handle_pdu(voltpile, bytes.fromhex("2b0e0100")) == exception_pdu(0x2B, 1)  # FC43 not supported
    assert handle_pdu(voltpile, bytes.fromhex("0400")) == exception_pdu(4, 3)  # truncated
    assert handle_pdu(voltpile, bytes.fromhex("0500101234")) == exception_pdu(5, 3)  # coil value not 0/FF00
    assert handle_pdu(voltpile, bytes.fromhex("050005ff00")) == exception_pdu(5, 2)  # not a command coil


def test_fc5_switches_a_port_off_and_echoes(voltpile: ChargerDevice) -> None:
    pdu = bytes.fromhex("0500100000")  # coil 16 = port 1 enable, off
    assert handle_pdu(voltpile, pdu) == pdu
    assert voltpile.model.ports[1].current == 0 and not voltpile.model.ports[1].enabled
    assert voltpile.writes == [("port_enable", 1, False)]


def test_fc15_writes_several_coils(voltpile: ChargerDevice) -> None:
    # coils 16..18 = ports 1..3 → off, on, off
    pdu = bytes.fromhex("0f0010000301") + bytes((0b010,))
    assert handle_pdu(voltpile, pdu) == bytes.fromhex("0f00100003")
    assert [voltpile.model.ports[n].enabled for n in (1, 2, 3)] == [False, True, False]


def test_fc5_main_cut_and_restore(voltpile: ChargerDevice) -> None:
    handle_pdu(voltpile, bytes.fromhex("0500000000"))
    assert not voltpile.model.main_relay and voltpile.model.ports[3].current == 0
    handle_pdu(voltpile, bytes.fromhex("050000ff00"))
    assert voltpile.model.main_relay and voltpile.model.ports[3].current > 0


def test_fc6_and_fc16_on_holding_commands(hengtong: ChargerDevice) -> None:
    # port 2 enable is holding 208 + 10 = 218
    assert handle_pdu(hengtong, bytes.fromhex("0600da0000")) == bytes.fromhex("0600da0000")
    assert hengtong.model.ports[2].current == 0
    assert handle_pdu(hengtong, bytes.fromhex("0600da0005")) == exception_pdu(6, 3)  # bool command
    assert handle_pdu(hengtong, bytes.fromhex("0600140001")) == bytes.fromhex("0600140001")  # main cut
    assert not hengtong.model.main_relay
    assert handle_pdu(hengtong, bytes.fromhex("0600140007")) == exception_pdu(6, 3)  # neither 1 nor 2
    assert handle_pdu(hengtong, bytes.fromhex("1000140001020002")) == bytes.fromhex("1000140001")
    assert hengtong.model.main_relay
    assert handle_pdu(hengtong, bytes.fromhex("0600c80001")) == exception_pdu(6, 2)  # state is read-only
    # A multi-register write touching a non-command register is refused whole, nothing applied.
    n = len(hengtong.writes)
    assert handle_pdu(hengtong, bytes.fromhex("1000d900020400000001")) == exception_pdu(16, 2)
    assert len(hengtong.writes) == n and not hengtong.model.ports[2].enabled


def test_gaps_inside_the_map_read_zero(hengtong: ChargerDevice) -> None:
    r = handle_pdu(hengtong, bytes.fromhex("0300c80014"))  # 200..219: ports 1 and 2 incl. gap 209
    regs = struct.unpack(">20H", r[2:])
    assert regs[9] == 0 and regs[8] == 1  # gap, then enabled


def test_timing_theory() -> None:
    assert char_time(9600) == pytest.approx(11 / 9600)
    assert t35(9600) == pytest.approx(3.5 * 11 / 9600)
    assert t35(38400) == 0.00175
    assert read_transaction_s(9600, 8) == pytest.approx((13 + 16) * 11 / 9600 + 7 * 11 / 9600)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=260))
def test_any_pdu_gets_a_response_never_an_exception(pdu: bytes) -> None:
    dev = ChargerDevice("chg", get_profile("hengtong-ebc12"))
    r = handle_pdu(dev, pdu)
    assert r and (r[0] == (pdu[0] if pdu else 0) or r[0] == ((pdu[0] if pdu else 0) | 0x80))
