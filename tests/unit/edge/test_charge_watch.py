"""The edge side of the charge-session analytics: which devices get it, the `abnormal_charge` event
it sends (checked against the wire contract), the port stop a severe finding asks for, and only
where the site allows it."""

from __future__ import annotations

from device_profiles import wire
from device_profiles.charge_session import Finding
from device_profiles.loader import get_profile
from edge_agent.charge_watch import EdgeChargeWatch, applies
from edge_agent.config import ChargeAnalytics


def finding(severe: bool) -> Finding:
    return Finding(port=4, at=0.0, reason="no_taper", reasons=("no_taper", "unexplained_heat"), severe=severe,
                   eta_s=840.0, excess_c=7.24, slope_c_per_min=0.5, temp_c=43.27, explained_c=36.0, current_a=1.7,
                   energy_kwh=0.66, session_s=5400.0)


def test_chargers_get_it_other_families_do_not() -> None:
    assert applies(get_profile("voltpile-cp10")) and applies(get_profile("hengtong-ebc12"))
    assert not applies(get_profile("nanfang-fsm8")) and not applies(get_profile("parkhub-ph48"))
    assert EdgeChargeWatch.for_device(get_profile("nanfang-fsm8"), ChargeAnalytics()) is None
    assert EdgeChargeWatch.for_device(get_profile("voltpile-cp10"), ChargeAnalytics(enabled=False)) is None


def test_the_event_follows_the_wire_contract() -> None:
    w = EdgeChargeWatch.for_device(get_profile("voltpile-cp10"), ChargeAnalytics())
    assert w is not None
    raw = wire.encode(w.event(finding(False), wire.now(), 17))
    ev = wire.decode(wire.Kind.EVENT, raw)
    assert isinstance(ev, wire.Event)
    assert (ev.kind, ev.severity, ev.point, ev.value, ev.seq) == ("abnormal_charge", "major",
                                                                  "port.4.connector_temp", 43.3, 17)
    assert ev.data["reason"] == "no_taper" and ev.data["eta_s"] == 840 and ev.data["index"] == 4
    assert ev.text.startswith("port 4: the charge never tapers") and "75 °C cut-off" in ev.text
    assert wire.decode(wire.Kind.EVENT, wire.encode(w.event(finding(True), wire.now(), 18))).severity == "critical"


def test_a_port_is_stopped_only_on_a_severe_finding_where_the_site_allows_it() -> None:
    prof = get_profile("hengtong-ebc12")
    off = EdgeChargeWatch.for_device(prof, ChargeAnalytics())
    on = EdgeChargeWatch.for_device(prof, ChargeAnalytics(stop_port=True))
    assert off is not None and on is not None
    assert off.stop(finding(True)) is None and on.stop(finding(False)) is None
    act = on.stop(finding(True))
    assert act is not None
    assert (act.rule, act.command, act.index, act.value, act.threshold) == ("abnormal_charge", "port_enable", 4,
                                                                              False, 70.0)


def test_time_scale_runs_the_analytics_clock_faster_for_simulated_sites() -> None:
    w = EdgeChargeWatch.for_device(get_profile("voltpile-cp10"), ChargeAnalytics(time_scale=60))
    assert w is not None
    w.observe({"ambient_temp": 20.0}, 1000.0)
    w.observe({"ambient_temp": 20.0}, 1001.0)  # one wall second = one analytics minute
    assert w.watch.closed_at is not None
