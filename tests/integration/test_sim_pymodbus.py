"""pymodbus clients against the emulators: reads, writes that act on the physics, and faults that
look on the wire exactly like the real thing (silence, bad CRC, exception responses, slowness)."""

from __future__ import annotations

import asyncio
import os
import termios
import time
import tty
from collections.abc import Callable

import pytest
from pymodbus.client import AsyncModbusSerialClient, ModbusSerialClient, ModbusTcpClient
from pymodbus.exceptions import ModbusIOException
from pymodbus.pdu import ExceptionResponse

from device_profiles.codec import decode
from simulators.site import SimSite
from simulators.transport.frames import rtu_frame, rtu_split

pytestmark = pytest.mark.integration


@pytest.fixture
def shelter_a(sim_site: Callable[..., SimSite]) -> SimSite:
    return sim_site("shelter-a")


def serial_client(site: SimSite, dev: str = "chg1", timeout: float = 0.5) -> ModbusSerialClient:
    ep = site.endpoints()[dev]
    c = ModbusSerialClient(
        port=ep["serial_port"],
        baudrate=ep["baud"],
        parity=ep["parity"],
        stopbits=ep["stop_bits"],
        timeout=timeout,
        retries=0,
    )
    assert c.connect()
    return c


def tcp_client(site: SimSite, dev: str = "chg2") -> ModbusTcpClient:
    ep = site.endpoints()[dev]
    c = ModbusTcpClient(ep["host"], port=ep["tcp_port"], timeout=0.5, retries=0)
    assert c.connect()
    return c


def test_serial_and_tcp_reads(shelter_a: SimSite) -> None:
    c = serial_client(shelter_a)
    r = c.read_input_registers(100, count=7, device_id=3)  # port 1 of chg1
    assert not r.isError()
    port = shelter_a.device("chg1").model.ports[1]
    assert r.registers[0] == 1 and r.registers[2] / 100 == pytest.approx(port.current, abs=0.02)
    r = c.read_discrete_inputs(0, count=4, device_id=5)  # spk1 on the same bus
    assert r.bits[:4] == [False, False, False, False]
    r = c.read_input_registers(0, count=1, device_id=5)
    assert r.registers[0] / 100 == pytest.approx(shelter_a.device("spk1").model.pipe_pressure, abs=0.05)
    c.close()
    t = tcp_client(shelter_a)
    r = t.read_holding_registers(40, count=4, device_id=1)
    fw = next(p for p in shelter_a.device("chg2").points if p.id == "firmware")
    # "3.12" as docs/profiles.md lays text out (address order, first character high), by hand
    assert list(r.registers) == [0x332E, 0x3132, 0x0000, 0x0000]
    assert decode(fw, list(r.registers)) == "3.12"
    t.close()


def test_async_serial_client(shelter_a: SimSite) -> None:
    ep = shelter_a.endpoints()["spk1"]

    async def go() -> list[bool]:
        # retries: a loaded CI machine may miss one reply; the test is about the bytes, not speed
        c = AsyncModbusSerialClient(
            ep["serial_port"], baudrate=ep["baud"], parity=ep["parity"], timeout=3, retries=2
        )
        await c.connect()
        try:
            shelter_a.device("spk1").model.set_waterflow(True)
            r = await c.read_discrete_inputs(0, count=1, device_id=5)
            return list(r.bits[:1])
        finally:
            c.close()

    assert asyncio.run(go()) == [True]


def test_silent_slave_times_out_while_its_neighbour_answers(shelter_a: SimSite) -> None:
    c = serial_client(shelter_a, timeout=0.3)
    shelter_a.device("spk1").faults.silent = True
    for _ in range(3):
        t0 = time.monotonic()
        with pytest.raises(ModbusIOException):
            c.read_input_registers(0, count=2, device_id=5)
        assert time.monotonic() - t0 >= 0.25
        assert not c.read_input_registers(100, count=8, device_id=3).isError()
    shelter_a.device("spk1").faults.silent = False
    assert not c.read_input_registers(0, count=2, device_id=5).isError()
    c.close()


