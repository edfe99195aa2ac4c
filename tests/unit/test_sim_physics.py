"""Physical models: the shapes the edge and cloud rely on (runaway, cut-off, pressure, the day)."""

from __future__ import annotations

import random
import statistics
from typing import Any

import pytest

from simulators.physics.battery import Pack
from simulators.physics.charger import ChargerModel, ChargerParams
from simulators.physics.parking import ParkingModel, ParkingParams, day_fraction
from simulators.physics.sprinkler import SprinklerModel, SprinklerParams
from simulators.physics.variety import Weather, random_pack


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
    assert m.ports[3].state == "charging" and m.ports[3].current == pytest.approx(1.6, rel=0.01)
    run(m, 600)
    p = m.ports[3]
    prm = m.params
    contact = prm.heat_c_per_a2 * 1.6**2  # the connector, at steady state after 5 thermal time constants
    brick = prm.brick_k_per_w * p.power * 0.12  # the charger brick's losses in the locker
    assert 20 + contact + brick < p.true_temp < 20 + contact + brick + 1.5  # + the pack, slowly warming
    assert p.energy_kwh == pytest.approx(p.power * 600 / 3.6e6, rel=0.05)
    assert m.ports[7].current == 0 and m.ports[7].connector_temp == pytest.approx(20, abs=0.5)
    assert 20 < m.ports[4].true_temp < 22, "its neighbour warms a little"


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


def test_cool_puts_the_connector_itself_back_at_the_air_temperature() -> None:
    """The benches' shortcut between two runs: the connector, not only its reading, is cool, so
    the next step still reads it cool (setting the reading alone read ~75 °C again a step later)."""
    m = quiet_charger(ambient_c=20)
    m.runaway(2)
    run(m, 15)
    assert m.ports[2].connector_temp > 60
    m.cool(2)
    run(m, 1)
    assert m.ports[2].connector_temp < 25 and not m.ports[2].runaway


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
    most = 0.0
    for _ in range(3600):
        m.step(1.0)
        seen |= {p.state for p in m.ports.values()}
        most = max(most, *(p.energy_kwh for p in m.ports.values()))
    assert {"idle", "charging", "full"} <= seen
    assert most > 0.03, "a session's energy accumulates (and starts again at the next bike)"


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


# ---- slow failures and the normal variety (simulators/physics/battery.py, variety.py)
def twin(mode: str | None, minutes: float, onset_s: float = 0.0, **pack: Any) -> ChargerModel:
    """A cabinet with one bike on port 3, failing (`mode`) or healthy (None)."""
    m = quiet_charger(ambient_c=20, sensor_noise_c=0.0, meter_noise_rel=0.0)
    m.plug(3, pack=Pack(**{"capacity_kwh": 0.6, "soc": 0.2, "temp": 20.0, **pack}))
    if mode:
        m.fail(3, mode, onset_s=onset_s, speed=1.0, severity=0.8)  # type: ignore[arg-type]
    run(m, minutes * 60, 5.0)
    return m


def test_a_failed_bms_never_tapers_and_overcharge_heats_the_pack_until_it_runs_away() -> None:
    healthy, failing = twin(None, 95, soc=0.7), twin("bms_failure", 95, soc=0.7)
    assert healthy.ports[3].state == "full" and healthy.ports[3].current < 0.1
    p = failing.ports[3]
    assert p.state == "charging" and p.current > 1.6, "no taper: constant current past full"
    assert p.pack.overcharge_kwh > 0.05 and p.energy_kwh > healthy.ports[3].energy_kwh + 0.05
    assert p.pack.temp > healthy.ports[3].pack.temp + 15 and p.true_temp > healthy.ports[3].true_temp + 5
    run(failing, 3600, 5.0)
    assert p.pack.runaway, "left charging, the overcharged pack runs away"


def test_a_micro_short_spikes_the_current_and_heats_with_the_current_steady() -> None:
    m = twin("micro_short", 30)
    currents = []
    for _ in range(120):
        m.step(5.0)
        currents.append(m.ports[3].current)
    assert max(currents) > 1.15 * statistics.median(currents), "spikes"
    assert statistics.pstdev(currents) > 0.02, "ripple"
    assert m.ports[3].pack.heat_w > 60 and m.ports[3].pack.temp > twin(None, 40).ports[3].pack.temp + 5


