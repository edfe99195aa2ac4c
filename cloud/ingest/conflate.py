"""Per-device conflation of routine telemetry on its way to the alarm engine.

The alarm engine evaluates messages one by one in one thread; a fleet can send more telemetry than
it can evaluate. Queued in order, that telemetry grew without bound (200,000 messages, ~100 s, at
2,300 msg/s: issue 11) and the engine judged readings minutes after they were taken. Instead the
gate holds **at most one entry per device**: a telemetry message merges into the device's entry,
point by point, and the engine takes one device's entry at a time, oldest device first. However
fast telemetry comes, the engine works on the newest readings, and what is held is bounded by the
estate (devices × points × `depth` samples), not by the load.

What merging keeps, so that rules judge the same thing they would have judged message by message:

- every sample keeps its own message's seq, edge ts and receive time (`cloud.ordering.Meta`), so
  the engine orders readings by seq and runs durations and rate of rise on the samples' times;
- only what the engine will look at: `depths` (the engine's `point_depths`, learnt as it meets a
  device's points) says per point how many samples to keep: none for a point no rule reads, 2
  (where a held condition started, and now) for threshold and state rules, `depth` for a rate of
  rise. A point the engine has not met yet keeps `depth` samples;
- up to that many samples per point (oldest first). A full run drops its second-oldest sample: the
  oldest stays, because it is where a rise or a held condition starts, and the newest stay; so does
  the lowest after the oldest (the third-oldest goes instead), where a port that cooled starts to
  rise again (a rate of rise is judged from its window's lowest);
  unless the oldest is more than `span_s` (60 s, the rate-of-rise window) older than the new
  sample: then it is no use to a rate any more and goes first. (Runs fill only when a device's
  entry waits for `depth` of its readings, i.e. the engine was stalled for many seconds.)
- a sample older (by seq) than the newest held for its point is not added: the engine would not
  apply it anyway (it is history), and it must not push a newer sample out of a full run;
- the clock skew of a message the time policy rebased (cloud/ingest/timepolicy.py), the newest:
  the engine raises `gateway_clock` from it as it would from that message alone;
- the seq numbers of every merged message, as runs (the engine's gap accounting). Past
  `max_runs` runs the two oldest are joined, which can hide a gap from the engine's count (the
  ingester's own count, `sequence_gaps`, sees every message). A message of another `epoch` (a
  wiped outbox counting again from 1, docs/wire.md) is newer whatever its seq and starts the runs
  again.

Only telemetry is merged. Events, status, device and gateway health, command results go to the
engine as they are (cloud/ingest/priority.py). Storage is a separate path (pipeline.py) that keeps
every reading. Pure logic: the caller holds the lock.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping

from cloud.ordering import Meta, mark, newer
from cloud.safety import Readings, SafetyMessage
from device_profiles import wire

DKey = tuple[str, str, str]


def add_seq(runs: list[list[int]], seq: int, max_runs: int) -> None:
    """Record `seq` in `[first, last]` runs (appends extend the last run when contiguous)."""
    last = runs[-1]
    if seq == last[1] + 1:
        last[1] = seq
        return
    runs.append([seq, seq])
    if len(runs) > max_runs:
        a, b = runs[0], runs.pop(1)
        a[0], a[1] = min(a[0], b[0]), max(a[1], b[1])


def _victim(run: list[tuple[Meta, wire.Scalar]]) -> int:
    """Which sample a full run (oldest first, at least 2) drops for a newer one: the second-oldest,
    unless it is the run's lowest number: a rate of rise is judged from the lowest of its window
    (cloud/alarms/rules.py), which is where a port that cooled starts to rise again."""
    second = run[1][1]
    if len(run) < 3 or type(second) not in (int, float):
        return 1
    for i, (_, v) in enumerate(run):
        if i != 1 and type(v) in (int, float) and v <= second:  # type: ignore[operator]
            return 1
    return 2


class Conflator:
    """Held telemetry, one `Readings` per device, handed out oldest device first."""

    def __init__(
        self,
        depth: int = 16,
        max_runs: int = 64,
        span_s: float = 60.0,
        depths: Mapping[DKey, Mapping[str, int]] | None = None,
    ) -> None:
        if depth < 1 or max_runs < 1:
            raise ValueError("depth and max_runs must be at least 1")
        self.depth = depth
        self.max_runs = max_runs
        self.span_s = span_s
        self.depths: Mapping[DKey, Mapping[str, int]] = {} if depths is None else depths
        self._held: dict[DKey, Readings] = {}
        self._order: deque[DKey] = deque()
        self.merged = 0  # messages merged into an entry already held (since start)
        self.thinned = 0  # samples dropped from a full run (since start)
        self.older = 0  # samples not added: older than the newest held for their point (since start)

    def __len__(self) -> int:
        """Devices held."""
        return len(self._held)

    def add(self, msg: SafetyMessage) -> None:
        """Merge one telemetry message (a `wire.Telemetry` payload of a device) into its device's entry.
        On the ingest thread for every telemetry message: kept lean (locals, no per-sample counters)."""
        p = msg.payload
        if not isinstance(p, wire.Telemetry) or msg.device is None:
            raise TypeError("only device telemetry is conflated")
        seq = p.seq
        meta = Meta(seq, p.ts.timestamp(), msg.received, p.epoch)
        key = (msg.site, msg.gateway, msg.device)
        want = self.depths.get(key)
        r = self._held.get(key)
        if r is None:
            if want is None:
                points = {pid: [(meta, v)] for pid, v in p.values.items()}
            else:
                points = {pid: [(meta, v)] for pid, v in p.values.items() if want.get(pid, 1)}
            self._held[key] = Readings(points, meta, [[seq, seq]], msg.received, clock_skew=msg.clock_skew)
            self._order.append(key)
            return
        self.merged += 1
        r.merged += 1
        if msg.clock_skew is not None:
            r.clock_skew = msg.clock_skew  # rebased by the time policy: the engine raises gateway_clock
        # Newer than every sample held (the usual case): no per-point check.
        whole = seq > r.last.seq or newer(meta, mark(r.last))  # another epoch: newer
        last_run = r.seqs[-1]
        if whole and meta.epoch != r.last.epoch:
            r.seqs = [[seq, seq]]  # a wiped outbox counts again from 1: the old epoch's runs are done
        elif seq == last_run[1] + 1:
            last_run[1] = seq
        else:
            add_seq(r.seqs, seq, self.max_runs)
        if whole:
            r.last = meta
        default, points = self.depth, r.points
        for pid, v in p.values.items():
            depth = default if want is None else want.get(pid, default)
            if not depth:
                continue  # no rule reads this point
            run = points.get(pid)
            if run is None:
                points[pid] = [(meta, v)]
            elif not whole and not newer(meta, mark(run[-1][0])):
                self.older += 1
            else:
                if len(run) >= depth:
                    if depth == 1 or meta.ts - run[0][0].ts > self.span_s:
                        del run[0]
                    else:
                        del run[_victim(run)]
                    self.thinned += 1
                run.append((meta, v))

    @property
    def samples(self) -> int:
        """Samples held now (counted on demand: the caller holds the lock)."""
        return sum(len(run) for r in self._held.values() for run in r.points.values())

    def take(self) -> SafetyMessage | None:
        """The entry of the device that has waited longest, as a TELEMETRY message; None if empty."""
        try:
            key = self._order.popleft()
        except IndexError:
            return None
        return self._message(key, self._held.pop(key))

    def take_device(self, key: DKey) -> SafetyMessage | None:
        """The entry of one device, out of its turn (None if none is held): what must go before an
        urgent message of the same device (cloud/ingest/priority.py). O(devices held); urgent
        messages are few."""
        r = self._held.pop(key, None)
        if r is None:
            return None
        self._order.remove(key)
        return self._message(key, r)

    @staticmethod
    def _message(key: DKey, r: Readings) -> SafetyMessage:
        return SafetyMessage(key[0], key[1], key[2], wire.Kind.TELEMETRY, r, r.last.received, r.clock_skew)
