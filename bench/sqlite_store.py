"""The embedded SQLite time-series store against the load of the fleet, in the same run: the current
layout (`cloud/tsdb/sqlite.py`: series table + integer-keyed samples) against the first layout (one
table keyed by measurement, tags JSON, field and time; reimplemented here as the reference), on the
same points: the fleet generator's routine mix through the real ingest pipeline.

Prints points/s and CPU µs per point for each, and what the fleet needs: at `--rate` msg/s the
fleet makes `points per message × rate` points/s; a store below that falls behind for good.

    .venv/bin/python bench/sqlite_store.py [--messages 40000] [--batch 2000] [--rate 2300]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cloud.ingest.dead_letter import DeadLetterStore
from cloud.ingest.pipeline import Pipeline
from cloud.ingest.safety_queue import QueueSafetySink
from cloud.site_config import load_site
from cloud.state.registry import Registry
from cloud.tsdb.lineproto import TsPoint
from cloud.tsdb.sqlite import SqliteSink
from simulators.fleet import FleetConfig, FleetModel, site_file_text


class FirstLayoutSink:
    """The store as it was first written: tags JSON in every row's primary key (the reference)."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS points (measurement TEXT NOT NULL, tags TEXT NOT NULL,"
            " field TEXT NOT NULL, ts INTEGER NOT NULL, value, PRIMARY KEY (measurement, tags, field, ts))"
            " WITHOUT ROWID"
        )

    def write(self, points: list[TsPoint]) -> None:
        rows = []
        for p in points:
            tags = json.dumps(dict(p.series.tags), sort_keys=True, separators=(",", ":"))
            for f, v in p.fields.items():
                rows.append((p.series.measurement, tags, f, p.ts_ms, v))
        self._db.executemany("INSERT OR REPLACE INTO points VALUES (?,?,?,?,?)", rows)
        self._db.commit()


class Collect:
    def __init__(self) -> None:
        self.points: list[TsPoint] = []

    def put(self, points: list[TsPoint], received: float | None = None) -> None:
        self.points.extend(points)


def fleet_points(tmp: Path, n: int) -> tuple[list[TsPoint], int]:
    model = FleetModel(FleetConfig(site="bench", gateways=100, sim_start=datetime(2026, 1, 1, tzinfo=UTC)))
    (tmp / "site.yaml").write_text(site_file_text("bench", model.topology))
    reg = Registry(f"sqlite:///{tmp}/state.db")
    reg.register_site(load_site(tmp / "site.yaml"))
    out = Collect()
    p = Pipeline(reg.directory(), DeadLetterStore(None), QueueSafetySink(), out)
    msgs: list[tuple[str, bytes]] = []
    while len(msgs) < n:
        msgs.extend((t, pl) for t, pl, _ in model.tick_messages())
    for t, pl in msgs[:n]:
        p.handle(t, pl, time.time())
    reg.close()
    return out.points, n


def run(sink: object, points: list[TsPoint], batch: int) -> tuple[float, float]:
    write = sink.write  # type: ignore[attr-defined]
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(0, len(points), batch):
        write(points[i : i + batch])
    return len(points) / (time.perf_counter() - t0), (time.process_time() - c0) / len(points) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=40_000)
    ap.add_argument("--batch", type=int, default=2000)
    ap.add_argument("--rate", type=float, default=2300.0, help="fleet msg/s the store must keep up with")
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        points, n = fleet_points(tmp, a.messages)
        if not points:
            raise SystemExit("the fleet produced no points: nothing to compare")
        per_msg = len(points) / n
        need = per_msg * a.rate
        print(f"{len(points)} points from {n} fleet messages ({per_msg:.2f} per message); "
              f"at {a.rate:.0f} msg/s the fleet needs {need:.0f} points/s; batches of {a.batch}")
        res: dict[str, list[tuple[float, float]]] = {"first layout (reference)": [], "current": []}
        for r in range(a.rounds):  # alternate, so both sides see the same machine
            res["first layout (reference)"].append(run(FirstLayoutSink(tmp / f"first{r}.db"), points, a.batch))
            cur = SqliteSink(tmp / f"current{r}.db")
            res["current"].append(run(cur, points, a.batch))
            cur.close()
        for name, rs in res.items():
            best = max(rs)
            print(f"  {name:26s}: {best[0]:8.0f} points/s, {min(c for _, c in rs):5.1f} µs CPU/point "
                  f"({best[0] / need:4.1f}x the fleet's need)")
        ref, cur_best = max(res["first layout (reference)"]), max(res["current"])
        print(f"  current / first layout: {cur_best[0] / ref[0]:.2f}x the points/s")


if __name__ == "__main__":
    main()
