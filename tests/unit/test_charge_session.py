"""Charge-session analytics (device_profiles/charge_session.py) on the simulator's physics: sessions
tracked, failures warned of before the cut-off with their reason, the normal variety and sensor
glitches left alone. The full labelled evaluation (10,000+ sessions) is bench/early_warning.py."""

from __future__ import annotations

import math
from typing import Any

import pytest

from device_profiles import wire
from device_profiles.charge_session import REASONS, ChargeWatch, Finding, Settings, describe
from device_profiles.loader import get_profile
from simulators.physics.battery import Pack
from simulators.physics.charger import ChargerModel, ChargerParams


def cabinet(**kw: Any) -> ChargerModel:
    prm = {"arrivals_per_hour": 0, "stay_full_s": 0, "ambient_c": 22.0, **kw}
    return ChargerModel(n_ports=10, params=ChargerParams(**prm), seed=7)


def values(m: ChargerModel, ports: list[int] | None = None) -> dict[str, Any]:
    """What the edge decodes from a voltpile-cp10 (0.1 °C, 0.01 A; no "plugged" state)."""
    out: dict[str, Any] = {"ambient_temp": round(m.ambient_temp, 1)}
    for n in ports or list(m.ports):
        p = m.ports[n]
        out[f"port.{n}.connector_temp"] = round(p.connector_temp, 1)
        out[f"port.{n}.current"] = round(p.current, 2)
        out[f"port.{n}.power"] = round(p.power)
        out[f"port.{n}.energy"] = round(p.energy_kwh, 3)
        out[f"port.{n}.state"] = p.state if p.state != "plugged" else "idle"
        out[f"port.{n}.enabled"] = p.enabled
    return out


def play(m: ChargerModel, w: ChargeWatch, minutes: float, dt: float = 5.0, until_c: float | None = None,
         t0: float = 0.0) -> list[Finding]:
    found: list[Finding] = []
    t = t0
    for _ in range(round(minutes * 60 / dt)):
        t += dt
        m.step(dt)
        found += w.observe(values(m), t)
        if until_c is not None and max(p.connector_temp for p in m.ports.values()) >= until_c:
            break
    return found


def watch() -> ChargeWatch:
    return ChargeWatch.for_profile(get_profile("voltpile-cp10"), keep_curves=True, keep_ended=8)


def test_a_normal_session_is_tracked_through_its_phases_and_raises_nothing() -> None:
    m, w = cabinet(), watch()
    m.plug(3, pack=Pack(capacity_kwh=0.6, soc=0.3, charger_a=1.6, temp=22.0))
    m.plug(4, pack=Pack(capacity_kwh=1.2, soc=0.1, charger_a=2.8, temp=28.0, age=0.9))  # fast, old, warm
    assert play(m, w, 150) == []
    ses = w.session(3)
    assert ses is not None and ses.phase == "full" and ses.taper_at is not None
    assert ses.energy_kwh == pytest.approx(m.ports[3].energy_kwh, abs=0.01)
    assert 0.4 < ses.energy_kwh < 0.6 and ses.peak_c > 27 and ses.learned
    assert abs(ses.peak_excess_c) < 3.0, "the model explains a healthy charge"
    assert all(not math.isnan(c[2]) for c in ses.curve[13:]), "explained temperature from the learnt model"
    m.unplug(3)
    play(m, w, 2, t0=150 * 60)
    assert w.session(3) is None and w.ended[-1].port == 3 and w.ended[-1].end is not None


