"""What cloud/history costs the ingest hot path, against the same pipeline without it, same run.

The ingester's `Pipeline.handle` runs over the same N wire messages of the fleet generator on the
demo estate (parking-heavy: 3 of its 9 devices have bays, bay flips at 30 % per device per tick),
in process, with a null storage (counts points) so only the pipeline and the safety hand-over are
timed:
  reference   safety = QueueSafetySink (what `cloud ingest` uses)
  history     safety = HistoryService.fan_out(QueueSafetySink), the history thread running
              concurrently (so its share of the GIL is in the figure)
Runs alternate (5 each), median shown. Also prints how fast the history thread works through its
queue on its own (messages/s of `step()`), and how many stays it found.

    .venv/bin/python bench/history_overhead.py [--messages 100000]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cloud.history.service import HistoryService
from cloud.ingest.dead_letter import DeadLetterStore
from cloud.ingest.pipeline import Pipeline
from cloud.ingest.safety_queue import QueueSafetySink
from cloud.ingest.timepolicy import TimePolicy
from cloud.site_config import load_site
from cloud.state.registry import Registry
from cloud.tsdb.lineproto import TsPoint
from simulators.fleet import FleetConfig, FleetModel

REPLAY = TimePolicy.off()  # a simulated clock replayed (received 0.0): its stamps are not judged

SITE_FILE = Path(__file__).resolve().parents[1] / "cloud" / "sites" / "demo-estate.yaml"


class NullStorage:
    def __init__(self) -> None:
        self.points = 0

    def put(self, points: list[TsPoint], received: float | None = None) -> None:
        self.points += len(points)


def messages(n: int) -> list[tuple[str, bytes]]:
    cfg = FleetConfig(site_file=str(SITE_FILE), sim_start=datetime(2026, 1, 1, tzinfo=UTC), tick_s=1.0,
                      event_probability=0.3, seed=3)
    out = []
    for topic, payload, _ in FleetModel(cfg).messages():
        out.append((topic, payload))
        if len(out) >= n:
            break
    return out


def run(msgs: list[tuple[str, bytes]], directory, tmp: Path, with_history: bool) -> tuple[float, float, int]:
    gc.collect()
    storage = NullStorage()
    dead = DeadLetterStore(tmp / f"dl-{time.monotonic_ns()}.db")
    hist = HistoryService() if with_history else None
    safety = hist.fan_out(QueueSafetySink()) if hist else QueueSafetySink()
    p = Pipeline(directory, dead, safety, storage, time_policy=REPLAY)
    if hist:
        hist.start(storage, lambda: p.directory)
        hist.step()
    t0 = time.perf_counter()
    for topic, payload in msgs:
        p.handle(topic, payload, 0.0)
    dt = time.perf_counter() - t0
    drain = 0.0
    stays = 0
    if hist:
        t1 = time.perf_counter()
        while hist.queue:
            time.sleep(0.01)
        drain = time.perf_counter() - t1
        hist.stop()
        stays = hist.stats.stays
    dead.close()
    assert p.stats.accepted == len(msgs), dict(p.stats.dead)
    return len(msgs) / dt, drain, stays


def history_alone(msgs: list[tuple[str, bytes]], directory, tmp: Path) -> tuple[float, int]:
    """Queue every message the fan-out would pass, then time `step()` alone."""
    storage = NullStorage()
    dead = DeadLetterStore(tmp / "dl-alone.db")
    hist = HistoryService(maxlen=len(msgs) + 1)
    p = Pipeline(directory, dead, hist.fan_out(QueueSafetySink()), storage, time_policy=REPLAY)
    hist.bind(storage, lambda: p.directory).step()
    for topic, payload in msgs:
        p.handle(topic, payload, 0.0)
    n = len(hist.queue)
    t0 = time.perf_counter()
    hist.step()
    dt = time.perf_counter() - t0
    dead.close()
    return n / dt, n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=100_000)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        reg = Registry(f"sqlite:///{tmp}/state.db")
        reg.register_site(load_site(SITE_FILE))
        directory = reg.directory()
        reg.close()
        msgs = messages(a.messages)
        ref, his, drains = [], [], []
        stays = 0
        for _ in range(5):
            ref.append(run(msgs, directory, tmp, False)[0])
            r, d, stays = run(msgs, directory, tmp, True)
            his.append(r)
            drains.append(d)
        alone, queued = history_alone(msgs, directory, tmp)
    r, h = statistics.median(ref), statistics.median(his)
    print(f"{len(msgs)} fleet messages (demo estate), pipeline in process, null storage; median of 5")
    print(f"  reference (QueueSafetySink)          {r:10,.0f} msg/s")
    print(f"  with cloud/history fan-out + thread  {h:10,.0f} msg/s   ({h / r:.1%} of reference)")
    print(f"  history queue left after the last message: drained in {statistics.median(drains) * 1000:.0f} ms")
    print(f"  history thread alone: {queued:,} queued messages (status + parking telemetry) at "
          f"{alone:,.0f} msg/s; {stays} stays")


if __name__ == "__main__":
    main()
