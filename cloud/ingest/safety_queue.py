"""A queue-backed SafetySink: the alarm engine (or a test) drains it from its own thread.

`put` never blocks and costs one deque append (queue.Queue's lock and condition cost ~4 µs per
message on the ingest hot path). When the queue is full (the engine stopped draining) the message
is counted as dropped rather than stalling ingest — a stalled ingester would stop storage too.
A consumer either polls `drain()` or blocks in `get(timeout)`, which is woken by `put` only when
a consumer is actually waiting.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from cloud.safety import SafetyMessage


class QueueSafetySink:
    def __init__(self, maxsize: int = 0) -> None:
        self.maxsize = maxsize
        self._q: deque[SafetyMessage] = deque()
        self._waiting = False
        self._wake = threading.Event()
        self.put_count = 0
        self.dropped = 0

    def put(self, msg: SafetyMessage) -> None:
        if self.maxsize and len(self._q) >= self.maxsize:
            self.dropped += 1
            return
        self._q.append(msg)
        self.put_count += 1
        if self._waiting:
            self._wake.set()

    def get(self, timeout: float | None = None) -> SafetyMessage | None:
        """The oldest message, waiting up to `timeout` seconds; None if nothing came."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                return self._q.popleft()
            except IndexError:
                pass
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            self._wake.clear()
            self._waiting = True
            if self._q:  # raced with a put between popleft and clear
                self._waiting = False
                continue
            self._wake.wait(0.05 if remaining is None else min(remaining, 0.05))
            self._waiting = False

    def drain(self) -> list[SafetyMessage]:
        out = []
        while True:
            try:
                out.append(self._q.popleft())
            except IndexError:
                return out

    def qsize(self) -> int:
        return len(self._q)
