"""A queue-backed SafetySink: the alarm engine (or a test) drains it from its own thread.

`put` never blocks: when the queue is full (the engine stopped draining) the message is counted
as dropped rather than stalling ingest — a stalled ingester would stop storage too.
"""

from __future__ import annotations

import queue

from cloud.safety import SafetyMessage


class QueueSafetySink:
    def __init__(self, maxsize: int = 0) -> None:
        self.queue: queue.Queue[SafetyMessage] = queue.Queue(maxsize)
        self.put_count = 0
        self.dropped = 0

    def put(self, msg: SafetyMessage) -> None:
        try:
            self.queue.put_nowait(msg)
            self.put_count += 1
        except queue.Full:
            self.dropped += 1

    def drain(self) -> list[SafetyMessage]:
        out = []
        while True:
            try:
                out.append(self.queue.get_nowait())
            except queue.Empty:
                return out

    def qsize(self) -> int:
        return self.queue.qsize()
