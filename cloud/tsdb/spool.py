"""The storage path: batch points by size and time, write them, and keep them on disk while the
store is down.

The ingester hands points over without waiting (`put`). One writer thread forms batches (up to
`batch_points`, or whatever arrived within `batch_interval` seconds). While the disk spool is empty
a batch goes straight to the sink; if that fails, the batch is written to the spool and from then
on every batch queues behind it on disk, so the store receives them strictly in order. The spool is
drained oldest first with exponential back-off. A batch the store refuses outright (HTTP 400: bad
data, not an outage) is moved to `rejected/` and counted, never retried forever.

Batches on disk survive a restart of the ingester: they are drained before anything new.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
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

    def append(self, points: list[TsPoint], rejected: bool = False) -> None:
        name = f"{self._next:012d}-{len(points)}.batch"
        self._next += 1
        target = self.dir / "rejected" if rejected else self.dir
        tmp = target / (name + ".tmp")
        with open(tmp, "wb") as fh:
            fh.write(encode_batch(points))
            fh.flush()
            os.fsync(fh.fileno())
        tmp.rename(target / name)
        if not rejected:
            self._files.append(target / name)
            self.points += len(points)

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
    ) -> None:
        self.sink = sink
        self.spool = Spool(Path(spool_dir))
        self.batch_points = batch_points
        self.batch_interval = batch_interval
        self.backoff_initial, self.backoff_max = backoff_initial, backoff_max
        self.stats = StorageStats()
        # Hand-off from the producers (ingest thread, history writers) to the writer thread: the
        # deque is appended and popped without a lock (both atomic in CPython); points in and out
        # are counted apart (`_in` under a small lock, as producers may be several; `_out` by the
        # writer alone), so the ingest thread never waits while the writer takes a batch.
        self._q: deque[tuple[float, list[TsPoint]]] = deque()
        self._in = 0
        self._out = 0
        self._inflight = 0  # taken from the queue, not yet in the store or on disk
        self._in_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = False
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

    @property
    def _queued(self) -> int:
        return self._in - self._out

    @property
    def pending(self) -> int:
        """Points not yet in the store: queued, being written, and on disk."""
        return self._queued + self._inflight + self.spool.points

    # ------------------------------------------------------------------ writer thread
    def start(self) -> StorageWriter:
        self._thread = threading.Thread(target=self._run, name="tsdb-writer", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Write what is in memory (to the store, or to disk if the store is away) and stop."""
        self._stop = True
        self._wake.set()
        if self._thread:
            self._thread.join(timeout)
        self.sink.close()

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until nothing is pending (tests, shutdown); False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._wake.set()
            if self.pending == 0:
                return True
            time.sleep(0.02)
        return self.pending == 0

    def _take(self) -> tuple[float, list[TsPoint]]:
        if self._queued < self.batch_points and not self._stop:
            self._wake.wait(self.batch_interval)
        self._wake.clear()  # a put racing with this finds the batch already taken below, or wakes us again
        batch: list[TsPoint] = []
        oldest = 0.0
        q = self._q
        while q and len(batch) < self.batch_points:
            t, pts = q.popleft()
            oldest = oldest or t
            batch.extend(pts)
        self._inflight = len(batch)
        self._out += len(batch)
        return oldest, batch

    def _run(self) -> None:
        while True:
            stopping = self._stop
            oldest, batch = self._take()
            try:
                if batch:
                    self._store(batch, oldest)
                self._drain(stopping)
            except Exception:  # never let the writer thread die
                log.exception("storage writer")
                time.sleep(0.5)
            if stopping and not self._q:
                return

    def _store(self, batch: list[TsPoint], oldest: float) -> None:
        """Write a fresh batch, or put it on disk behind what already waits there; either way it is
        no longer in flight when this returns (an unexpected error also leaves it on disk)."""
        try:
            if len(self.spool):
                self._to_spool(batch)  # something older waits on disk: keep the order
            elif not self._write(batch, oldest):
                self._to_spool(batch)
        except SinkError as e:
            log.error("store refused a batch (%s); kept in %s", e, self.spool.dir / "rejected")
            self.stats.rejected += len(batch)
            self.spool.append(batch, rejected=True)
        except Exception:
            log.exception("storage writer failed on a batch; kept on disk for retry")
            self._to_spool(batch)
        finally:
            self._inflight = 0

    def _to_spool(self, batch: list[TsPoint]) -> None:
        self.spool.append(batch)
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
        while len(self.spool) and time.monotonic() >= self._next_try:
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