def test_other_addresses_stay_silent(shelter_a: SimSite) -> None:
    c = serial_client(shelter_a, timeout=0.2)
    with pytest.raises(ModbusIOException):
        c.read_input_registers(0, count=1, device_id=4)  # nobody is unit 4
    c.close()
    bus = shelter_a.buses["rs485-1"]
    assert bus.stats["not_mine"] >= 1


def raw_transaction(path: str, frame: bytes, wait: float = 0.3) -> bytes:
    """Write one frame on the pty and collect whatever comes back: the bytes on the wire."""
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        tty.setraw(fd)
        termios.tcflush(fd, termios.TCIOFLUSH)
        os.write(fd, frame)
        out = b""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                out += os.read(fd, 256)
            except BlockingIOError:
                time.sleep(0.005)
        return out
    finally:
        os.close(fd)


def test_crc_faults_appear_on_the_wire(shelter_a: SimSite) -> None:
    path = shelter_a.endpoints()["spk1"]["serial_port"]
    req = rtu_frame(5, bytes.fromhex("0400000002"))
    good = raw_transaction(path, req)
    assert rtu_split(good) is not None and good[:3] == bytes((5, 4, 4))
    shelter_a.device("spk1").faults.crc_error_rate = 1.0
    bad = raw_transaction(path, req)
    assert len(bad) == len(good) and bad[:3] == good[:3]
    assert rtu_split(bad) is None, "the reply's CRC must not match"
    c = serial_client(shelter_a, timeout=0.3)
    with pytest.raises(ModbusIOException):  # pymodbus drops the frame: no valid response
        c.read_input_registers(0, count=2, device_id=5)
    shelter_a.device("spk1").faults.crc_error_rate = 0.5
    results = []
    for _ in range(20):
        try:
            results.append(not c.read_input_registers(0, count=2, device_id=5).isError())
        except ModbusIOException:
            results.append(False)
    assert 3 <= sum(results) <= 17
    c.close()


def test_a_request_with_a_bad_crc_gets_no_answer(shelter_a: SimSite) -> None:
    path = shelter_a.endpoints()["spk1"]["serial_port"]
    req = bytearray(rtu_frame(5, bytes.fromhex("0400000002")))
    req[-1] ^= 0xFF
    assert raw_transaction(path, bytes(req), 0.2) == b""


@pytest.mark.parametrize("code", [2, 6])
def test_exception_faults(shelter_a: SimSite, code: int) -> None:
    c = serial_client(shelter_a)
    shelter_a.device("spk1").faults.exception_code = code
    r = c.read_input_registers(0, count=2, device_id=5)
    assert isinstance(r, ExceptionResponse) and r.exception_code == code
    t = tcp_client(shelter_a)
    shelter_a.device("chg2").faults.set(exception_code=code, exception_rate=0.5)
    errs = sum(t.read_holding_registers(200, count=9, device_id=1).isError() for _ in range(40))
    assert 8 <= errs <= 32
    c.close()
    t.close()


def test_slow_replies(shelter_a: SimSite) -> None:
    c = serial_client(shelter_a, timeout=2)
    t0 = time.monotonic()
    c.read_input_registers(0, count=2, device_id=5)
    fast = time.monotonic() - t0
    shelter_a.device("spk1").faults.delay_s = 0.4
    t0 = time.monotonic()
    assert not c.read_input_registers(0, count=2, device_id=5).isError()
    assert time.monotonic() - t0 >= fast + 0.35
    c.close()
    t = tcp_client(shelter_a)
    shelter_a.device("chg2").faults.delay_s = 0.3
    t0 = time.monotonic()
    assert not t.read_holding_registers(0, count=2, device_id=1).isError()
    assert time.monotonic() - t0 >= 0.28
    t.close()


