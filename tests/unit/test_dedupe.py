"""Replay detection with out-of-order arrival (live first, backlog behind it)."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.ingest.dedupe import Deduper, SeqWindow


@given(st.lists(st.integers(0, 300), max_size=400), st.randoms())
def test_each_seq_accepted_exactly_once_in_any_order(seqs: list[int], rnd: random.Random) -> None:
    stream = seqs + seqs[: len(seqs) // 2]  # with replays
    rnd.shuffle(stream)
    w = SeqWindow()
    accepted = [s for s in stream if w.accept(s)]
    assert sorted(accepted) == sorted(set(seqs))
    # Gaps are exactly the missing numbers below the highest seen.
    if seqs:
        missing = set(range(max(seqs) + 1)) - set(seqs)
        from_gaps = {x for a, b in w.gaps() for x in range(a, b + 1)}
        assert from_gaps == missing
        assert w.missing() == len(missing)


def test_live_first_then_backfill_fills_the_gap() -> None:
    w = SeqWindow()
    for s in range(0, 100):
        assert w.accept(s)
    for s in range(500, 600):  # live data after an outage
        assert w.accept(s)
    assert w.gaps() == [(100, 499)]
    for s in range(100, 500):  # the backlog, behind it
        assert w.accept(s)
    assert w.gaps() == [] and w.floor == 599 and not w.seen
    assert not any(w.accept(s) for s in range(0, 600))  # a full replay is all duplicates


def test_window_is_bounded_and_counts_given_up_holes() -> None:
    w = SeqWindow(max_window=100)
    for s in range(1, 1000, 2):  # every other seq missing, forever
        w.accept(s)
    assert len(w.seen) <= 100
    assert w.lost > 0
    assert w.lost + w.missing() + (w.floor + 1) + len(w.seen) >= 999


@settings(max_examples=50)
@given(st.lists(st.integers(0, 200), max_size=200))
def test_state_round_trip(seqs: list[int]) -> None:
    d = Deduper()
    for s in seqs:
        d.accept("site/dev", s)
    st_ = d.take_dirty()
    d2 = Deduper()
    for k, v in st_.items():
        d2.load(k, v)
    assert not any(d2.accept("site/dev", s) for s in seqs)
