"""Emulators encode with the same profile the edge decodes with: raw registers → model values."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device_profiles.codec import decode
from device_profiles.lineproto import LineError, parse_line
from device_profiles.loader import catalog, get_profile
from device_profiles.model import DataType
from device_profiles.points import ResolvedPoint
from simulators.devices import LineReceiverDevice, ModbusDevice, make_device
from simulators.devices.line_receiver import GARBAGE_KINDS

MODBUS_PROFILES = sorted(p.id for p in catalog().values() if p.is_modbus)


def tolerance(p: ResolvedPoint) -> float:
    return 1e-3 if p.spec.type is DataType.FLOAT32 else abs(p.spec.scale) / 2 + 1e-9


def decoded(dev: ModbusDevice) -> dict[str, object]:
    out: dict[str, object] = {}
    for p in dev.points:
        regs = dev.read_registers(p.table, p.address, p.count)
        out[p.id] = decode(p, regs)
    return out


def assert_matches(dev: ModbusDevice) -> None:
    want = dev.values()
    got = decoded(dev)
    for p in dev.points:
        w, g = want[p.id], got[p.id]
        if isinstance(w, float) and not isinstance(g, str | bool):
            assert g == pytest.approx(w, rel=1e-6, abs=tolerance(p)), p.id
        else:
            assert g == w, p.id


@pytest.mark.parametrize("profile_id", MODBUS_PROFILES)
def test_registers_decode_to_the_model_values(profile_id: str) -> None:
    dev = make_device("d", get_profile(profile_id), seed=4)
    assert isinstance(dev, ModbusDevice)
    for _ in range(50):
        dev.step(2.0)
    assert_matches(dev)


def test_charger_points_are_the_model_attributes() -> None:
    dev = make_device("chg", get_profile("hengtong-ebc12"), {"plugged": [3], "ambient_c": 31.5}, seed=1)
    assert isinstance(dev, ModbusDevice)
    dev.model.runaway(3)
    for _ in range(20):
        dev.step(0.5)
    got = decoded(dev)
    port = dev.model.ports[3]
    assert got["port.3.connector_temp"] == pytest.approx(port.connector_temp, abs=0.05)
    assert got["port.3.current"] == pytest.approx(port.current, abs=0.0005)
    assert got["port.3.power"] == pytest.approx(port.power, rel=1e-6)
    assert got["port.3.state"] == "charging"
    assert got["ambient_temp"] == pytest.approx(dev.model.ambient_temp, abs=0.05)
    assert got["main_relay"] is True and got["smoke"] is False
    dev.model.smoke = True
    assert decoded(dev)["smoke"] is True
    dev.model.set_main(False)
    got = decoded(dev)
    assert got["port.3.state"] == "plugged" and got["main_relay"] is False and got["port.3.current"] == 0


def test_a_state_the_profile_lacks_falls_back() -> None:
    dev = make_device("chg", get_profile("voltpile-cp10"), {"plugged": [2]})
    assert isinstance(dev, ModbusDevice)
    dev.model.set_main(False)
    assert dev.model.ports[2].state == "plugged"
    assert decoded(dev)["port.2.state"] == "idle"  # voltpile-cp10 has no "plugged" state


def test_aquaguard_reports_kpa_nanfang_bar() -> None:
    aq = make_device("a", get_profile("aquaguard-rm4"))
    nf = make_device("n", get_profile("nanfang-fsm8"))
    assert isinstance(aq, ModbusDevice) and isinstance(nf, ModbusDevice)
    assert decoded(aq)["pipe_pressure"] == pytest.approx(aq.model.pipe_pressure * 100, rel=1e-6)
    assert decoded(nf)["pipe_pressure"] == pytest.approx(nf.model.pipe_pressure, abs=0.005)
    aq.model.set_waterflow(True)
    aq.model.valve_tamper = True
    got = decoded(aq)
    assert got["waterflow"] is True and got["valve_tamper"] is True and got["pump_running"] is False


def test_parking_hub_bits_and_count() -> None:
    dev = make_device("p", get_profile("parkhub-ph48"), {"random_start": False, "occupied": [1, 47]})
    assert isinstance(dev, ModbusDevice)
    dev.model.bays[2].sensor_fault = True
    got = decoded(dev)
    assert got["occupied_count"] == 2
    assert got["bay.1.occupied"] is True and got["bay.47.occupied"] is True and got["bay.2.occupied"] is False
    assert got["bay.2.sensor_fault"] is True
    assert got["bay.5.rssi"] == round(dev.model.bays[5].rssi)


@settings(max_examples=60, deadline=None)
@given(st.floats(0, 5e7))
def test_energy_counter_wraps_at_32_bits(kwh: float) -> None:
    dev = make_device("c", get_profile("voltpile-cp10"))
    assert isinstance(dev, ModbusDevice)
    dev.model.ports[1].energy_kwh = kwh
    p = next(p for p in dev.points if p.id == "port.1.energy")
    raw = round(kwh / 0.001) % (1 << 32)
    assert decode(p, dev.read_registers(p.table, p.address, 2)) == pytest.approx(raw * 0.001, abs=1e-6)


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_any_contiguous_read_inside_the_map_agrees_with_point_reads(data: st.DataObject) -> None:
    dev = make_device("c", get_profile(data.draw(st.sampled_from(MODBUS_PROFILES))), seed=2)
    assert isinstance(dev, ModbusDevice)
    p = data.draw(st.sampled_from(dev.points))
    lo, hi = dev._window[p.table]
    start = data.draw(st.integers(max(lo, p.end - 125), p.address))
    count = data.draw(st.integers(p.end - start, min(hi - start, 125)))
    span = dev.read_registers(p.table, start, count)
    assert span[p.address - start : p.end - start] == dev.read_registers(p.table, p.address, p.count)


def test_line_receiver_lines_parse_through_the_profile() -> None:
    prof = get_profile("geomag-rx200")
    dev = make_device("rx", prof, {"speedup": 600, "heartbeat_s": 5}, seed=3)
    assert isinstance(dev, LineReceiverDevice)
    n = 0
    for _ in range(100):
        dev.step(0.1)
        for line in dev.take_lines():
            rec = parse_line(prof, line.rstrip(b"\r\n"))
            bay = dev.model.bays[rec.index]
            assert rec.values[f"bay.{rec.index}.occupied"] is bay.occupied
            assert rec.values[f"bay.{rec.index}.battery"] == pytest.approx(bay.battery, abs=0.0005)
            assert rec.values[f"bay.{rec.index}.rssi"] == round(bay.rssi)
            n += 1
    assert n >= 64, "every bay sends a heartbeat within heartbeat_s"


def test_bay_change_is_reported_at_once() -> None:
    prof = get_profile("geomag-rx200")
    dev = make_device("rx", prof, {"random_start": False, "speedup": 1}, seed=3)
    assert isinstance(dev, LineReceiverDevice)
    dev.model.set_occupied(12, True)
    dev.step(0.1)
    lines = dev.take_lines()
    assert len(lines) == 1 and lines[0].startswith(b"$PBAY,012,1,")
    assert parse_line(prof, lines[0].rstrip()).values["bay.12.occupied"] is True


@pytest.mark.parametrize("kind", GARBAGE_KINDS)
def test_garbage_lines_are_rejected_with_a_reason(kind: str) -> None:
    prof = get_profile("geomag-rx200")
    dev = make_device("rx", prof, seed=5)
    assert isinstance(dev, LineReceiverDevice)
    reasons = set()
    for _ in range(30):
        line = dev.garbage_line(kind)
        assert line.endswith(b"\r\n")
        with pytest.raises(LineError) as e:
            parse_line(prof, line[:-2])
        reasons.add(e.value.reason)
    expected = {
        "random_bytes": {"not_text", "no_match"},
        "bad_checksum": {"checksum"},
        "unknown_bay": {"bad_instance"},
    }[kind]
    assert reasons <= expected and reasons


def test_garbage_rate_mixes_garbage_into_the_stream() -> None:
    prof = get_profile("geomag-rx200")
    dev = make_device("rx", prof, {"heartbeat_s": 1}, seed=5)
    assert isinstance(dev, LineReceiverDevice)
    dev.faults.garbage_rate = 0.5
    good = bad = 0
    for _ in range(50):
        dev.step(0.1)
        for line in dev.take_lines():
            try:
                parse_line(prof, line.rstrip(b"\r\n"))
                good += 1
            except LineError:
                bad += 1
    assert good >= 300 and math.isclose(bad / good, 0.5, abs_tol=0.15)
