"""The durability point (cloud/ingest/durability.py) and the storage writer's markers: callbacks
fire only once every part has finished what it held, in call order, whatever order the parts
finish in; parts given nothing new are not asked; a batch that can be neither stored nor spooled
holds its markers back."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from cloud.ingest.durability import DurabilityPoint, GroupCommit, Stage
from cloud.tsdb.base import SinkError
from cloud.tsdb.lineproto import Series, TsPoint
from cloud.tsdb.spool import StorageWriter
from cloud.tsdb.sqlite import SqliteSink
from tests.polling import wait_until


class ManualBarrier:
    def __init__(self) -> None:
        self.waiting: list[Callable[[], None]] = []
        self.asked = 0

    def after(self, callback: Callable[[], None]) -> None:
        self.asked += 1
        self.waiting.append(callback)

    def finish(self, n: int | None = None) -> None:
        n = len(self.waiting) if n is None else n
        done, self.waiting = self.waiting[:n], self.waiting[n:]
        for cb in done:
            cb()


def pts(n: int, t0: int = 0) -> list[TsPoint]:
    s = Series.make("m", {"device": "d1"})
    return [TsPoint(s, {"v": float(i)}, t0 + i) for i in range(n)]


def test_callbacks_wait_for_every_part_and_fire_in_call_order() -> None:
    a, b = ManualBarrier(), ManualBarrier()
    point = DurabilityPoint([Stage("a", a), Stage("b", b)])
    fired: list[int] = []
    for i in range(3):
        point.after(lambda i=i: fired.append(i))
    b.finish()  # b done with all three, a with none
    assert fired == [] and point.pending() == 3
    a.finish(2)
    assert fired == [0, 1]
    a.finish()
    assert fired == [0, 1, 2] and point.pending() == 0


def test_a_part_given_nothing_new_is_not_asked_but_order_holds() -> None:
    a, b = ManualBarrier(), ManualBarrier()
    work = {"b": 0}
    point = DurabilityPoint([Stage("a", a), Stage("b", b, lambda: work["b"])])
    fired: list[int] = []
    work["b"] = 1
    point.after(lambda: fired.append(0))  # b was given work: asked
    point.after(lambda: fired.append(1))  # nothing new for b: not asked
    assert (a.asked, b.asked) == (2, 1)
    a.finish()
    assert fired == []  # 1 waits behind 0, which waits for b
    b.finish()
    assert fired == [0, 1]


def test_nothing_pending_fires_at_once_and_hooks_run_first() -> None:
    point = DurabilityPoint([Stage("idle", ManualBarrier(), lambda: 0)])
    order: list[str] = []
    point.on_barrier(lambda: lambda: order.append("hook"))
    point.after(lambda: order.append("ack"))
    point.after(lambda: order.append("ack"))  # counter unchanged: not asked
    assert order[-2:] == ["hook", "ack"]


def test_callbacks_from_many_threads_still_fire_once_in_order() -> None:
    a, b = ManualBarrier(), ManualBarrier()
    point = DurabilityPoint([Stage("a", a), Stage("b", b)])
    fired: list[int] = []
    n = 2000
    for i in range(n):
        point.after(lambda i=i: fired.append(i))
    ta = threading.Thread(target=a.finish)
    tb = threading.Thread(target=b.finish)
    ta.start(), tb.start()
    ta.join(), tb.join()
    assert fired == list(range(n))


def test_storage_marker_fires_after_the_points_before_it_are_stored(tmp_path: Path) -> None:
    sink = SqliteSink(tmp_path / "ts.db")
    w = StorageWriter(sink, tmp_path / "spool", batch_points=10_000, batch_interval=30.0, linger=0.01).start()
    try:
        seen: list[int] = []
        w.put(pts(50))
        w.after(lambda: seen.append(len(sink.query())))
        wait_until(lambda: seen, 5, "the marker")  # not the 30 s batch interval
        assert seen == [50]
        assert w.behind() == 0.0
    finally:
        w.stop()


class DownSink:
    name = "down"

    def write(self, points: list[TsPoint]) -> None:
        raise SinkError("connection refused")

    def close(self) -> None:
        pass


def test_marker_fires_once_the_batch_is_spooled_when_the_store_is_down(tmp_path: Path) -> None:
    w = StorageWriter(DownSink(), tmp_path / "spool", batch_interval=30.0, linger=0.01).start()
    try:
        fired = threading.Event()
        w.put(pts(20))
        w.after(fired.set)
        assert fired.wait(5)
        assert w.spool.points == 20 and w.pending == 20
        assert w.behind() > 0
    finally:
        w.stop(0.5)


def test_markers_wait_while_neither_store_nor_disk_takes_the_batch(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    w = StorageWriter(DownSink(), spool, batch_interval=30.0, linger=0.01)
    real_append = w.spool.append
    disk_ok = threading.Event()

    def append(points: list[TsPoint], rejected: bool = False, arrived: float = 0.0) -> None:
        if not disk_ok.is_set():
            raise OSError(28, "No space left on device")
        real_append(points, rejected, arrived)

    w.spool.append = append  # type: ignore[method-assign]
    w.start()
    try:
        fired = threading.Event()
        w.put(pts(5))
        w.after(fired.set)
        assert not fired.wait(1.0)  # not acknowledged: a crash now must not lose it
        disk_ok.set()
        assert fired.wait(5)
        assert w.spool.points == 5
    finally:
        w.stop(0.5)


def test_group_commit_retries_and_holds_callbacks_until_committed() -> None:
    fail = {"n": 2}

    def commit() -> None:
        if fail["n"]:
            fail["n"] -= 1
            raise RuntimeError("database is locked")

    g = GroupCommit(commit, retry_s=0.05).start()
    try:
        fired = threading.Event()
        g.after(fired.set)
        assert fired.wait(5)
        assert g.failures == 2 and g.commits == 1
    finally:
        g.stop()


def test_stop_past_its_deadline_spools_the_rest_and_the_next_start_stores_it(tmp_path: Path) -> None:
    """A large backlog at stop: what the store has not taken by the deadline goes to the disk spool
    (in a few large files), and a writer started later on the same spool stores all of it."""
    sink = SqliteSink(tmp_path / "ts.db")
    w = StorageWriter(sink, tmp_path / "spool", batch_points=500, batch_interval=30.0)
    n = 40_000
    for i in range(0, n, 100):
        w.put(pts(100, t0=i))
    fired = threading.Event()
    w.after(fired.set)
    w.start()
    w.stop(timeout=0.05)
    assert fired.is_set()  # everything is durable: in the store or on disk
    stored = len(SqliteSink(tmp_path / "ts.db").query())
    assert w.spool.points == n - stored and w.spool.points > 0, (stored, w.spool.points)
    later = StorageWriter(SqliteSink(tmp_path / "ts.db"), tmp_path / "spool", batch_interval=0.05).start()
    try:
        assert later.flush(60)
        assert len(SqliteSink(tmp_path / "ts.db").query()) == n
    finally:
        later.stop()


def test_the_alarm_engine_marker_fires_after_what_was_put_before_it(tmp_path: Path) -> None:
    from tests.unit.test_history_service import SITE, Clock, engine, status

    eng = engine(tmp_path, Clock())
    seen: list[int] = []
    eng.put(status("gw-1", "online", 1.0))
    eng.after(lambda: seen.append(eng.counters["messages"]))
    assert eng.backlog() == 1 and not seen  # not started: nothing processed, the marker waits
    eng.start()
    try:
        wait_until(lambda: seen, 5, "the engine's marker")
        assert seen == [1] and eng.backlog() == 0 and SITE
    finally:
        eng.stop()
        eng.store.close()
