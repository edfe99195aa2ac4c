"""cloud/history: the pure trackers (no I/O)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.history.alarm import AlarmTracker
from cloud.history.gateway_status import GatewayStatusTracker
from cloud.history.inspection import InspectionTracker, union
from cloud.history.parking_stay import Stay, StayTracker
from cloud.history.stamp import Monotonic

# ------------------------------------------------------------------ parking stays


def test_a_bay_occupied_then_freed_is_one_stay_at_the_departure():
    t = StayTracker()
    assert t.reading("b1", 100.0, False) is None
    assert t.reading("b1", 160.0, True) is None
    assert t.reading("b1", 400.0, True) is None  # snapshot repeats
    assert t.reading("b1", 460.0, False) == Stay(160.0, 460.0)
    assert Stay(160.0, 460.0).dwell_s == 300.0
    assert t.reading("b1", 470.0, False) is None


def test_the_first_occupied_reading_after_a_restart_invents_no_stay():
    t = StayTracker()
    assert t.reading("b1", 100.0, True) is None
    assert t.reading("b1", 200.0, False) is None  # arrival unknown: no stay
    assert t.reading("b1", 300.0, True) is None
    assert t.reading("b1", 360.0, False) == Stay(300.0, 360.0)


def test_backfill_older_than_the_known_state_creates_no_stay():
    t = StayTracker()
    t.reading("b1", 1000.0, False)
    assert t.reading("b1", 500.0, True) is None  # an hour-old backlog arriving after live data
    assert t.reading("b1", 600.0, False) is None
    assert t.ignored_old == 2
    assert t.reading("b1", 1100.0, True) is None
    assert t.reading("b1", 1100.0, False) is None  # a duplicate timestamp never flips the state
    assert t.reading("b1", 1200.0, False) == Stay(1100.0, 1200.0)


def test_bays_are_independent():
    t = StayTracker()
    t.reading("a", 0.0, False)
    t.reading("b", 0.0, False)
    t.reading("a", 10.0, True)
    t.reading("b", 20.0, True)
    assert t.reading("a", 30.0, False) == Stay(10.0, 30.0)
    assert t.reading("b", 50.0, False) == Stay(20.0, 50.0)


readings = st.lists(
    st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 200).map(float), st.booleans()), max_size=80
)


@settings(max_examples=400, deadline=None)
@given(readings)
def test_any_sequence_gives_stays_that_never_overlap_and_fit_in_the_span(seq):
    t = StayTracker()
    stays: dict[str, list[Stay]] = {"a": [], "b": []}
    for bay, ts, occ in seq:
        s = t.reading(bay, ts, occ)
        if s is not None:
            stays[bay].append(s)
    for bay, ss in stays.items():
        times = [ts for b, ts, _ in seq if b == bay]
        for s in ss:
            assert s.dwell_s > 0
            assert min(times) <= s.arrived < s.departed <= max(times)
        for x, y in itertools.pairwise(ss):
            assert x.departed <= y.arrived  # in order, never overlapping
        if times:
            assert sum(s.dwell_s for s in ss) <= max(times) - min(times)


@settings(max_examples=200, deadline=None)
@given(readings)
def test_repeating_every_reading_changes_nothing(seq):
    once, twice = StayTracker(), StayTracker()
    a = [once.reading(b, ts, o) for b, ts, o in seq]
    b = []
    for r in seq:
        b.append(twice.reading(*r))
        assert twice.reading(*r) is None  # the duplicate (a snapshot, a replay) never ends a stay
    assert a == b


# ------------------------------------------------------------------ gateway status


def test_gateway_status_on_each_message_and_repeated_each_period():
    g = GatewayStatusTracker(period_s=300)
    p = g.status("s", "gw1", True, 1000.0)
    assert (p.series.key, p.fields, p.ts_ms) == ("gateway_status,gateway=gw1,site=s", {"online": True}, 1_000_000)
    assert g.due(1299.0) == []
    (rep,) = g.due(1300.0)
    assert rep.fields == {"online": True} and rep.ts_ms == 1_300_000
    lw = g.status("s", "gw1", False, 1400.0)
    assert lw.fields == {"online": False}
    assert g.due(1600.0) == []
    assert [x.fields for x in g.due(1700.0)] == [{"online": False}]


def test_a_status_received_before_a_repeat_written_after_it_still_wins():
    g = GatewayStatusTracker(period_s=300)
    g.status("s", "gw1", True, 1000.0)
    rep = g.due(1300.0)[0]
    lw = g.status("s", "gw1", False, 1299.9)  # received just before the repeat, handled after it
    assert lw.ts_ms > rep.ts_ms


def test_monotonic_stamps_per_key():
    m = Monotonic()
    assert [m.stamp("a", 5), m.stamp("a", 5), m.stamp("a", 3), m.stamp("b", 3), m.stamp("a", 10)] == [5, 6, 7, 3, 10]


# ------------------------------------------------------------------ alarms


@dataclass
class A:
    id: int
    site: str = "s"
    gateway: str = "gw1"
    device: str = "hub1"
    rule: str = "fire_lane_blocked"
    instance: str = "47"
    severity: str = "major"
    active: bool = True
    acked: bool = False


def test_alarm_transitions_and_repeats():
    t = AlarmTracker(period_s=300)
    a = A(1)
    p = t.change(a, 100.0)
    assert p.series.key == "alarm,device=hub1,instance=47,rule=fire_lane_blocked,severity=major,site=s"
    assert (p.fields, p.ts_ms) == ({"active": True, "acknowledged": False}, 100_000)
    a.acked = True
    assert t.change(a, 150.0).fields == {"active": True, "acknowledged": True}
    assert t.due(399.0) == []
    (rep,) = t.due(450.0)
    assert rep.fields == {"active": True, "acknowledged": True} and rep.ts_ms == 450_000
    a.active = False
    assert t.change(a, 449.0).fields == {"active": False, "acknowledged": True}
    assert t.change(a, 449.0).ts_ms > rep.ts_ms  # a clear is never hidden behind a repeat
    assert t.due(10_000.0) == []


def test_gateway_alarms_are_one_series_per_gateway_and_instance_is_optional():
    t = AlarmTracker(period_s=300)
    k1 = t.change(A(1, device="", gateway="gw1", rule="gateway_offline", instance="", severity="minor"), 1.0)
    k2 = t.change(A(2, device="", gateway="gw2", rule="gateway_offline", instance="", severity="minor"), 1.0)
    assert k1.series.key == "alarm,device=gw1,rule=gateway_offline,severity=minor,site=s"
    assert k1.series.key != k2.series.key


def test_alarms_active_at_start_are_repeated_from_the_start():
    t = AlarmTracker(period_s=300)
    t.known(A(7), 1000.0)
    t.known(A(8, active=False), 1000.0)
    assert [p.ts_ms for p in t.due(1000.0)] == [1_000_000]


# ------------------------------------------------------------------ inspection windows


def test_union_merges_overlapping_and_touching_windows():
    assert union([(5, 10), (0, 3), (3, 4), (9, 12), (20, 20)]) == [(0, 4), (5, 12)]


def _vals(points):
    return [(p.ts_ms // 1000, p.fields["active"]) for p in points]


def test_a_window_opens_and_closes_when_its_time_comes():
    t = InspectionTracker()
    t.add("s", 100.0, 200.0)
    assert t.due(50.0) == []
    assert _vals(t.due(150.0)) == [(100, True)]
    assert t.due(160.0) == []
    assert _vals(t.due(250.0)) == [(200, False)]
    assert t.due(300.0) == []
    assert t.due(300.0) == []
    assert t.due(1000.0) == []
    p = InspectionTracker()
    p.add("s", 100.0, 200.0)
    assert p.due(150.0)[0].series.key == "inspection,site=s"


def test_a_window_ended_early_closes_then_not_at_its_planned_end():
    t = InspectionTracker()
    t.add("s", 100.0, 3700.0)
    assert _vals(t.due(150.0)) == [(100, True)]
    t.end("s", 100.0, 3700.0, 160.0)  # a manager ends it over the API
    assert _vals(t.due(170.0)) == [(160, False)]
    assert t.due(4000.0) == []


def test_a_back_dated_window_writes_both_ends_and_a_merge_rewrites_a_closed_boundary():
    t = InspectionTracker()
    t.add("s", 100.0, 200.0)
    assert _vals(t.due(300.0)) == [(100, True), (200, False)]
    t.add("s", 150.0, 400.0)  # extends the closed window: 200 is now inside it
    assert _vals(t.due(310.0)) == [(200, True)]
    assert _vals(t.due(400.0)) == [(400, False)]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 100), st.integers(1, 30)), max_size=8),
    st.lists(st.integers(0, 150), max_size=6),
)
def test_written_points_always_describe_the_union(wins, polls):
    t = InspectionTracker()
    for s, d in wins:
        t.add("s", float(s), float(s + d))
    written: dict[int, bool] = {}
    for now in [*sorted(polls), 1000]:
        for p in t.due(float(now)):
            written[p.ts_ms] = bool(p.fields["active"])
    iv = union([(float(s), float(s + d)) for s, d in wins])
    for t_ms, v in written.items():
        assert v == any(a <= t_ms / 1000 < b for a, b in iv)
    assert {round(a * 1000) for a, _ in iv} | {round(b * 1000) for _, b in iv} <= set(written)


def test_prune_forgets_old_windows():
    t = InspectionTracker()
    t.add("s", 0.0, 10.0)
    t.add("s", 100.0, 200.0)
    t.due(300.0)
    t.prune(50.0)
    assert t.windows["s"] == [(100.0, 200.0)]
    assert t.due(400.0) == []  # nothing re-written
