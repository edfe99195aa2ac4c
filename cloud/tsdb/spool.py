"""The storage path: batch points by size and time, write them, and keep them on disk while the
store is down.

The ingester hands points over without waiting (`put`). One writer thread forms batches (up to
`batch_points`, or whatever arrived within `batch_interval` seconds). While the disk spool is empty
a batch goes straight to the sink; if that fails, the batch is written to the spool and from then
on every batch queues behind it on disk, so the store receives them strictly in order. The spool is
drained oldest first with exponential back-off. A batch the store refuses outright (HTTP 400: bad
data, not an outage) is moved to `rejected/` and counted, never retried forever.

Batches on disk survive a restart of the ingester: they are drained before anything new.

`after(callback)` is the storage half of the ingester's durability point (cloud/ingest/durability.py):
a marker in the same queue as the points, so the writer calls `callback` once every point put before
it is in the store or fsync'd on disk (never before: a batch that can be neither stored nor spooled
is kept and retried, and its markers wait). While a marker waits, the writer does not sit out the
batch interval: it writes `linger` seconds after the oldest waiting marker (group commit: under load
the batches grow by themselves, idle it answers at once).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import msgspec

from cloud.tsdb.base import Sink, SinkError
from cloud.tsdb.lineproto import Series, TsPoint

log = logging.getLogger(__name__)

_enc = msgspec.msgpack.Encoder()
_dec = msgspec.msgpack.Decoder()


def encode_batch(points: list[TsPoint]) -> bytes:
    return _enc.encode([[p.series.measurement, p.series.tags, p.fields, p.ts_ms] for p in points])


def decode_batch(data: bytes) -> list[TsPoint]:
    cache: dict[tuple[str, tuple[tuple[str, str], ...]], Series] = {}
    out = []
    for m, tags, fields, ts in _dec.decode(data):
        tt = tuple((k, v) for k, v in tags)
        s = cache.get((m, tt))
        if s is None:
            s = cache[(m, tt)] = Series.make(m, dict(tt))
        out.append(TsPoint(s, fields, ts))
    return out


@dataclass(slots=True)
class StorageStats:
    written: int = 0  # points the store accepted
    batches: int = 0
    retries: int = 0  # failed write attempts (each is retried later)
    rejected: int = 0  # points in batches the store refused as bad data
    spooled: int = 0  # points that had to go to disk
    last_error: str = ""
    last_write_lag: float = 0.0  # seconds between a batch's oldest point arriving and being stored


class Spool:
    """Batches on disk, one file each, named by a rising number so order is kept."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "rejected").mkdir(exist_ok=True)
        for tmp in self.dir.glob("*.tmp"):
            tmp.unlink()
        files = sorted(self.dir.glob("*.batch"))
        self._files: deque[Path] = deque(files)
        self._next = (int(files[-1].name.split("-")[0]) + 1) if files else 1
        self.points = sum(self._count(f) for f in files)

    @staticmethod
    def _count(f: Path) -> int:
        return int(f.stem.split("-")[1])

    def files(self) -> list[Path]:
        return list(self._files)

    def append(self, points: list[TsPoint], rejected: bool = False, arrived: float = 0.0) -> None:
        """Write one batch durably (fsync'd, then renamed into place). `arrived`: when its oldest
        point arrived, kept as the file's modification time for `oldest_time`."""
        name = f"{self._next:012d}-{len(points)}.batch"
        self._next += 1
        target = self.dir / "rejected" if rejected else self.dir
        tmp = target / (name + ".tmp")
        with open(tmp, "wb") as fh:
            fh.write(encode_batch(points))
            fh.flush()
            os.fsync(fh.fileno())
        if arrived:
            os.utime(tmp, (arrived, arrived))
        tmp.rename(target / name)
        if not rejected:
            self._files.append(target / name)
            self.points += len(points)

    def oldest_time(self) -> float | None:
        """When the oldest waiting batch's points arrived (its file's modification time)."""
        try:
            return self._files[0].stat().st_mtime
        except (IndexError, OSError):
            return None

    def oldest(self) -> tuple[Path, list[TsPoint]] | None:
        if not self._files:
            return None
        f = self._files[0]
        return f, decode_batch(f.read_bytes())

    def done(self, f: Path) -> None:
        self._files.popleft()
        self.points -= self._count(f)
        f.unlink()

    def reject(self, f: Path) -> None:
        self._files.popleft()
        self.points -= self._count(f)
        f.rename(self.dir / "rejected" / f.name)

    def __len__(self) -> int:
        return len(self._files)


