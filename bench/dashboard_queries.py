"""How long each dashboard panel's InfluxQL takes on InfluxDB 1.x, against a reference in the same run.

Loads `--days` simulated estate days (dashboards.sample_data) into a throw-away InfluxDB 1.x (free
loopback port, temp dir, stopped by PID), then times every panel target (median of `--runs`) for a
24 h and a 7 d range. Reference: a plain `count()` over the largest measurement (charger_port) for the
same range, i.e. the cheapest full scan of the same data; figures are printed as ms and × reference.
Usage: .venv/bin/python bench/dashboard_queries.py [--days 7] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dashboards.build import build_all, to_json
from dashboards.ingest_day import ingest_day
from dashboards.sample_data import simulate_day
from dashboards.templating import effective_interval, interpolate, time_filter
from tests.fixtures.tsdb_servers import make_influxdb1

DAY_MS = 86_400_000


def timed(db, q: str, runs: int) -> float:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        db.query(q)
        out.append((time.perf_counter() - t) * 1000)
    return statistics.median(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = make_influxdb1(Path(tmp)).start()
        try:
            db.create_database()
            end = (int(time.time() * 1000) // 60_000) * 60_000
            t = time.perf_counter()
            n = 0
            for i in range(a.days):  # through the cloud ingester's pipeline, like the tests
                got = ingest_day(simulate_day(end - i * DAY_MS, seed=i), db.url, db.database, Path(tmp) / f"ingest-{i}")
                n += got.accepted + got.lines
            print(f"loaded {n} messages + lines ({a.days} simulated days) in {time.perf_counter() - t:.1f} s")
            for label, span_ms, auto in (("24h", DAY_MS, "5m"), ("7d", 7 * DAY_MS, "30m")):
                tf = time_filter(end - span_ms, end)
                ref = timed(db, f'SELECT count("connector_temp") FROM "charger_port" WHERE {tf}', a.runs)
                print(f"\n== range {label}: reference count() scan of charger_port = {ref:.1f} ms")
                print(f"{'dashboard / panel / target':70} {'ms':>8} {'× ref':>7}")
                total = 0.0
                for name, d in build_all().items():
                    dash = json.loads(to_json(d))
                    variables: dict[str, list[str]] = {}
                    for v in dash["templating"]["list"]:
                        r = db.query(interpolate(v["query"], variables, tf, auto))["results"][0]
                        variables[v["name"]] = sorted({x[1] for s in r.get("series", []) for x in s["values"]})
                    for p in dash["panels"]:
                        iv = effective_interval(auto, p.get("interval"))
                        for tg in p["targets"]:
                            ms = timed(db, interpolate(tg["query"], variables, tf, iv), a.runs)
                            total += ms
                            print(
                                f"{(name + ' / ' + p['title'] + ' / ' + tg['refId'])[:70]:70} {ms:8.1f} {ms / ref:7.1f}"
                            )
                print(f"{'all panels, one dashboard refresh each':70} {total:8.1f} {total / ref:7.1f}")
        finally:
            db.stop()


if __name__ == "__main__":
    main()
