"""Physical models: the shapes the edge and cloud rely on (runaway, cut-off, pressure, the day)."""

from __future__ import annotations

import statistics
from typing import Any

import pytest

from simulators.physics.charger import ChargerModel, ChargerParams
from simulators.physics.parking import ParkingModel, ParkingParams, day_fraction
from simulators.physics.sprinkler import SprinklerModel, SprinklerParams


def run(model: object, seconds: float, dt: float = 0.1) -> None:
    for _ in range(round(seconds / dt)):
        model.step(dt)  # type: ignore[attr-defined]


def quiet_charger(**kw: Any) -> ChargerModel:
    return ChargerModel(n_ports=10, params=ChargerParams(arrivals_per_hour=0, stay_full_s=0, **kw), seed=1)


def test_ports_are_keyed_by_their_printed_number() -> None:
    m = quiet_charger()
    assert sorted(m.ports) == list(range(1, 11))
    assert m.ports[3].number == 3
    with pytest.raises(KeyError, match="no port 11"):
        m.port(11)


def test_charging_draws_current_heats_the_connector_and_accumulates_energy() -> None:
    m = quiet_charger(ambient_c=20)
    m.plug(3, soc=0.2)
    assert m.ports[3].state == "charging" and m.ports[3].current == pytest.approx(1.6)
    run(m, 600)
    p = m.ports[3]
    assert 20 + 3.0 * 1.6**2 * 0.9 < p.connector_temp < 20 + 3.0 * 1.6**2 + 0.5
    assert p.energy_kwh == pytest.approx(p.power * 600 / 3.6e6, rel=0.05)
    assert m.ports[4].current == 0 and m.ports[4].connector_temp == pytest.approx(20, abs=0.5)


def test_ambient_is_a_step_or_a_ramp() -> None:
    m = quiet_charger(ambient_c=20)
    m.set_ambient(35)
    assert m.ambient_temp == 35 and m.params.ambient_c == 35, "without a duration: at once"
    m.set_ambient(45, over_s=100)
    run(m, 50)
    assert m.ambient_temp == pytest.approx(40, abs=0.3), "half way up the ramp"
    run(m, 60)
    assert m.ambient_temp == pytest.approx(45, abs=0.3) and m.ambient_ramp is None
    run(m, 300)
    assert m.ambient_temp == pytest.approx(45, abs=0.5), "and it stays there"


def test_runaway_climbs_several_degrees_per_second_until_switched_off_then_cools() -> None:
    m = quiet_charger(ambient_c=20)
    m.plug(3, soc=0.3)
    run(m, 60)
    t0 = m.ports[3].connector_temp
    m.runaway(3)
    run(m, 10)
    t1 = m.ports[3].connector_temp
    assert (t1 - t0) / 10 >= 3.0, "runaway should climb several °C/s"
    m.set_enabled(3, False)
    assert m.ports[3].current == 0 and m.ports[3].power == 0, "off stops the current at once"
    assert m.ports[3].state == "disabled"
    run(m, 0.1)
    peak = m.ports[3].connector_temp
    run(m, 60)
    assert m.ports[3].connector_temp < peak - 10, "a switched-off port cools"
    m.set_enabled(3, True)
    run(m, 10)
    assert m.ports[3].connector_temp < peak, "runaway ended with the cut-off"


def test_main_cut_stops_every_port_at_once() -> None:
    m = quiet_charger(plugged=[1, 2, 3])
    assert sum(p.current for p in m.ports.values()) > 4
    m.set_main(False)
    assert all(p.current == 0 and p.power == 0 for p in m.ports.values())
    assert m.ports[1].state == "plugged" and m.ports[4].state == "idle"
    m.set_main(True)
    assert m.ports[1].current > 0


def test_bikes_arrive_finish_and_leave() -> None:
    m = ChargerModel(
        n_ports=10, params=ChargerParams(arrivals_per_hour=20, stay_full_s=300, battery_kwh=0.05), seed=3
    )
    seen: set[str] = set()
    for _ in range(3600):
        m.step(1.0)
        seen |= {p.state for p in m.ports.values()}
    assert {"idle", "charging", "full"} <= seen
    assert any(p.energy_kwh > 0.05 for p in m.ports.values())