class StorageWriter:
    def __init__(
        self,
        sink: Sink,
        spool_dir: Path | str,
        batch_points: int = 5000,
        batch_interval: float = 0.5,
        backoff_initial: float = 0.5,
        backoff_max: float = 10.0,
        linger: float = 0.05,
    ) -> None:
        self.sink = sink
        self.spool = Spool(Path(spool_dir))
        self.batch_points = batch_points
        self.batch_interval = batch_interval
        self.linger = linger
        self.backoff_initial, self.backoff_max = backoff_initial, backoff_max
        self.stats = StorageStats()
        # Hand-off from the producers (ingest thread, history writers) to the writer thread: the
        # deque is appended and popped without a lock (both atomic in CPython); points in and out
        # are counted apart (`_in` under a small lock, as producers may be several; `_out` by the
        # writer alone), so the ingest thread never waits while the writer takes a batch.
        # A queue item is (arrival time, points) or (0.0, callback): a durability marker (`after`).
        self._q: deque[tuple[float, list[TsPoint] | Callable[[], None]]] = deque()
        self._in = 0
        self._out = 0
        self._inflight = 0  # taken from the queue, not yet in the store or on disk
        self._inflight_t = 0.0  # arrival of the oldest point in flight
        self._marks_in = 0  # markers put (producers, under _in_lock) and taken (writer)
        self._marks_out = 0
        self._first_mark = 0.0  # when the oldest waiting marker was put
        self._in_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = False
        self._stop_by = float("inf")  # stopping: after this, batches go to the spool, not the store
        self._thread: threading.Thread | None = None
        self._backoff = 0.0
        self._next_try = 0.0

    # ------------------------------------------------------------------ producer side (ingester)
    def put(self, points: list[TsPoint], received: float | None = None) -> None:
        """Hand points over; never blocks on the store."""
        if not points:
            return
        with self._in_lock:
            self._q.append((received or time.time(), points))
            self._in += len(points)
        if self._in - self._out >= self.batch_points and not self._wake.is_set():
            self._wake.set()

    def after(self, callback: Callable[[], None]) -> None:
        """Call `callback` (from the writer thread) once every point put before this call is in the
        store or on disk; callbacks fire in call order. Never blocks."""
        with self._in_lock:
            self._q.append((0.0, callback))
            waiting = self._marks_in - self._marks_out
            self._marks_in += 1
            if not waiting:
                self._first_mark = time.monotonic()
        if not waiting:
            self._wake.set()

    @property
    def _queued(self) -> int:
        return self._in - self._out

    @property
    def pending(self) -> int:
        """Points not yet in the store: queued, being written, and on disk."""
        return self._queued + self._inflight + self.spool.points

    @property
    def put_count(self) -> int:
        """Points put so far (moves whenever the writer is given work)."""
        return self._in

    def behind(self) -> float:
        """Seconds the oldest point not yet in the store has waited (in memory or on disk); 0 when
        the store holds everything. Read at scrape time, not per message."""
        now = time.time()
        oldest = self.spool.oldest_time() or now
        if self._inflight and self._inflight_t:
            oldest = min(oldest, self._inflight_t)
        q = self._q
        for i in range(64):  # markers carry no time; the first points item near the head does
            try:
                t, item = q[i]  # O(1) near the head; the writer may pop meanwhile (an estimate)
            except IndexError:
                break
            if isinstance(item, list):
                oldest = min(oldest, t)
                break
        return max(0.0, now - oldest)

    # ------------------------------------------------------------------ writer thread
    def start(self) -> StorageWriter:
        self._thread = threading.Thread(target=self._run, name="tsdb-writer", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Write what is in memory to the store for up to `timeout` seconds, then whatever is left to
        the disk spool (drained at the next start), and stop. Waits for the spool writes whatever
        they take: a point acknowledged to the broker is never dropped for a deadline."""
        self._stop_by = time.monotonic() + timeout
        self._stop = True
        self._wake.set()
        if self._thread:
            while self._thread.is_alive():
                self._thread.join(1.0)
                if self._thread.is_alive() and time.monotonic() > self._stop_by + 5:
                    log.warning("storage writer still writing %d points to the spool", self.pending)
        self.sink.close()

    def _out_of_time(self) -> bool:
        return self._stop and time.monotonic() >= self._stop_by

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until nothing is pending (tests, shutdown); False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._wake.set()
            if self.pending == 0:
                return True
            time.sleep(0.02)
        return self.pending == 0

    def _wait_for_work(self) -> None:
        """Sleep until a full batch is queued, the batch interval is over, or a marker has waited
        `linger` seconds."""
        deadline = time.monotonic() + self.batch_interval
        while not self._stop and self._queued < self.batch_points:
            if self._marks_in != self._marks_out:
                deadline = min(deadline, self._first_mark + self.linger)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._wake.wait(remaining)
            self._wake.clear()  # a put racing with this finds its points taken below, or wakes us again

    def _take(self) -> tuple[float, list[TsPoint], list[Callable[[], None]]]:
        """The next batch (up to `batch_points`) and the markers met on the way to its end."""
        self._wait_for_work()
        self._wake.clear()
        batch: list[TsPoint] = []
        marks: list[Callable[[], None]] = []
        oldest = 0.0
        q = self._q
        limit = self.batch_points * 20 if self._out_of_time() else self.batch_points  # fewer, larger files
        while q and len(batch) < limit:
            t, item = q.popleft()
            if isinstance(item, list):
                oldest = oldest or t
                batch.extend(item)
            else:
                marks.append(item)
        self._inflight = len(batch)
        self._inflight_t = oldest
        self._out += len(batch)
        if marks:
            with self._in_lock:
                self._marks_out += len(marks)
                if self._marks_in != self._marks_out:
                    self._first_mark = time.monotonic()  # the rest were put after these were taken
        return oldest, batch, marks

    def _run(self) -> None:
        held: tuple[float, list[TsPoint], list[Callable[[], None]]] | None = None
        while True:
            stopping = self._stop
            oldest, batch, marks = held or self._take()
            held = None
            try:
                if batch and not self._store(batch, oldest):
                    held = (oldest, batch, marks)  # neither stored nor on disk: keep it, markers wait
                    if stopping:
                        log.error("storage writer stopping with %d points neither stored nor spooled", len(batch))
                        return
                    time.sleep(0.5)
                    continue
                for cb in marks:
                    cb()
                self._drain(stopping)
            except Exception:  # never let the writer thread die
                log.exception("storage writer")
                time.sleep(0.5)
            if stopping and not self._q:
                return

    def _store(self, batch: list[TsPoint], oldest: float) -> bool:
        """Write a fresh batch, or put it on disk behind what already waits there. True once it is
        in the store or on disk (refused batches go to disk too, under rejected/); False if even the
        disk failed (the caller keeps the batch and tries again)."""
        try:
            try:
                if len(self.spool) or self._out_of_time():
                    self._to_spool(batch, oldest)  # something older waits on disk (keep the order), or stopping
                elif not self._write(batch, oldest):
                    self._to_spool(batch, oldest)
            except SinkError as e:
                log.error("store refused a batch (%s); kept in %s", e, self.spool.dir / "rejected")
                self.stats.rejected += len(batch)
                self.spool.append(batch, rejected=True)
            except Exception:
                log.exception("storage writer failed on a batch; kept on disk for retry")
                self._to_spool(batch, oldest)
        except OSError:
            log.exception("cannot spool a batch of %d points; holding it in memory", len(batch))
            return False
        self._inflight = 0
        return True

    def _to_spool(self, batch: list[TsPoint], arrived: float = 0.0) -> None:
        self.spool.append(batch, arrived=arrived)
        self.stats.spooled += len(batch)

    def _write(self, batch: list[TsPoint], oldest: float) -> bool:
        try:
            self.sink.write(batch)
        except SinkError as e:
            self.stats.last_error = str(e)
            if not e.retry:
                raise
            self.stats.retries += 1
            self._backoff = min(self.backoff_max, (self._backoff * 2) or self.backoff_initial)
            self._next_try = time.monotonic() + self._backoff
            return False
        self.stats.written += len(batch)
        self.stats.batches += 1
        self._backoff = 0.0
        if oldest:
            self.stats.last_write_lag = max(0.0, time.time() - oldest)
        return True

    def _drain(self, stopping: bool) -> None:
        """Write spooled batches oldest first, until one fails (then wait the back-off)."""
        while len(self.spool) and time.monotonic() >= self._next_try and not self._out_of_time():
            item = self.spool.oldest()
            if item is None:
                return
            f, batch = item
            try:
                ok = self._write(batch, 0.0)
            except SinkError as e:
                log.error("store refused a batch (%s); kept in %s", e, self.spool.dir / "rejected")
                self.stats.rejected += len(batch)
                self.spool.reject(f)
                continue
            if not ok:
                return
            self.spool.done(f)
            if stopping:
                continue
            if self._queued >= self.batch_points:
                return  # let fresh data queue behind on disk; come back after it