def test_a_hot_connector_heats_with_the_square_of_the_current() -> None:
    slow, fast = twin("hot_connector", 25, charger_a=1.0), twin("hot_connector", 25, charger_a=2.0)
    ok_slow, ok_fast = twin(None, 25, charger_a=1.0), twin(None, 25, charger_a=2.0)
    extra_slow = slow.ports[3].true_temp - ok_slow.ports[3].true_temp
    extra_fast = fast.ports[3].true_temp - ok_fast.ports[3].true_temp
    assert extra_slow > 1.0
    assert extra_fast == pytest.approx(4 * extra_slow, rel=0.2), "∝ I²"
    assert slow.ports[3].pack.temp == pytest.approx(ok_slow.ports[3].pack.temp, abs=0.3), "not the pack"


def test_an_ageing_pack_runs_warmer_and_stays_longer_at_constant_current() -> None:
    ok, old = twin(None, 50), twin("ageing_pack", 50)
    assert old.ports[3].soc < ok.ports[3].soc, "less of the energy is stored: a longer constant-current phase"
    assert old.ports[3].pack.temp > ok.ports[3].pack.temp + 8


def test_a_failure_waits_for_its_onset() -> None:
    m = twin("micro_short", 10, onset_s=1800)
    assert m.ports[3].pack.heat_w == pytest.approx(twin(None, 10).ports[3].pack.heat_w, rel=0.01)


def test_cutting_a_failing_bms_early_saves_the_pack_late_does_not() -> None:
    early = twin("bms_failure", 45, soc=0.7)
    early.set_enabled(3, False)
    run(early, 3 * 3600, 10.0)
    assert not early.ports[3].pack.runaway
    late = twin("bms_failure", 45, soc=0.7)
    while not late.ports[3].pack.runaway:
        late.step(5.0)
    late.set_enabled(3, False)
    run(late, 600, 10.0)
    assert late.ports[3].pack.temp > 200


def test_neighbours_warm_each_other_and_the_cabinet_warms_with_its_load() -> None:
    m = quiet_charger(ambient_c=20, sensor_noise_c=0.0)
    for n in (2, 4):
        m.plug(n, pack=Pack(capacity_kwh=1.5, soc=0.1, charger_a=3.0, temp=20.0))
    run(m, 3600, 5.0)
    assert m.ports[3].true_temp > m.ports[7].true_temp + 1.0, "port 3 sits between two fast chargers"
    assert m.ambient_temp > 20.3


def test_sensor_glitches_fool_the_reading_not_the_physics() -> None:
    m = twin(None, 20)
    p = m.ports[3]
    m.sensor_stuck(3, 600)
    stuck = p.connector_temp
    run(m, 300, 5.0)
    assert p.connector_temp == stuck
    run(m, 400, 5.0)
    assert p.connector_temp == pytest.approx(p.true_temp)
    m.sensor_spike(3, 150.0, 1.0)
    assert p.connector_temp == 150.0
    run(m, 5, 5.0)
    assert p.connector_temp < 60
    before = p.true_temp
    m.meter_spike(3, 3.0, 6.0)
    assert p.current > 4.0
    run(m, 5, 5.0)
    assert p.true_temp == pytest.approx(before, abs=0.3), "a meter glitch heats nothing"


def test_variety_packs_and_weather_stay_in_their_ranges() -> None:
    rng = random.Random(3)
    packs = [random_pack(rng, 0.5, 20.0) for _ in range(500)]
    assert all(0.3 <= p.capacity_kwh <= 1.5 and 0.75 <= p.taper_from <= 0.92 and 0 <= p.age <= 1 for p in packs)
    fast = [p for p in packs if p.charger_a >= 2.4]
    assert 0.08 < len(fast) / len(packs) < 0.25 and max(p.charger_a for p in packs) <= 3.0
    hot = Weather("summer_afternoon", 31.0, seed=1)
    assert max(hot.outside(h * 600) for h in range(48)) > 38 and hot.sun(12 * 3600) == pytest.approx(0.0, abs=1e-9)
    assert any(hot.sun(t) < 0.5 for t in range(0, 6 * 3600, 60)), "clouds pass"
    cold = Weather("cold_night", 5.0, seed=1)
    assert cold.outside(8 * 3600) < cold.outside(0) - 8
