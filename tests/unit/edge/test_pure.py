"""Pure parts of the edge agent: planner, RTU budget, breaker, report-by-exception, interlocks."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from device_profiles.loader import get_profile
from device_profiles.model import PollClass, Table
from device_profiles.points import resolve_points
from edge_agent import budget as B
from edge_agent.breaker import Breaker
from edge_agent.interlocks import Interlocks
from edge_agent.planner import merge, plan, split_values
from edge_agent.report import Reporter, point_info

# ------------------------------------------------------------------ planner


def test_cp10_safety_points_are_merged() -> None:
    p = get_profile("voltpile-cp10")
    reads = plan(p, PollClass.SAFETY)
    # smoke (DI 0), main relay + 10 enabled coils (coil 0, 16..25), state/temp of 10 ports (IR 100..179)
    tables = sorted(r.table.value for r in reads)
    assert len(reads) <= 4, reads
    assert "input" in tables and "coil" in tables and "discrete_input" in tables
    covered = {pt.id for r in reads for pt in r.points}
    want = {pt.id for pt in resolve_points(p) if pt.poll is PollClass.SAFETY}
    assert covered == want
    for r in reads:
        limit = 100 if not r.table.is_bit else 200
        assert r.count <= limit


def test_reads_respect_the_register_limit() -> None:
    p = get_profile("voltpile-cp10")
    pts = [pt for pt in resolve_points(p) if pt.table is Table.INPUT]
    reads = merge(pts, {Table.INPUT: 10}, max_gap=4)
    assert all(r.count <= 10 for r in reads)
    assert {pt.id for r in reads for pt in r.points} == {pt.id for pt in pts}


@given(st.sets(st.integers(0, 300), min_size=1, max_size=60), st.integers(1, 125), st.integers(0, 8))
def test_merge_covers_every_point_once_within_limits(addrs: set[int], limit: int, gap: int) -> None:
    p = get_profile("nanfang-fsm8")
    base = next(pt for pt in resolve_points(p) if pt.table is Table.INPUT and pt.count == 1)
    from dataclasses import replace

    pts = [replace(base, id=f"p{a}", address=a) for a in addrs]
    reads = merge(pts, {Table.INPUT: limit}, max_gap=gap)
    seen = [pt.id for r in reads for pt in r.points]
    assert sorted(seen) == sorted(pt.id for pt in pts)
    for r in reads:
        assert r.count <= limit
        assert all(r.address <= pt.address and pt.end <= r.end for pt in r.points)
        regs = list(range(r.count))
        parts = split_values(r, regs)
        assert all(len(v) == 1 for v in parts.values())
    # no two reads could have been one: a hole wider than gap, or the limit, separates them
    rs = sorted(reads, key=lambda r: r.address)
    for a, b in itertools.pairwise(rs):
        assert b.address - a.end > gap or b.end - a.address > limit


# ------------------------------------------------------------------ budget


def test_rtu_timing_at_9600() -> None:
    tc = 11 / 9600
    assert B.t35(9600) == pytest.approx(3.5 * tc)
    assert B.t35(38400) == 0.00175
    # one register: (13 + 2) characters + 2 × t3.5
    assert B.read_time(9600, Table.HOLDING, 1) == pytest.approx(15 * tc + 7 * tc)
    assert B.read_time(9600, Table.HOLDING, 10) == pytest.approx(33 * tc + 7 * tc)
    assert B.max_tps(9600) == pytest.approx(1 / (22 * tc))


def test_budget_warns_when_polls_do_not_fit() -> None:
    ok = B.budget("b", 9600, {"a": [(Table.INPUT, 10, 1.0)]})
    assert ok.fits and ok.warning() is None
    over = B.budget("b", 9600, {f"d{i}": [(Table.INPUT, 60, 0.1)] for i in range(5)})
    assert not over.fits
    w = over.warning()
    assert w is not None and "cannot all run on time" in w and "9600" in w


# ------------------------------------------------------------------ breaker


def test_breaker_opens_backs_off_and_closes() -> None:
    b = Breaker(threshold=3, min_backoff_s=1, max_backoff_s=8)
    for t in range(2):
        assert b.allow(t)
        b.failure(t)
    assert b.state == "closed"
    b.failure(2)
    assert b.state == "open" and not b.allow(2.5)
    assert b.allow(3.0) and b.state == "half_open"
    b.failure(3.0)
    assert b.state == "open" and b.open_until == 5.0  # back-off doubled
    for t in (5.0, 9.0, 17.0, 25.0):
        assert b.allow(t)
        b.failure(t)
    assert b.backoff_s == 8  # capped
    assert b.allow(40)
    b.success()
    assert b.state == "closed" and b.allow(40.1)


@given(st.lists(st.booleans(), max_size=200))
def test_breaker_never_allows_while_open(outcomes: list[bool]) -> None:
    b = Breaker()
    t = 0.0
    for ok in outcomes:
        t += 0.3
        if b.state == "open" and t < b.open_until:
            assert not b.allow(t)
            continue
        assert b.allow(t)
        b.success() if ok else b.failure(t)
        assert b.backoff_s <= b.max_backoff_s


# ------------------------------------------------------------------ report by exception


def test_deadband_snapshot_and_events() -> None:
    p = get_profile("voltpile-cp10")
    r = Reporter(point_info(p), snapshot_s=60)
    o = r.update({"ambient_temp": 20.0, "smoke": False, "port.1.state": "idle"}, 0)
    assert o.snapshot and o.values == {"ambient_temp": 20.0, "smoke": False, "port.1.state": "idle"}
    assert not o.events
    o = r.update({"ambient_temp": 20.3, "smoke": False, "port.1.state": "idle"}, 1)  # within 0.5 deadband
    assert o.values == {} and not o.snapshot
    o = r.update({"ambient_temp": 20.6, "smoke": False}, 2)  # drift beyond deadband since last *sent*
    assert o.values == {"ambient_temp": 20.6}
    o = r.update({"smoke": True, "port.1.state": "charging"}, 3)
    assert o.values == {"smoke": True, "port.1.state": "charging"}
    kinds = {e.point: e for e in o.events}
    assert kinds["smoke"].text == "smoke: smoke detected" and kinds["smoke"].severity == "critical"
    assert kinds["port.1.state"].previous == "idle"
    o = r.update({"ambient_temp": 20.7}, 61)  # periodic snapshot carries the latest of everything
    assert o.snapshot and o.values["smoke"] is True and o.values["port.1.state"] == "charging"


def test_line_profile_events() -> None:
    p = get_profile("geomag-rx200")
    r = Reporter(point_info(p), snapshot_s=60)
    r.update({"bay.4.occupied": True}, 0)
    o = r.update({"bay.4.occupied": False}, 1)
    assert [e.text for e in o.events] == ["bay.4.occupied: bay freed"]


# ------------------------------------------------------------------ interlocks


def test_overtemp_cuts_the_hot_port_once_and_rearms() -> None:
    p = get_profile("voltpile-cp10")
    il = Interlocks.for_profile(p)
    assert il.evaluate({"port.3.connector_temp": 74.9}, 0) == []
    acts = il.evaluate({"port.3.connector_temp": 75.0, "port.4.connector_temp": 30.0}, 1)
    assert [(a.command, a.index, a.value) for a in acts] == [("port_enable", 3, False)]
    assert il.evaluate({"port.3.connector_temp": 76.0}, 1.5) == []  # write in progress
    il.result(acts[0], ok=False, now=2)
    again = il.evaluate({"port.3.connector_temp": 76.0}, 2.5)  # failed: try again
    assert len(again) == 1
    il.result(again[0], ok=True, now=3)
    assert il.evaluate({"port.3.connector_temp": 76.0}, 4) == []  # done, still hot
    assert len(il.evaluate({"port.3.connector_temp": 76.0}, 40)) == 1  # re-asserted after rearm_s
    il.result(il.evaluate({}, 41) or acts[0], ok=True, now=41)


def test_retries_and_reasserts_share_a_trip_a_new_overheat_is_a_new_trip() -> None:
    """The cloud raises one alarm per trip (docs/alarms.md): a failed write retried, and the write
    re-asserted while the port stays hot, belong to the first trip; cooling below the cut-off ends
    it, so the next overheat is a new trip."""
    il = Interlocks.for_profile(get_profile("voltpile-cp10"))
    first = il.evaluate({"port.3.connector_temp": 76.0}, 0)[0]
    il.result(first, ok=False, now=0.5)
    retry = il.evaluate({"port.3.connector_temp": 76.0}, 1)[0]
    il.result(retry, ok=True, now=1.5)
    again = il.evaluate({"port.3.connector_temp": 75.5}, 40)[0]  # still hot: re-asserted after rearm_s
    il.result(again, ok=True, now=40.5)
    assert first.trip and first.trip == retry.trip == again.trip
    other = il.evaluate({"port.3.connector_temp": 30.0, "port.4.connector_temp": 80.0}, 60)[0]
    assert other.index == 4 and other.trip != first.trip
    new = il.evaluate({"port.3.connector_temp": 77.0}, 600)[0]  # cooled, switched on, hot again
    assert new.index == 3 and new.trip not in (first.trip, other.trip)


def test_smoke_cuts_main_and_site_overrides() -> None:
    p = get_profile("voltpile-cp10")
    acts = Interlocks.for_profile(p).evaluate({"smoke": True}, 0)
    assert [(a.command, a.index) for a in acts] == [("main_cut", None)]
    lower = Interlocks.for_profile(p, {"port_overtemp": (60.0, True)})
    assert len(lower.evaluate({"port.1.connector_temp": 61.0}, 0)) == 1
    off = Interlocks.for_profile(p, {"smoke_cut": (None, False)})
    assert off.evaluate({"smoke": True}, 0) == []


def test_combined_plan_reads_every_point_of_both_classes() -> None:
    p = get_profile("voltpile-cp10")
    both = plan(p, frozenset((PollClass.SAFETY, PollClass.ROUTINE)))
    want = {pt.id for pt in resolve_points(p) if pt.poll in (PollClass.SAFETY, PollClass.ROUTINE)}
    assert {pt.id for r in both for pt in r.points} == want
    assert len(both) < len(plan(p, PollClass.SAFETY)) + len(plan(p, PollClass.ROUTINE))


# ------------------------------------------------------------------ device health


@given(
    st.sampled_from(["closed", "open", "half_open"]),
    st.one_of(st.none(), st.floats(min_value=0, max_value=120)),
)
def test_health_online_needs_a_closed_breaker_and_a_recent_good_poll(breaker: str, ok_ago: float | None) -> None:
    import time

    from edge_agent.health import DeviceStats

    s = DeviceStats("d", breaker=breaker, last_error="timeout")
    s.last_ok = None if ok_ago is None else time.time() - ok_ago
    m = s.message(1, stale_s=30.0)
    expect = breaker == "closed" and ok_ago is not None and ok_ago <= 29.9
    if ok_ago is None or abs(ok_ago - 30.0) > 0.1:  # the edge of `stale_s` is timing-dependent
        assert m.online is expect
    assert m.breaker == breaker
    if breaker != "closed":
        assert m.online is False and m.detail.startswith(f"breaker {breaker.replace('_', '-')}")
