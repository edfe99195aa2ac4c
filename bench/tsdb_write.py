"""Time-series write path: our line-protocol serialiser + influxdb-client vs `Point` objects,
against VictoriaMetrics accepting prepared line protocol, all in the same run.

    .venv/bin/python bench/tsdb_write.py [--points 200000] [--batch 5000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cloud.tsdb.influx import Influx2Sink
from cloud.tsdb.lineproto import Series, TsPoint, lines
from tests.fixtures.tsdb_servers import make_victoriametrics


def make_points(n: int) -> list[TsPoint]:
    series = [
        Series.make(
            "charger_port",
            {
                "site": "bench",
                "gateway": f"gw-{i // 10:04d}",
                "device": f"chg{i}",
                "port": str(i % 10 + 1),
                "shelter": "shelter-a",
            },
        )
        for i in range(1000)
    ]
    return [
        TsPoint(
            series[i % 1000],
            {"voltage": 55.1 + i % 7, "current": 1.25, "state": "charging", "enabled": True},
            1767225600000 + i,
        )
        for i in range(n)
    ]


def rate(n: int, fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=5000)
    a = ap.parse_args()
    pts = make_points(a.points)
    batches = [pts[i : i + a.batch] for i in range(0, len(pts), a.batch)]
    ser = rate(len(pts), lambda: [lines(b) for b in batches])
    print(f"serialise (cloud.tsdb.lineproto): {ser:10.0f} points/s ({1e6 / ser:.2f} µs/point)")
    with tempfile.TemporaryDirectory() as tmp:
        vm = make_victoriametrics(Path(tmp)).start()
        try:
            import urllib3
            from influxdb_client import InfluxDBClient, Point, WritePrecision
            from influxdb_client.client.write_api import SYNCHRONOUS

            bodies = [lines(b) for b in batches]
            pool = urllib3.PoolManager()
            url = f"{vm.url}/api/v2/write?bucket=b&org=o&precision=ms"
            ref = rate(len(pts), lambda: [pool.request("POST", url, body=b) for b in bodies])
            print(f"VictoriaMetrics, prepared lines (urllib3): {ref:10.0f} points/s  <- reference")

            sink = Influx2Sink(vm.url, "o", "b")
            ours = rate(len(pts), lambda: [sink.write(b) for b in batches])  # type: ignore[func-returns-value]
            print(
                f"Influx2Sink (serialise + influxdb-client): {ours:10.0f} points/s  "
                f"({ours / ref:.2f} of reference)"
            )

            client = InfluxDBClient(url=vm.url, token="none", org="o")
            api = client.write_api(write_options=SYNCHRONOUS)

            def with_points() -> None:
                for b in batches:
                    recs = []
                    for p in b:
                        q = Point(p.series.measurement)
                        for k, v in p.series.tags:
                            q = q.tag(k, v)
                        for f, x in p.fields.items():
                            q = q.field(f, x)
                        recs.append(q.time(p.ts_ms, WritePrecision.MS))
                    api.write(bucket="b", org="o", record=recs,
                              write_precision=WritePrecision.MS)  # type: ignore[arg-type]  # a str constant

            pobj = rate(len(pts), with_points)
            print(
                f"influxdb-client Point objects:            {pobj:10.0f} points/s  "
                f"({pobj / ref:.2f} of reference)"
            )
            client.close()
            sink.close()
        finally:
            vm.stop()


if __name__ == "__main__":
    main()