def test_fault_port_draws_nothing() -> None:
    m = quiet_charger(plugged=[2])
    m.set_fault(2)
    assert m.ports[2].state == "fault" and m.ports[2].current == 0


def test_same_seed_same_story() -> None:
    a = ChargerModel(n_ports=4, params=ChargerParams(arrivals_per_hour=30), seed=9)
    b = ChargerModel(n_ports=4, params=ChargerParams(arrivals_per_hour=30), seed=9)
    run(a, 300, 1.0)
    run(b, 300, 1.0)
    assert [(p.bike, round(p.connector_temp, 6)) for p in a.ports.values()] == [
        (p.bike, round(p.connector_temp, 6)) for p in b.ports.values()
    ]


def test_pressure_drops_while_water_flows_pump_starts_and_pressure_recovers() -> None:
    m = SprinklerModel(SprinklerParams(), seed=1)
    run(m, 10)
    assert m.pipe_pressure == pytest.approx(4.0, abs=0.1) and not m.pump_running
    m.set_waterflow(True)
    run(m, 2)
    assert m.pipe_pressure < 3.0, "flowing water drops the pressure"
    run(m, 20)
    assert m.pump_running, "the pump starts on low pressure"
    assert m.pipe_pressure == pytest.approx(3.2, abs=0.2)
    m.set_waterflow(False)
    peak = 0.0
    for _ in range(300):
        m.step(0.1)
        peak = max(peak, m.pipe_pressure)
    assert peak >= 5.9, "the pump pushes the pressure up to its cut-out once the flow stops"
    assert not m.pump_running, "then it stops"
    assert m.pipe_pressure == pytest.approx(4.0, abs=0.3)


def test_pump_forced_off_keeps_pressure_low_during_flow() -> None:
    m = SprinklerModel(SprinklerParams(), seed=1)
    m.set_pump(False)
    m.set_waterflow(True)
    run(m, 30)
    assert not m.pump_running and m.pipe_pressure < 1.0


def test_day_curve_peaks_at_night() -> None:
    assert day_fraction(2) == pytest.approx(0.9)
    assert day_fraction(14) == pytest.approx(0.25)
    assert day_fraction(8) == pytest.approx(day_fraction(20))


def test_bays_follow_the_day() -> None:
    prm = ParkingParams(start_hour=0, speedup=600, dwell_h=0.5, random_start=False)
    m = ParkingModel(n_bays=200, params=prm, seed=4)
    by_hour: dict[int, list[float]] = {}
    for _ in range(int(2 * 86400 / 600)):  # two simulated days, 1 simulated minute per step... x10
        m.step(1.0)
        by_hour.setdefault(int(m.hour), []).append(m.occupied_count / 200)
    night = statistics.mean(by_hour[3] + by_hour[4])
    afternoon = statistics.mean(by_hour[14] + by_hour[15])
    assert night > 0.75 and afternoon < 0.4, (night, afternoon)


def test_rush_hour_fills_the_garage_and_changes_are_recorded() -> None:
    prm = ParkingParams(start_hour=13, speedup=60, random_start=False)
    m = ParkingModel(n_bays=48, params=prm, seed=5)
    assert m.occupied_count == 0
    m.rush_hour(3600)
    run(m, 60, 1.0)  # one simulated hour
    assert m.occupied_count > 40
    changed = m.drain_changes()
    assert len(changed) >= m.occupied_count and m.drain_changes() == []


def test_batteries_drain_and_rssi_jitters_a_faulty_sensor_freezes() -> None:
    prm = ParkingParams(speedup=86400, battery_drain_v_per_day=0.01, random_start=False)
    m = ParkingModel(n_bays=4, params=prm, seed=6)
    m.bays[2].sensor_fault = True
    v0 = m.bays[1].battery
    rssi = []
    for _ in range(10):
        m.step(1.0)  # ten simulated days
        rssi.append(m.bays[1].rssi)
    assert m.bays[1].battery == pytest.approx(v0 - 0.1, abs=1e-6)
    assert statistics.pstdev(rssi) > 0.5
    assert m.bays[2].occupied is False
