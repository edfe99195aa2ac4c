"""The durability point every transport acknowledges behind (MQTT PUBACK, JetStream ack).

A transport hands a burst of messages to `Pipeline.handle`, then calls

    durable.after(callback)

and acknowledges those messages in `callback`. The callback runs once everything the pipeline did
with every message handled before that call is durable:

- telemetry and health points are in the time-series store, or fsync'd in its disk spool;
- dead letters and parked messages (a new gateway's telemetry waiting for its birth) are committed;
- alarm-relevant messages (status, events, device health) have been processed by the alarm engine,
  so an acknowledged event cannot be lost between the acknowledgement and its alarm.

The contract, for whoever writes a transport:

- Call `after` from the thread that calls `Pipeline.handle` (or under the same lock), after the
  burst's `handle` calls have returned. "Before this call" means handled before it on that thread.
- Callbacks fire once each, in the order of the `after` calls, from a background thread (the
  storage writer's, the alarm engine's or the group-commit thread), or at once in the caller's
  thread when nothing is pending. Never block in one: hand the acknowledgement to your own loop
  (`loop.call_soon_threadsafe`) and return.
- A callback that never fires means the process stopped before the messages became durable: do
  not acknowledge them; the broker or stream delivers them again, and the replay check and the
  idempotent stores make the second delivery harmless.

`DurabilityPoint` joins the barriers of the parts that hold the ingester's work (each a `Barrier`:
`after(callback)` once what it was given so far is durable, in order), skipping a part that was
given nothing since the previous call. `GroupCommit` turns a store that buffers writes (dead
letters, parked messages) into such a barrier by committing its buffer on a thread of its own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Protocol

log = logging.getLogger(__name__)

Callback = Callable[[], None]


class Durable(Protocol):
    """What a transport needs: the one method it acknowledges behind."""

    def after(self, callback: Callback) -> None:
        """Call `callback` once everything handled before this call is durable (see module doc)."""


class Barrier(Protocol):
    """One part of the ingester that holds work (the storage writer, the alarm engine...)."""

    def after(self, callback: Callback) -> None:
        """Call `callback` once everything given to this part before the call is done; in order."""


@dataclass
class Stage:
    """A part to wait for. `changes` is a counter that moves whenever the part is given work (for
    example the points handed to storage); when it has not moved since the previous `after`, the
    part holds nothing new and is not asked. None: always ask."""

    name: str
    barrier: Barrier
    changes: Callable[[], int] | None = None
    _seen: int = -1

    def __post_init__(self) -> None:
        if self.changes is not None:
            self._seen = self.changes()  # work given before the point existed is not its business


class _Wait:
    __slots__ = ("callbacks", "remaining", "since")

    def __init__(self, callbacks: list[Callback], remaining: int) -> None:
        self.callbacks = callbacks
        self.remaining = remaining
        self.since = time.monotonic()


class DurabilityPoint:
    """`after(callback)` behind every stage; callbacks fire in call order (see module doc).

    `on_barrier(hook)`: `hook()` runs inside each `after` call (on the pipeline's thread) and may
    return a callback to run, just before the transport's, once that point is durable; the ingester
    uses it to save its replay-check state only for messages that are durable."""

    def __init__(self, stages: Iterable[Stage] = ()) -> None:
        self.stages: list[Stage] = list(stages)
        self._hooks: list[Callable[[], Callback | None]] = []
        self._waits: deque[_Wait] = deque()
        self._lock = threading.Lock()
        self._firing = False
        self.fired = 0

    def add(self, stage: Stage) -> None:
        """Wait for one more part (before the transports start)."""
        self.stages.append(stage)

    def on_barrier(self, hook: Callable[[], Callback | None]) -> None:
        self._hooks.append(hook)

    def after(self, callback: Callback) -> None:
        callbacks = [cb for hook in self._hooks if (cb := hook()) is not None]
        callbacks.append(callback)
        ask = []
        for st in self.stages:
            if st.changes is not None:
                n = st.changes()
                if n == st._seen:
                    continue
                st._seen = n
            ask.append(st)
        w = _Wait(callbacks, len(ask) + 1)  # +1: released below, once every stage has been asked
        with self._lock:
            self._waits.append(w)
        for st in ask:
            st.barrier.after(partial(self._arrive, w))
        self._arrive(w)

    def _arrive(self, w: _Wait) -> None:
        with self._lock:
            w.remaining -= 1
            if w.remaining or self._firing:
                return  # not done, or another thread is firing and will find it done
            self._firing = True
        while True:
            with self._lock:
                if not self._waits or self._waits[0].remaining:
                    self._firing = False
                    return
                head = self._waits.popleft()
            for cb in head.callbacks:
                try:
                    cb()
                except Exception:  # a transport's bug must not stop later acknowledgements
                    log.exception("durability callback failed")
            self.fired += 1

    def pending(self) -> int:
        """`after` calls whose callbacks have not fired yet (acknowledgements held back)."""
        return len(self._waits)

    def oldest_wait(self) -> float:
        """Seconds the oldest pending callback has waited (0 when none waits)."""
        try:
            return time.monotonic() - self._waits[0].since
        except IndexError:
            return 0.0


class GroupCommit:
    """A `Barrier` for stores that buffer writes and commit them in one transaction (dead letters,
    parked messages): `after(callback)` wakes a thread that runs `commit()` and then every
    callback registered before that commit started. A failing commit is retried (every
    `retry_s`) and its callbacks wait: what cannot be committed is not acknowledged."""

    def __init__(self, commit: Callable[[], None], name: str = "group-commit", retry_s: float = 0.5) -> None:
        self.commit = commit
        self.name = name
        self.retry_s = retry_s
        self._callbacks: list[Callback] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None
        self.commits = 0
        self.failures = 0

    def start(self) -> GroupCommit:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        return self

    def after(self, callback: Callback) -> None:
        with self._lock:
            self._callbacks.append(callback)
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            with self._lock:
                callbacks, self._callbacks = self._callbacks, []
            while True:
                try:
                    self.commit()
                    self.commits += 1
                    break
                except Exception:
                    self.failures += 1
                    log.exception("%s: commit failed; retrying (nothing acknowledged meanwhile)", self.name)
                    if self._stop:
                        return
                    time.sleep(self.retry_s)
            for cb in callbacks:
                cb()
            if self._stop and not self._callbacks:
                return

    def stop(self, timeout: float = 5.0) -> None:
        """Commit what is buffered, fire what waits, and end the thread."""
        self._stop = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        else:
            self.commit()
