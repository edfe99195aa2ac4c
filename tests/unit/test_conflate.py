"""Conflation of routine telemetry in front of the alarm engine (cloud/ingest/conflate.py): pure
logic, no threads. What is held is bounded by the estate, not the load; samples keep their own
seq and times; nothing newer is ever pushed out by something older."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.ingest.conflate import Conflator, add_seq
from cloud.ordering import Meta
from cloud.safety import Readings, SafetyMessage
from device_profiles import wire

T0 = 1_800_000_000.0


def tele(dev: str, seq: int, values: dict[str, wire.Scalar], ts: float | None = None,
         received: float | None = None, epoch: str = "") -> SafetyMessage:
    t = T0 + seq if ts is None else ts
    payload = wire.Telemetry(ts=datetime.fromtimestamp(t, UTC), seq=seq, epoch=epoch, values=values)
    return SafetyMessage("s", "g", dev, wire.Kind.TELEMETRY, payload, t + 0.05 if received is None else received)


def readings(m: SafetyMessage | None) -> Readings:
    assert m is not None and isinstance(m.payload, Readings)
    return m.payload


def test_messages_of_one_device_merge_point_by_point_with_their_own_times() -> None:
    c = Conflator()
    c.add(tele("d", 1, {"a": 1.0, "b": True}))
    c.add(tele("d", 2, {"a": 2.0}))
    c.add(tele("d", 3, {"c": "charging"}, ts=T0 + 10, received=T0 + 10.2))
    assert len(c) == 1 and c.samples == 4 and c.merged == 2
    m = c.take()
    r = readings(m)
    assert m is not None and (m.site, m.gateway, m.device, m.kind) == ("s", "g", "d", wire.Kind.TELEMETRY)
    assert r.points == {
        "a": [(Meta(1, T0 + 1, T0 + 1.05), 1.0), (Meta(2, T0 + 2, T0 + 2.05), 2.0)],
        "b": [(Meta(1, T0 + 1, T0 + 1.05), True)],
        "c": [(Meta(3, T0 + 10, T0 + 10.2), "charging")],
    }
    assert r.last == Meta(3, T0 + 10, T0 + 10.2) and m.received == T0 + 10.2  # the newest: silence
    assert r.first_received == T0 + 1.05 and r.merged == 3 and r.seqs == [[1, 3]]
    assert c.take() is None and len(c) == 0 and c.samples == 0


def test_devices_are_handed_out_in_the_order_they_started_waiting() -> None:
    c = Conflator()
    for seq, dev in enumerate(["x", "y", "x", "z", "y"]):
        c.add(tele(dev, seq, {"v": seq}))
    assert [m.device for m in iter(c.take, None)] == ["x", "y", "z"]
    c.add(tele("y", 9, {"v": 9}))
    c.add(tele("x", 10, {"v": 10}))
    assert [m.device for m in iter(c.take, None)] == ["y", "x"]  # a taken device queues again at the back


def test_a_full_run_keeps_its_oldest_and_newest_samples() -> None:
    c = Conflator(depth=4)
    for seq in range(1, 11):
        c.add(tele("d", seq, {"temp": 20.0 + seq}))
    run = readings(c.take()).points["temp"]
    assert [m.seq for m, _ in run] == [1, 8, 9, 10]  # where the rise started, and the newest
    assert c.thinned == 6


def test_depth_one_keeps_only_the_newest() -> None:
    c = Conflator(depth=1)
    for seq in range(5):
        c.add(tele("d", seq, {"temp": float(seq)}))
    assert readings(c.take()).points["temp"] == [(Meta(4, T0 + 4, T0 + 4.05), 4.0)]


def test_an_older_sample_never_pushes_a_newer_one_out() -> None:
    """A backfilled backlog arrives after live data with lower seq numbers: it is not added to the
    point's run (the engine would ignore it), so it cannot thin out live samples."""
    c = Conflator(depth=2)
    c.add(tele("d", 100, {"temp": 60.0, "smoke": False}))
    c.add(tele("d", 101, {"temp": 70.0}))
    c.add(tele("d", 40, {"temp": 20.0, "door": True}, ts=T0 - 3600, received=T0 + 102))  # backlog
    r = readings(c.take())
    assert [(m.seq, v) for m, v in r.points["temp"]] == [(100, 60.0), (101, 70.0)]
    assert [(m.seq, v) for m, v in r.points["door"]] == [(40, True)]  # nothing newer to compare with
    assert r.last.seq == 101 and c.older == 1
    assert r.seqs == [[100, 101], [40, 40]]


