"""Partition leases on SQLite and on a real PostgreSQL: fair shares, hand-over when a replica joins,
takeover when one dies, and the local fence (short lease times so the test takes seconds)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from cloud.cluster.leases import LeaseManager
from tests.polling import wait_until

pytestmark = [pytest.mark.integration]

PARTS = 8


class Member:
    def __init__(self, db_url: str, name: str, drained: Callable[[frozenset[int]], bool] = lambda parts: True) -> None:
        self.applied: list[frozenset[int]] = []
        self.prepared: list[frozenset[int]] = []
        self.m = LeaseManager(db_url, name, PARTS, apply=self.applied.append, prepare=self.prepared.append,
                              drained=drained, ttl_s=1.5, renew_s=0.2, margin_s=0.3)

    def held(self) -> frozenset[int]:
        return self.m.held()


def test_shares_hand_over_and_takeover(db_url: str) -> None:
    a = Member(db_url, "a")
    a.m.start()
    try:
        assert a.held() == frozenset(range(PARTS))  # alone: everything, at once
        assert a.prepared[0] == frozenset(range(PARTS))  # state loaded before the consumers start
        b = Member(db_url, "b")
        b.m.start()
        wait_until(lambda: len(a.held()) == 4 and len(b.held()) == 4, 15, "an even split")
        assert not a.held() & b.held()
        owners = a.m.owners()
        assert sorted(p for p, o in owners.items() if o == "b") == sorted(b.held())
        # b dies without a word: it stops renewing and keeps its lease rows
        b.m._stop.set()
        assert b.m._thread is not None
        b.m._thread.join(5)
        t0 = time.monotonic()
        wait_until(lambda: a.held() == frozenset(range(PARTS)), 10, "a taking b's partitions over")
        took = time.monotonic() - t0
        assert took >= 0.5, "taken before b's lease could have run out"
        # the fence: b, had it been frozen, trusts its leases no longer by now
        assert not b.m.valid() and b.held() == frozenset()
    finally:
        a.m.stop()
    owners = Member(db_url, "c").m.owners()
    assert set(owners.values()) == {None}, "a clean stop hands every partition back"


def test_a_slow_hand_back_keeps_the_other_partitions_leased(db_url: str) -> None:
    """Handing a partition back waits (up to a lease time) for its last acknowledgements; meanwhile the
    replica's other partitions stay valid and nobody else may take them."""
    acks_out = threading.Event()
    a = Member(db_url, "a", drained=lambda parts: acks_out.is_set())
    a.m.start()
    b = Member(db_url, "b")
    try:
        b.m.start()
        wait_until(lambda: a.applied and len(a.applied[-1]) < PARTS, 10, "a handing a partition back")
        lapsed, both = 0, set()
        t_end = time.monotonic() + 2 * a.m.ttl_s  # longer than one hand-back may wait
        while time.monotonic() < t_end:
            lapsed += not a.m.valid()
            both |= a.held() & b.held()
            time.sleep(0.01)
        assert lapsed == 0, "a's leases lapsed locally while it waited for a hand-back"
        assert not both, f"{sorted(both)} held by a and b at once"
        acks_out.set()
        wait_until(lambda: len(a.held()) == 4 and len(b.held()) == 4, 15, "an even split")
    finally:
        acks_out.set()
        b.m.stop()
        a.m.stop()
