"""cloud/ordering.py: a device's messages are ordered by seq, never by the edge's ts; readings are
judged at their edge ts only where it is plausible next to the receive time."""

from __future__ import annotations

import itertools

import pytest

from cloud.ordering import (
    FUTURE_TOLERANCE_S,
    PLAUSIBLE_LAG_S,
    RESTART_GAP,
    RESTART_SLACK_S,
    Mark,
    Meta,
    mark,
    newer,
    sample_time,
)

NOW = 1_800_000_000.0
Y2099 = 4_070_908_800.0
Y1970 = 0.0


@pytest.mark.parametrize(
    ("ts", "want"),
    [
        (NOW - 0.3, NOW - 0.3),  # a live reading: its own time
        (NOW, NOW),
        (NOW + 0.5, NOW),  # a clock slightly fast: never later than received
        (Y2099, NOW),
        (NOW - PLAUSIBLE_LAG_S + 1, NOW - PLAUSIBLE_LAG_S + 1),
        (NOW - PLAUSIBLE_LAG_S, NOW - PLAUSIBLE_LAG_S),
        (NOW - 15, NOW - 15),  # a takeover's backlog: read 15 s after it was taken
        (NOW - 3600, NOW),  # a clock an hour slow: implausible, the receive time
        (Y1970, NOW),
    ],
)
def test_sample_time_is_the_edge_ts_when_plausible_else_the_receive_time(ts: float, want: float) -> None:
    assert sample_time(ts, NOW) == want


def test_sample_time_keeps_the_spacing_of_readings_that_arrive_together() -> None:
    """Readings taken 1 s apart and received in one burst keep their 1 s spacing (rate of rise)."""
    got = [sample_time(NOW - 5 + i, NOW) for i in range(6)]
    assert [b - a for a, b in itertools.pairwise(got)] == [1.0] * 5


@pytest.mark.parametrize("ts", [NOW, Y2099, Y1970, NOW - 86400])
def test_a_higher_seq_is_newer_whatever_either_timestamp(ts: float) -> None:
    for last_ts in (NOW, Y2099, Y1970):
        assert newer(Meta(11, ts, NOW), Mark(10, last_ts))
    assert newer(Meta(0, ts, NOW), None)


def test_the_same_seq_is_not_newer() -> None:
    assert not newer(Meta(10, NOW + 60, NOW + 60), Mark(10, NOW))


def test_backlog_and_overtaken_messages_are_older() -> None:
    assert not newer(Meta(9, NOW - 0.5, NOW + 1), Mark(10, NOW))  # overtaken by an event
    assert not newer(Meta(5, NOW - 3600, NOW + 5), Mark(10, NOW))  # backfilled an hour later


def test_a_restarted_counter_is_newer_by_its_ts() -> None:
    """A wiped outbox or a replaced gateway starts counting again; its ts says it is later."""
    assert newer(Meta(1, NOW + RESTART_SLACK_S + 1, NOW + 10), Mark(48_000, NOW))
    assert not newer(Meta(1, NOW + RESTART_SLACK_S - 1, NOW + 10), Mark(48_000, NOW))


def test_a_future_ts_is_no_evidence_of_a_restart() -> None:
    assert not newer(Meta(1, Y2099, NOW), Mark(48_000, NOW))
    assert not newer(Meta(1, NOW + FUTURE_TOLERANCE_S + 1, NOW), Mark(48_000, NOW - 60))


def test_a_counter_far_behind_is_a_restart_even_with_a_wrong_clock() -> None:
    assert newer(Meta(3, Y1970, NOW), Mark(2**53, NOW))  # after one message with a nonsense seq
    assert newer(Meta(3, Y1970, NOW), Mark(RESTART_GAP + 4, NOW))
    assert not newer(Meta(3, Y1970, NOW), Mark(RESTART_GAP + 3, NOW))


def test_the_mark_never_remembers_a_future_ts() -> None:
    """After a 2099 message, a good message with a lower seq (restart) can still be newer."""
    m = mark(Meta(10, Y2099, NOW))
    assert m == Mark(10, NOW + FUTURE_TOLERANCE_S)
    assert newer(Meta(1, NOW + 60, NOW + 60), m)
    assert mark(Meta(10, Y1970, NOW)) == Mark(10, Y1970)


def test_another_epoch_is_newer_whatever_its_seq_and_ts() -> None:
    """A wiped outbox counts again from 1 under a new epoch (docs/wire.md): new messages, even on a
    gateway whose clock is still wrong after the restart (no ts evidence of a restart)."""
    for ts in (NOW - 60, Y1970, Y2099):
        assert newer(Meta(1, ts, NOW, "b"), Mark(48_000, NOW, "a"))
        assert newer(Meta(1, ts, NOW, "b"), mark(Meta(48_000, NOW, NOW, "")))  # from a sender without epochs
    assert not newer(Meta(1, NOW - 60, NOW, "a"), Mark(48_000, NOW, "a"))  # same epoch: backlog
    assert mark(Meta(7, NOW, NOW, "b")).epoch == "b"