def test_a_restarted_counter_is_newer() -> None:
    c = Conflator()
    c.add(tele("d", 48_000, {"temp": 30.0}, ts=T0, received=T0))
    c.add(tele("d", 1, {"temp": 31.0}, ts=T0 + 60, received=T0 + 60))  # a wiped outbox, a minute later
    r = readings(c.take())
    assert [m.seq for m, _ in r.points["temp"]] == [48_000, 1] and r.last.seq == 1


def test_a_wiped_outbox_is_newer_by_its_epoch() -> None:
    """Another epoch counts again from 1 (docs/wire.md): newer even when the restarted gateway's
    clock is a minute slow (no ts evidence), and the seq runs start again."""
    c = Conflator()
    c.add(tele("d", 48_000, {"temp": 30.0}, ts=T0, received=T0))
    for s in (1, 2):
        c.add(tele("d", s, {"temp": 80.0 + s}, ts=T0 - 60 + s, received=T0 + 5 + s, epoch="e2"))
    r = readings(c.take())
    assert [(m.seq, m.epoch) for m, _ in r.points["temp"]] == [(48_000, ""), (1, "e2"), (2, "e2")]
    assert (r.last.seq, r.last.epoch) == (2, "e2") and r.seqs == [[1, 2]] and c.older == 0


def test_the_clock_skew_of_a_rebased_reading_survives_the_merge() -> None:
    """A reading the time policy rebased carries the gateway's skew (cloud/ingest/timepolicy.py);
    merged between good ones, the device's entry still carries it to the engine (gateway_clock)."""
    c = Conflator()
    c.add(tele("d", 1, {"temp": 30.0}))
    m = tele("d", 2, {"temp": 31.0}, ts=T0 + 2.05, received=T0 + 2.05)  # its ts, rebased: 3600 s ahead
    c.add(SafetyMessage(m.site, m.gateway, m.device, m.kind, m.payload, m.received, clock_skew=3600.0))
    c.add(tele("d", 3, {"temp": 32.0}))
    out = c.take()
    assert out is not None and out.clock_skew == 3600.0 and readings(out).merged == 3
    c.add(tele("d", 4, {"temp": 33.0}))
    assert (out := c.take()) is not None and out.clock_skew is None  # the next entry: no rebase in it


def test_a_2099_timestamp_does_not_make_later_readings_older() -> None:
    c = Conflator()
    c.add(tele("d", 5, {"temp": 30.0}, ts=4_070_908_800.0, received=T0))
    c.add(tele("d", 6, {"temp": 80.0}, ts=T0 + 1, received=T0 + 1))
    r = readings(c.take())
    assert [v for _, v in r.points["temp"]] == [30.0, 80.0] and r.last.seq == 6


def test_seq_runs() -> None:
    runs = [[5, 5]]
    for s in (6, 7, 9, 10, 3):
        add_seq(runs, s, max_runs=8)
    assert runs == [[5, 7], [9, 10], [3, 3]]
    add_seq(runs, 20, max_runs=3)  # too many: the two oldest are joined (the gap 8 is hidden)
    assert runs == [[5, 10], [3, 3], [20, 20]]


def test_only_device_telemetry_is_conflated() -> None:
    c = Conflator()
    ev = wire.Event(ts=datetime.fromtimestamp(T0, UTC), seq=1, id=wire.new_id(), kind="state")
    with pytest.raises(TypeError):
        c.add(SafetyMessage("s", "g", "d", wire.Kind.EVENT, ev, T0))
    with pytest.raises(ValueError):
        Conflator(depth=0)


def test_memory_is_bounded_by_the_estate_not_the_load() -> None:
    c = Conflator(depth=8)
    devices, points = 50, 6
    for seq in range(20_000):  # 400 messages per device, nothing taken
        d = seq % devices
        c.add(tele(f"d{d}", seq, {f"p{(seq // devices + k) % points}": float(seq) for k in range(3)}))
    assert len(c) == devices
    assert c.samples <= devices * points * 8
    assert c.samples == sum(len(run) for m in iter(c.take, None) for run in readings(m).points.values())
    assert c.samples == 0


