"""Which readings the edge sends as urgent: the rules of docs/wire.md, "Urgent telemetry", written out
by hand (the limits below are the catalog's, read from the YAML files, not from the code)."""

from __future__ import annotations

import pytest

from device_profiles.loader import get_profile
from device_profiles.model import AlarmRule
from edge_agent.report import Reporter, point_info
from edge_agent.urgency import Limits


def limits(profile: str) -> Limits:
    prof = get_profile(profile)
    return Limits.for_profile(prof, Reporter(point_info(prof), 60.0).event_points)


def sent(lim: Limits, *messages: dict[str, object]) -> list[bool]:
    return [lim.crossed(m) for m in messages]  # type: ignore[arg-type]


def test_a_charger_port_crossing_raise_then_clear() -> None:
    # voltpile-cp10: connector_overtemp raise 70, clear 60 (per port)
    lim = limits("voltpile-cp10")
    t = "port.1.connector_temp"
    assert sent(lim, {t: 30.0}, {t: 68.5}, {t: 70.0}, {t: 74.0}, {t: 65.0}, {t: 69.9}, {t: 60.0}, {t: 59.0}) == [
        False,  # first value, normal
        False,  # into the hysteresis band: nothing changes for the engine
        True,   # at raise: a move of exactly the limit counts (>=)
        False,  # further up, same side
        True,   # back into the band: the raise condition ends (a hold is over)
        False,  # within the band
        True,   # at clear: the alarm may clear
        False,
    ]


def test_each_port_and_point_is_judged_on_its_own() -> None:
    lim = limits("voltpile-cp10")
    assert sent(lim, {"port.1.connector_temp": 50.0, "port.2.connector_temp": 50.0}) == [False]
    assert sent(lim, {"port.2.connector_temp": 71.0}) == [True]
    assert sent(lim, {"port.1.connector_temp": 52.0, "port.1.current": 3.0}) == [False]
    assert sent(lim, {"port.1.current": 5.0}) == [True]  # overcurrent raise 5.0
    assert sent(lim, {"ambient_temp": 50.0}) == [True]  # cabinet_hot raise 50 (not in a block)


def test_a_first_value_is_urgent_only_past_raise() -> None:
    lim = limits("voltpile-cp10")
    assert sent(lim, {"port.3.connector_temp": 65.0}) == [False]  # in the band: nothing to raise from
    assert sent(lim, {"port.4.connector_temp": 80.0}) == [True]


def test_a_below_rule_counts_downwards() -> None:
    # aquaguard-rm4: pipe_pressure direction below, raise 150, clear 200
    lim = limits("aquaguard-rm4")
    p = "pipe_pressure"
    assert sent(lim, {p: 300}, {p: 200}, {p: 150}, {p: 120}, {p: 180}, {p: 200}, {p: 220}) == [
        False, False, True, False, True, True, False,
    ]


def test_points_with_events_and_rules_the_edge_does_not_judge_are_left_out() -> None:
    lim = limits("voltpile-cp10")
    # smoke and port state have `event:` (their changes travel as events); connector_temp_rise is a
    # rate of rise; `voltage` has no rule at all
    assert sent(lim, {"smoke": True}, {"port.1.state": "fault"}, {"port.1.voltage": 60.0}) == [False, False, False]
    assert sent(lim, {"bogus": 1e9}) == [False]


def test_a_state_rule_on_a_point_without_events() -> None:
    rule = AlarmRule.model_validate({"key": "door", "kind": "state", "point": "door", "value": "open",
                                     "severity": "major"})
    lim = Limits({(None, "door"): (rule,)})
    assert sent(lim, {"door": "closed"}, {"door": "open"}, {"door": "open"}, {"door": "ajar"}, {"door": "closed"}) == [
        False, True, False, True, False,
    ]


@pytest.mark.parametrize(("value", "urgent"), [("hot", True), (True, False)])
def test_a_value_of_another_type(value: object, urgent: bool) -> None:
    # text that is no number says nothing about the limit (the engine's conditions are unknown): a
    # change the cloud should see at once; a boolean is 1.0 to the engine, as clear as 40 was
    lim = limits("voltpile-cp10")
    t = "port.1.connector_temp"
    assert sent(lim, {t: 40.0}, {t: value}) == [False, urgent]


def site_limits(profile: str, *overrides: tuple[str, float, float]) -> Limits:
    from device_profiles import wire

    prof = get_profile(profile)
    ovr = [wire.LimitOverride(rule=r, raise_at=a, clear_at=c) for r, a, c in overrides]
    return Limits.for_profile(prof, Reporter(point_info(prof), 60.0).event_points, ovr)


def test_a_sites_limit_is_judged_beside_the_profiles() -> None:
    """docs/wire.md, "Urgent telemetry": a site moved connector_overtemp to raise 55, clear 50; a crossing
    of either its limits or the profile's (70/60) is urgent."""
    lim = site_limits("voltpile-cp10", ("connector_overtemp", 55.0, 50.0))
    t = "port.1.connector_temp"
    assert sent(lim, {t: 30.0}, {t: 54.0}, {t: 55.0}, {t: 60.0}, {t: 70.0}, {t: 62.0}, {t: 50.0}, {t: 49.0}) == [
        False,
        False,  # into the site's band
        True,   # at the site's raise
        False,  # further up, still short of the profile's raise
        True,   # the profile's raise
        True,   # back into the profile's band (its raise condition ends)
        True,   # below the site's raise, at its clear: the site's alarm may clear
        False,
    ]
    assert sent(lim, {"port.2.connector_temp": 56.0}) == [True]  # a first value past the site's raise


def test_what_does_not_fit_the_profile_is_ignored_and_the_profiles_limits_stand() -> None:
    lim = site_limits("voltpile-cp10",
                      ("no_such_rule", 10.0, 5.0),       # not in the profile
                      ("connector_temp_rise", 1.0, 0.5),  # a rate-of-rise rule, not a threshold
                      ("smoke", 1.0, 0.0),                # a state rule
                      ("connector_overtemp", 50.0, 55.0),  # clear on the wrong side of raise
                      ("overcurrent", 5.0, 4.0))          # the profile's own limits again
    t = "port.1.connector_temp"
    assert sent(lim, {t: 30.0}, {t: 52.0}, {t: 70.0}) == [False, False, True]
    assert sent(lim, {"port.1.current": 4.5}, {"port.1.current": 5.0}) == [False, True]
    assert [len(v) for v in lim.by_point.values()] == [len(v) for v in limits("voltpile-cp10").by_point.values()]
