"""Replay detection with out-of-order arrival (live first, backlog behind it), per docs/wire.md's
sequence rule: numbers start at 1 within an epoch, gaps are holes between the lowest and highest
seen, a new epoch starts afresh, and the state stays a few numbers whatever the traffic."""

from __future__ import annotations

import json
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.ingest.dedupe import Deduper, SeqWindow


@given(st.lists(st.integers(1, 300), max_size=400), st.randoms())
def test_each_seq_accepted_exactly_once_in_any_order(seqs: list[int], rnd: random.Random) -> None:
    stream = seqs + seqs[: len(seqs) // 2]  # with replays
    rnd.shuffle(stream)
    w = SeqWindow()
    accepted = [s for s in stream if w.accept(s)]
    assert sorted(accepted) == sorted(set(seqs))
    # Gaps are exactly the missing numbers between the lowest and the highest seen.
    if seqs:
        missing = set(range(min(seqs), max(seqs) + 1)) - set(seqs)
        from_gaps = {x for a, b in w.gaps() for x in range(a, b + 1)}
        assert from_gaps == missing
        assert w.missing() == len(missing)
        holes = sum(1 for x in missing if x - 1 not in missing)
        assert w.gap_count() == holes


def test_a_clean_run_from_1_has_no_gap_and_no_state() -> None:
    """The edge starts at 1: in order, the window is a watermark and nothing else."""
    w = SeqWindow()
    for s in range(1, 10_001):
        assert w.accept(s)
    assert w.floor == 10_000 and w.runs == [] and w.gap_count() == 0 and w.missing() == 0
    assert len(json.dumps(w.state())) < 100


def test_first_seen_late_is_not_a_gap_and_stays_small() -> None:
    """A device first heard at seq 5,000,000 (the receiver started late) has no gap, and its
    state stays one run however many messages follow."""
    w = SeqWindow()
    for s in range(5_000_000, 5_020_000):
        assert w.accept(s)
    assert w.gap_count() == 0 and w.missing() == 0
    assert len(w.runs) <= 1 and len(json.dumps(w.state())) < 120
    assert w.accept(4_999_999)  # a backlog below the first number heard is still accepted
    assert not w.accept(4_999_999) and not w.accept(5_000_500)


def test_live_first_then_backfill_fills_the_gap() -> None:
    w = SeqWindow()
    for s in range(1, 100):
        assert w.accept(s)
    for s in range(500, 600):  # live data after an outage
        assert w.accept(s)
    assert w.gaps() == [(100, 499)] and w.gap_count() == 1 and w.missing() == 400
    assert len(w.runs) == 1  # the live stream is one run, not 100 entries
    for s in range(100, 500):  # the backlog, behind it
        assert w.accept(s)
    assert w.gaps() == [] and w.floor == 599 and not w.runs
    assert not any(w.accept(s) for s in range(1, 600))  # a full replay is all duplicates


def test_runs_are_bounded_and_count_given_up_holes() -> None:
    w = SeqWindow(max_runs=100)
    for s in range(1, 1000, 2):  # every other seq missing, forever
        w.accept(s)
    assert len(w.runs) <= 100
    assert w.lost > 0
    assert w.lost + w.missing() == 499  # every hole is either still open or given up


def test_a_new_epoch_starts_again_at_1_and_stragglers_of_the_old_one_are_known() -> None:
    """A wiped outbox: the same numbers again under a new epoch are new messages, not replays."""
    d = Deduper()
    assert all(d.accept("s/dev", s, "aaaa") for s in range(1, 51))
    assert all(d.accept("s/dev", s, "bbbb") for s in range(1, 11))  # the new outbox
    assert not d.accept("s/dev", 5, "bbbb")
    assert not d.accept("s/dev", 20, "aaaa")  # an old epoch's replay still in flight
    assert d.accept("s/dev", 51, "aaaa")  # an old epoch's straggler that never came
    assert d.gap_count() == 0


@settings(max_examples=50)
@given(st.lists(st.tuples(st.sampled_from(["", "e1", "e2"]), st.integers(1, 200)), max_size=200))
def test_state_round_trip(seqs: list[tuple[str, int]]) -> None:
    """A restarted ingester (state from the database) answers every later message as before."""
    d = Deduper()
    for e, s in seqs:
        d.accept("site/dev", s, e)
    d2 = Deduper()
    for k, v in d.take_dirty().items():
        d2.load(k, json.loads(json.dumps(v)))  # as the registry stores it
    probes = [(e, s) for e in ("", "e1", "e2") for s in range(1, 202, 7)]
    assert [d2.accept("site/dev", s, e) for e, s in probes] == [d.accept("site/dev", s, e) for e, s in probes]


def test_state_written_before_runs_is_read() -> None:
    w = SeqWindow.from_state({"floor": -1, "seen": [1, 2, 3, 7, 8], "lost": 0})
    assert w.floor == 3 and w.runs == [(7, 8)] and not w.accept(2) and w.accept(4)