msgs = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c"]),  # device
        st.integers(0, 60),  # seq
        st.dictionaries(st.sampled_from(["p", "q", "r"]), st.floats(-50, 150), min_size=1),
        st.booleans(),  # take after this message?
    ),
    max_size=80,
    unique_by=lambda m: (m[0], m[1]),  # the ingester drops a repeated seq (replay) before the gate
)


@settings(max_examples=150, deadline=None)
@given(msgs, st.integers(1, 5))
def test_merging_never_loses_the_newest_and_stays_bounded(seq_msgs: list, depth: int) -> None:
    """For any arrival order: per point the newest sample (by seq) and the oldest sample are kept,
    every kept sample is exactly what its message said, runs never exceed `depth`, and the seqs of
    every merged message are accounted for."""
    c = Conflator(depth=depth, max_runs=1000)
    since: dict[str, list[SafetyMessage]] = {}  # per device, messages merged since its last take

    def check(m: SafetyMessage | None) -> None:
        r = readings(m)
        assert m is not None and m.device is not None
        got = since.pop(m.device)
        assert sorted(s for lo, hi in r.seqs for s in range(lo, hi + 1)) == sorted(x.payload.seq for x in got)
        for pid, run in r.points.items():
            assert 1 <= len(run) <= depth
            sent = {x.payload.seq: x for x in got if pid in x.payload.values}
            for meta, v in run:
                src = sent[meta.seq]
                assert (meta.ts, meta.received, v) == (src.payload.ts.timestamp(), src.received,
                                                       src.payload.values[pid])
            assert run[-1][0].seq == max(sent)  # the newest is never lost
            first = next(x for x in got if pid in x.payload.values)
            if depth > 1:
                assert run[0][0].seq == first.payload.seq  # nor where the run started
        assert set(r.points) == {pid for x in got for pid in x.payload.values}

    for dev, seq, values, take in seq_msgs:
        m = tele(dev, seq, values, ts=T0 + seq, received=T0 + 100)  # seq and ts agree: no restarts
        c.add(m)
        since.setdefault(dev, []).append(m)
        assert len(c) <= 3
        if take:
            check(c.take())
    while len(c):
        check(c.take())
    assert c.samples == 0 and not since


def test_the_engine_says_how_many_samples_of_each_point_to_hold() -> None:
    """`depths` (the engine's point_depths): 0 for points no rule reads, 2 for threshold/state
    points, more for a rate; a point the engine has not met yet keeps the default."""
    depths = {("s", "g", "d"): {"unread": 0, "current": 2, "temp": 4}}
    c = Conflator(depth=8, depths=depths)
    for seq in range(1, 11):
        c.add(tele("d", seq, {"unread": seq, "current": seq, "temp": seq, "new": seq}))
    r = readings(c.take())
    assert {pid: [v for _, v in run] for pid, run in r.points.items()} == {
        "current": [1, 10],  # where it started, and now
        "temp": [1, 8, 9, 10],
        "new": [1, 4, 5, 6, 7, 8, 9, 10],
    }
    assert r.seqs == [[1, 10]] and r.merged == 10  # unread points still count as the device's word
    c.add(tele("d", 11, {"unread": 11}))
    r = readings(c.take())
    assert r.points == {} and r.last.seq == 11  # still an entry: the engine judges silence on it


def test_a_full_run_keeps_the_low_a_rise_starts_from() -> None:
    """A port cooled from 70 to 25 °C and rises again while the engine is stalled: the run keeps
    its oldest, the low the rise starts from (a rate is judged from its window's lowest) and the
    newest; a text point thins as before."""
    c = Conflator(depth=4)
    values = [70.0, 25.0, 29.0, 33.0, 37.0, 41.0]
    for seq, v in enumerate(values, start=1):
        c.add(tele("d", seq, {"temp": v, "mode": f"m{seq}"}))
    r = readings(c.take())
    assert [v for _, v in r.points["temp"]] == [70.0, 25.0, 37.0, 41.0]
    assert [v for _, v in r.points["mode"]] == ["m1", "m4", "m5", "m6"]