def test_writes_take_effect(shelter_a: SimSite) -> None:
    chg1 = shelter_a.device("chg1").model
    chg1.plug(3, soc=0.3)
    c = serial_client(shelter_a)
    assert not c.write_coil(16 + 2, False, device_id=3).isError()  # port 3 off
    assert chg1.ports[3].current == 0 and chg1.ports[3].state == "disabled"
    assert c.read_input_registers(100 + 2 * 8, count=3, device_id=3).registers == [
        4,
        0,
        0,
    ]  # disabled, 0 V, 0 A
    r = c.write_coil(5, True, device_id=3)  # not a command coil
    assert isinstance(r, ExceptionResponse) and r.exception_code == 2
    assert not c.write_coil(0, False, device_id=3).isError()  # main cut
    assert not chg1.main_relay and all(p.current == 0 for p in chg1.ports.values())
    c.close()
    chg2 = shelter_a.device("chg2").model
    chg2.plug(4, soc=0.3)
    t = tcp_client(shelter_a)
    assert not t.write_register(208 + 30, 0, device_id=1).isError()  # port 4 off
    assert chg2.ports[4].current == 0
    assert not t.write_register(20, 1, device_id=1).isError()  # main cut
    assert not chg2.main_relay
    assert not t.write_registers(20, [2], device_id=1).isError()  # main restore (FC16)
    assert chg2.main_relay and chg2.ports[1].current > 0
    t.close()


def test_tcp_unknown_unit_and_silence(shelter_a: SimSite) -> None:
    t = tcp_client(shelter_a)
    r = t.read_holding_registers(0, count=1, device_id=9)
    assert isinstance(r, ExceptionResponse) and r.exception_code == 0x0B
    shelter_a.device("chg2").faults.silent = True
    with pytest.raises(ModbusIOException):
        t.read_holding_registers(0, count=1, device_id=1)
    t.close()


def test_9600_baud_is_as_slow_as_a_real_line(shelter_a: SimSite) -> None:
    """Loose check only (timing is measured in bench/bench_sim_timing.py)."""
    c = serial_client(shelter_a)
    c.read_input_registers(100, count=40, device_id=3)
    t0 = time.monotonic()
    for _ in range(5):
        c.read_input_registers(100, count=40, device_id=3)
    per = (time.monotonic() - t0) / 5
    theory = (13 + 80) * 11 / 9600 + 7 * 11 / 9600
    assert per >= theory * 0.9, (per, theory)
    c.close()


def test_a_master_at_the_wrong_baud_gets_no_answer(shelter_a: SimSite) -> None:
    ep = shelter_a.endpoints()["chg1"]
    wrong = ModbusSerialClient(port=ep["serial_port"], baudrate=19200, timeout=0.3, retries=0)
    assert wrong.connect()
    with pytest.raises(ModbusIOException):
        wrong.read_input_registers(100, count=1, device_id=3)
    wrong.close()
    assert shelter_a.buses["rs485-1"].stats["baud_mismatch"] >= 1
    right = serial_client(shelter_a)
    assert not right.read_input_registers(100, count=1, device_id=3).isError()
    right.close()


def test_noise_on_the_bus_and_junk_on_tcp_do_not_break_anything(shelter_a: SimSite) -> None:
    import random
    import socket

    rng = random.Random(1)
    path = shelter_a.endpoints()["chg1"]["serial_port"]
    for _ in range(20):
        raw_transaction(path, bytes(rng.randrange(256) for _ in range(rng.randint(1, 40))), 0.02)
    time.sleep(0.6)  # ~400 noise bytes keep a 9600-baud line busy for ~0.45 s, as on copper
    assert shelter_a.buses["rs485-1"].stats["bad_frames"] >= 1
    ep = shelter_a.endpoints()["chg2"]
    for n in (1, 7, 12, 300):
        with socket.create_connection((ep["host"], ep["tcp_port"]), timeout=1) as s:
            s.sendall(bytes(rng.randrange(256) for _ in range(n)))
            time.sleep(0.05)
    c = serial_client(shelter_a)
    assert not c.read_input_registers(100, count=8, device_id=3).isError()
    c.close()
    t = tcp_client(shelter_a)
    assert not t.read_holding_registers(200, count=9, device_id=1).isError()
    t.close()
