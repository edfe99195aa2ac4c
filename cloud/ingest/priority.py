"""The safety lane inside the process: alarm-relevant messages go ahead of routine telemetry on
their way to the alarm engine, and routine telemetry never queues without bound in front of it.

The two MQTT lanes stop an event waiting behind telemetry in the *broker*; this stops it waiting
behind telemetry in the *engine's queue*. The engine evaluates messages in one thread. Under a
2,000 msg/s fleet its queue held up to a second or two of telemetry in bursts, and a waterflow
event queued behind it (measured: ingest → push dispatched p99 1.6 s, target 100 ms).

`PriorityGate` is the SafetySink the ingester feeds. Events, status, device health, urgent telemetry
(docs/wire.md; its device's held readings go just before it) and the other rare kinds go straight
into the engine. Device telemetry is **conflated**: held at most one entry
per device (cloud/ingest/conflate.py: newest samples per point, each with its own seq, edge ts and
receive time), and a feeder thread hands the entries on, the device that waited longest first,
only while the engine has fewer than `max_ahead` messages pending. So an urgent message has at most
`max_ahead` routine messages in front of it, and whatever the load, what waits is bounded by the
estate and the engine always evaluates a device's newest readings. (Before, the held telemetry was a
FIFO of every message: it grew past 200,000 messages, ~100 s, at 2,300 msg/s, issue 11.)

Reordering means an event can reach the engine before older telemetry of the same device, and a
backfilled backlog arrives after live data: the engine orders a device's readings by seq, point by
point (cloud/ordering.py), never by arrival. Storage is a separate path that keeps every reading.
Pure of I/O; the engine is any sink with `put` and `backlog()`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any, Protocol

from cloud.ingest.conflate import Conflator
from cloud.safety import SafetyMessage
from device_profiles import wire


class BackloggedSink(Protocol):
    def put(self, msg: SafetyMessage) -> None: ...

    def backlog(self) -> int: ...


class PriorityGate:
    def __init__(
        self,
        sink: BackloggedSink,
        max_ahead: int = 8,
        depth: int = 16,
        depths: Mapping[tuple[str, str, str], Mapping[str, int]] | None = None,
    ) -> None:
        """`depths`: samples to hold per device and point (the engine's `point_depths`)."""
        self.sink = sink
        self.max_ahead = max_ahead
        self._held = Conflator(depth, depths=depths)
        self._lock = threading.Lock()  # the ingest thread merges while the feeder takes
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.urgent = 0
        self.routine = 0

    def start(self) -> PriorityGate:
        self._thread = threading.Thread(target=self._run, name="safety-gate", daemon=True)
        self._thread.start()
        return self

    def put(self, msg: SafetyMessage) -> None:
        """SafetySink: never blocks. Device telemetry is merged into its device's held entry;
        everything else goes straight to the engine (never merged, never held)."""
        if msg.kind is wire.Kind.URGENT and msg.device is not None:
            # Urgent telemetry overtakes other devices' held readings, not its own device's: handed on
            # after it, those would be history to the engine (lower seq), and a rate-of-rise window
            # would lose the rise it was judging. Under the lock, so the feeder cannot slip between.
            self.urgent += 1
            with self._lock:
                held = self._held.take_device((msg.site, msg.gateway, msg.device))
                if held is not None:
                    self.sink.put(held)
                self.sink.put(msg)
            return
        if msg.kind is not wire.Kind.TELEMETRY or msg.device is None:
            self.urgent += 1
            self.sink.put(msg)
            return
        self.routine += 1
        with self._lock:
            self._held.add(msg)
        if not self._wake.is_set():  # Event.set takes a lock: once per burst, not per message
            self._wake.set()

    def _run(self) -> None:
        held, lock, sink = self._held, self._lock, self.sink
        while not self._stop.is_set():
            if not held:
                self._wake.wait(0.05)
                self._wake.clear()
                continue
            room = self.max_ahead - sink.backlog()
            if room <= 0:
                time.sleep(0.001)  # the engine is busy: let it work, then top it up
                continue
            for _ in range(room):
                with lock:  # taken and handed on under the lock: an urgent message keeps its device's order
                    m = held.take()
                    if m is None:
                        break
                    sink.put(m)

    def qsize(self) -> int:
        """Messages waiting for the engine: held device entries plus the engine's own queue."""
        return len(self._held) + self.sink.backlog()

    def stats(self) -> dict[str, Any]:
        h = self._held
        with self._lock:
            samples = h.samples
        return {"held_devices": len(h), "held_samples": samples, "merged": h.merged,
                "thinned": h.thinned, "older": h.older, "urgent": self.urgent, "routine": self.routine}

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until everything put so far has been processed by the engine (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._held and self.sink.backlog() == 0:
                return True
            time.sleep(0.005)
        return False

    def stop(self, timeout: float = 10.0) -> None:
        """Hand the held telemetry on (so nothing is lost on shutdown), then stop the feeder."""
        self.drain(timeout)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