@pytest.mark.parametrize(
    ("mode", "pack", "reason"),
    [
        ("bms_failure", {"soc": 0.7}, "no_taper"),
        ("micro_short", {"soc": 0.1}, "current_spikes"),
        ("hot_connector", {"soc": 0.1, "charger_a": 2.0}, None),
        ("ageing_pack", {"soc": 0.1}, None),
    ],
)
def test_each_failure_is_warned_of_before_the_cut_off(mode: str, pack: dict[str, Any], reason: str | None) -> None:
    m, w = cabinet(), watch()
    m.plug(2, pack=Pack(capacity_kwh=0.8, soc=0.4, temp=22.0))
    m.plug(5, pack=Pack(**{"capacity_kwh": 0.6, "temp": 22.0, **pack}))
    m.fail(5, mode, onset_s=600, speed=1.0, severity=0.8)  # type: ignore[arg-type]
    found = play(m, w, 240, until_c=75.0)
    assert m.ports[5].connector_temp >= 75.0, "it does reach the cut-off if nothing stops it"
    first = [f for f in found if f.port == 5]
    assert first, f"{mode}: no warning before the cut-off"
    f = first[0]
    assert f.reason in REASONS and (reason is None or reason in f.reasons), f
    assert f.temp_c < 60.0, f"{mode}: warned only at {f.temp_c} °C"
    assert not [x for x in found if x.port != 5], "the healthy neighbour stays quiet"
    assert any(x.severe for x in first), "it becomes severe before the cut-off"
    data = f.data()
    assert data["index"] == 5 and data["reason"] == f.reason
    ev = wire.Event(ts=wire.now(), seq=1, id=wire.new_id(), kind="abnormal_charge", severity="major",
                    point="port.5.connector_temp", value=f.temp_c, text="x", data=data)
    assert wire.decode(wire.Kind.EVENT, wire.encode(ev)).data == data  # flat scalars: travels as is


def test_a_spike_and_a_stuck_sensor_are_not_findings() -> None:
    m, w = cabinet(), watch()
    m.plug(3, pack=Pack(capacity_kwh=0.8, soc=0.2, temp=22.0))
    play(m, w, 30)
    m.sensor_spike(3, 150.0, 5.0)  # one reading of a broken thermistor
    m.meter_spike(3, 3.0, 5.0)
    assert play(m, w, 10, t0=30 * 60) == []
    m.sensor_stuck(3, 40 * 60)  # stuck through the taper, while the model says it should cool
    assert play(m, w, 120, t0=40 * 60) == []


def test_polls_of_one_class_and_garbage_are_taken_as_they_come() -> None:
    m, w = cabinet(), watch()
    m.plug(1, pack=Pack(capacity_kwh=0.6, soc=0.3, temp=22.0))
    t = 0.0
    for i in range(2000):
        t += 1.0
        m.step(1.0)
        v = values(m, [1])
        safety = {k: x for k, x in v.items() if k.endswith(("connector_temp", "state", "enabled"))}
        routine = {k: x for k, x in v.items() if k not in safety}
        assert w.observe(safety, t) == []
        if i % 5 == 0:
            assert w.observe(routine, t) == []
    assert w.observe({"port.1.connector_temp": "hot", "port.99.current": 3.0, "port.x.current": 1,
                      "port.1.current": None, "smoke": True}, t + 1) == []  # type: ignore[dict-item]
    ses = w.session(1)
    assert ses is not None and ses.learned and 0.05 < ses.energy_kwh < 0.5


def test_a_connector_far_hotter_than_its_peers_under_the_same_load() -> None:
    m, w = cabinet(), watch()
    for n in (2, 4, 6, 8):
        m.plug(n, pack=Pack(capacity_kwh=1.5, soc=0.1, charger_a=2.0, temp=22.0))
    m.ports[6].heat_coeff = 5.0  # a bad contact from the start: nothing to see change, much to compare
    found = play(m, w, 60)
    assert [f.port for f in found] == [6] and "connector_heating" in found[0].reasons


def test_settings_move_the_thresholds() -> None:
    strict = Settings(warn_excess_c=50.0, high_excess_c=60.0, sustain_excess_c=60.0, severe_excess_c=70.0,
                      envelope_margin_c=60.0, spikes_warn=1000, early_slope_c_per_min=50.0)
    m = cabinet()
    w = ChargeWatch.for_profile(get_profile("voltpile-cp10"), strict)
    assert w.cutoff_c == 75.0 and ChargeWatch.for_profile(get_profile("hengtong-ebc12")).cutoff_c == 70.0
    m.plug(5, pack=Pack(capacity_kwh=0.6, soc=0.7, temp=22.0))
    m.fail(5, "bms_failure", severity=0.8)
    assert play(m, w, 120, until_c=70.0) == []


