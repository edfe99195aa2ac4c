"""PUBACK coalescing in the gmqtt ingest client: fewer writes, same bytes in the same order."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from cloud.ingest.mqtt_gmqtt import coalesce_pubacks


class Proto:
    """Stands in for gmqtt's protocol object: only `write_data` is patched and called."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write_data(self, data: bytes) -> None:
        self.writes.append(data)


def run_in_thread(fn: Callable[[], Coroutine[Any, Any, Proto]]) -> Proto:
    """asyncio.run in its own thread: another test may leave a loop marked running in this one."""
    out: list[Proto] = []
    t = threading.Thread(target=lambda: out.append(asyncio.run(fn())))
    t.start()
    t.join(10)
    return out[0]


def puback(mid: int) -> bytes:
    return bytes([0x40, 2]) + mid.to_bytes(2, "big")


def test_pubacks_of_one_step_go_out_in_one_write() -> None:
    async def run() -> Proto:
        p = Proto()
        coalesce_pubacks(p, asyncio.get_running_loop())
        for mid in range(1, 51):
            p.write_data(puback(mid))
        assert p.writes == []  # nothing yet: flushed at the end of this loop step
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return p

    p = run_in_thread(run)
    assert p.writes == [b"".join(puback(m) for m in range(1, 51))]


def test_other_packets_flush_first_and_keep_order() -> None:
    async def run() -> Proto:
        p = Proto()
        coalesce_pubacks(p, asyncio.get_running_loop())
        p.write_data(puback(1))
        p.write_data(puback(2))
        p.write_data(b"\xc0\x00")  # PINGREQ: written at once, after the acks before it
        p.write_data(puback(3))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        p.write_data(b"\xe0\x00")  # DISCONNECT with nothing buffered
        return p

    p = run_in_thread(run)
    assert p.writes == [puback(1) + puback(2), b"\xc0\x00", puback(3), b"\xe0\x00"]
