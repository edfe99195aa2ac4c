"""PUBACKs in the gmqtt ingest client (cloud/ingest/gmqtt_publish.py): both roads share one buffer,
one write per event-loop step, same order as the PUBLISH packets; with a durability point the
write waits until the point says the messages are durable, and acks of a dropped connection are
never written."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from cloud.ingest.durability import DurabilityPoint, Stage
from cloud.ingest.gmqtt_publish import LeanPublishClient


class Proto:
    """Stands in for gmqtt's protocol object: only `write_data` is patched and called."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write_data(self, data: bytes) -> None:
        self.writes.append(data)


class Conn:
    def __init__(self) -> None:
        self._protocol = Proto()


class ManualBarrier:
    """A part of the ingester that finishes its work when the test says so."""

    def __init__(self) -> None:
        self.waiting: list[Callable[[], None]] = []

    def after(self, callback: Callable[[], None]) -> None:
        self.waiting.append(callback)

    def finish(self) -> None:
        done, self.waiting = self.waiting, []
        for cb in done:
            cb()


def run_in_thread(fn: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """asyncio.run in its own thread: another test may leave a loop marked running in this one."""
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(asyncio.run(fn())))
    t.start()
    t.join(10)
    return out[0]


def puback(mid: int) -> bytes:
    return bytes([0x40, 2]) + mid.to_bytes(2, "big")


def client(durable: DurabilityPoint | None = None) -> tuple[LeanPublishClient, Conn]:
    c = LeanPublishClient("t", lambda *a: None, durable)
    conn = Conn()
    c._package_handler._connection = conn
    c.adopt(conn._protocol)
    return c, conn


async def steps(n: int = 2) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def test_both_roads_share_one_write_per_step_in_order() -> None:
    async def run() -> Proto:
        c, conn = client()
        p = conn._protocol
        c._queue_ack(1)  # lean road
        p.write_data(puback(2))  # gmqtt's own road (a message with properties)
        c._queue_ack(3)
        p.write_data(b"\xc0\x00")  # PINGREQ: written at once
        assert p.writes == [b"\xc0\x00"]
        await steps()
        return p

    p = run_in_thread(run)
    assert p.writes == [b"\xc0\x00", puback(1) + puback(2) + puback(3)]


def test_acks_wait_for_the_durability_point_and_keep_their_order() -> None:
    barrier = ManualBarrier()
    point = DurabilityPoint([Stage("storage", barrier)])

    async def run() -> tuple[Proto, list[bytes]]:
        c, conn = client(point)
        p = conn._protocol
        for mid in (1, 2):
            c._queue_ack(mid)
        await steps()  # end of the first burst: handed to the point, not written
        c._queue_ack(3)
        await steps()
        before = list(p.writes)
        barrier.finish()  # storage caught up (called here from the loop's thread; any thread works)
        await steps(3)
        return p, before

    p, before = run_in_thread(run)
    assert before == []
    assert b"".join(p.writes) == puback(1) + puback(2) + puback(3)
    assert point.pending() == 0


def test_acks_of_a_dropped_connection_are_not_written() -> None:
    barrier = ManualBarrier()
    point = DurabilityPoint([Stage("storage", barrier)])

    async def run() -> tuple[Proto, Proto]:
        c, old = client(point)
        c._queue_ack(7)
        await steps()
        new = Conn()  # reconnected: the broker will deliver message 7 again on this connection
        c._package_handler._connection = new
        c.adopt(new._protocol)
        barrier.finish()
        await steps(3)
        return old._protocol, new._protocol

    old, new = run_in_thread(run)
    assert old.writes == [] and new.writes == []