def test_what_a_finding_says_in_both_languages() -> None:
    data = {"reason": "no_taper", "excess_c": 6.3, "slope_c_per_min": 0.41, "energy_kwh": 0.71, "eta_s": 1380}
    en, zh = describe(data, 75.0), describe(data, 75.0, lang="zh")
    assert "never tapers" in en and "6.3 °C above" in en and "about 23 min to the 75 °C cut-off" in en
    assert "电池管理系统可能失效" in zh and "约 23 分钟后达到断电温度 75 °C" in zh and "0.71 kWh" in zh
    assert "heating up" in describe({"reason": "something new"})


@pytest.mark.parametrize("how", ["between-two-polls", "idle-for-one-poll", "no-state-point"])
def test_a_bike_swapped_within_a_bucket_starts_a_new_session(how: str) -> None:
    """A resident takes a bike away and the next plugs theirs in between two polls (no poll sees the
    port idle: only the energy counter, reset by the charger, tells), or within one bucket (one poll sees
    it idle; or, a charger without state and energy points, sees no current). The old session ends
    there; the new bike's session starts with its own model."""
    m, w = cabinet(), watch()
    keep = ("state", "energy") if how != "no-state-point" else ()

    def seen() -> dict[str, Any]:
        return {k: v for k, v in values(m).items() if not k.endswith(("state", "energy")) or k.endswith(keep)}

    m.plug(3, pack=Pack(capacity_kwh=0.8, soc=0.2, temp=22.0))
    t = 0.0
    for _ in range(40 * 12):
        t += 5.0
        m.step(5.0)
        w.observe(seen(), t)
    old_energy = m.ports[3].energy_kwh
    t += 5.0  # 5 s into a bucket: the swap is over long before it closes
    m.step(5.0)
    w.observe(seen(), t)
    m.unplug(3)
    if how != "between-two-polls":
        t += 5.0
        m.step(5.0)
        w.observe(seen(), t)
    m.plug(3, pack=Pack(capacity_kwh=1.2, soc=0.1, charger_a=2.0, temp=22.0))
    for _ in range(20 * 12):
        t += 5.0
        m.step(5.0)
        w.observe(seen(), t)
    ses = w.session(3)
    assert ses is not None and ses.start >= 40 * 60.0, "the new bike's session starts at the swap"
    assert ses.energy_kwh == pytest.approx(m.ports[3].energy_kwh, abs=0.01)
    old = [e for e in w.ended if e.port == 3]
    assert len(old) == 1 and old[0].end is not None and old[0].energy_kwh == pytest.approx(old_energy, abs=0.01)


@pytest.mark.parametrize(("extra_c", "warns"), [(4.3, True), (3.6, False)])
def test_unexplained_heat_that_lasts_warns_from_3_5_degrees(extra_c: float, warns: bool) -> None:
    """An ageing pack's heat builds slowly and may never grow fast enough, nor reach 5 °C, for the rising
    rule: unexplained heat held for `sustain_buckets` warns from `sustain_excess_c` (3.5 °C). The port's
    reading is what the model explains plus `extra_c` from minute 20 on; the allowance for a warm, healthy
    pack (about 0.4 °C at this power) does not count."""
    s = Settings()
    w = ChargeWatch([1], settings=s)
    f = sp = 0.0
    found: list[Finding] = []
    for k in range(1, 121):  # one poll a minute, as the bucket closes
        t = k * 60.0
        f += (1.0 - f) * (1.0 - math.exp(-60.0 / s.fast_tau_s))  # I² = 1 through the connector lag
        sp += (220.0 - sp) * (1.0 - math.exp(-60.0 / s.slow_tau_s))
        temp = 20.0 + 1.6 * f + s.pack_k_per_w * sp + (extra_c if t >= 20 * 60 else 0.0)
        found += w.observe({"ambient_temp": 20.0, "port.1.state": "charging", "port.1.current": 1.0,
                            "port.1.power": 220.0, "port.1.connector_temp": round(temp, 1)}, t)
    ses = w.session(1)
    assert ses is not None and ses.learned
    assert bool(found) is warns, (found, ses.peak_sustained_c)
    if warns:
        assert found[0].reason == "no_taper" and "unexplained_heat" in found[0].reasons
        assert found[0].session_s >= (20 + s.sustain_buckets) * 60 - s.bucket_s
