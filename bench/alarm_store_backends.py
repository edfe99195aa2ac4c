"""Alarm state on PostgreSQL against SQLite (the reference), measured in the same run.

Prints, per backend: raise+clear cycles per second (one writer), a last-seen flush of 10,000
devices (what one engine tick writes at most, every 5 s), and the engine's drain rate of routine
telemetry (the hot path: it must not touch the database at all, so both backends should match).
PostgreSQL is a throw-away server in a temp dir (tests/fixtures/postgres.py), local loopback.

    .venv/bin/python -m bench.alarm_store_backends [--cycles 500] [--messages 20000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.alarms_latency import drain_rate
from cloud.alarms.store import Alarm, AlarmStore


def _alarm(i: int) -> Alarm:
    return Alarm(id=0, site="b", gateway="g", device=f"d{i % 50}", rule="smoke", instance="", kind="state",
                 severity="critical", name="Smoke", name_zh="烟感", sprinkler=False, active=True, acked=False,
                 raised_at=float(i))


def cycles(url: str, n: int) -> float:
    st = AlarmStore(url)
    t = time.perf_counter()
    for i in range(n):
        a, _ = st.raise_alarm(_alarm(i), float(i))
        st.clear(a.id, float(i) + 0.5)
    rate = n / (time.perf_counter() - t)
    st.close()
    return rate


def flush_ms(url: str, devices: int = 10_000) -> float:
    st = AlarmStore(url)
    rows = {("b", f"g{i % 100}", f"d{i}"): 1_800_000_000.0 + i for i in range(devices)}
    st.save_seen(rows)  # first write inserts; the timed one updates, as every later flush does
    rows = {k: v + 5 for k, v in rows.items()}
    t = time.perf_counter()
    st.save_seen(rows)
    ms = (time.perf_counter() - t) * 1000
    st.close()
    return ms


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cycles", type=int, default=500)
    ap.add_argument("--messages", type=int, default=20_000)
    args = ap.parse_args()
    from tests.fixtures.postgres import make_postgres, pg_bindir

    if pg_bindir() is None:
        raise SystemExit("PostgreSQL server binaries not found (apt-get install postgresql)")
    server, top = make_postgres()
    server.start()
    try:
        with tempfile.TemporaryDirectory() as d:
            urls = {
                "sqlite (reference)": lambda name: f"sqlite:///{Path(d) / name}.db",
                "postgresql": lambda name: server.url(server.create_database()),
            }
            drain_rate(urls["sqlite (reference)"]("warm"), 2000)  # imports, profile catalog, JIT-less warm-up
            print(f"{'backend':<20} {'raise+clear/s':>14} {'flush 10k seen':>15} {'engine msg/s':>13}")
            for label, mk in urls.items():
                c = cycles(mk("c"), args.cycles)
                f = flush_ms(mk("f"))
                r = drain_rate(mk("r"), args.messages)
                print(f"{label:<20} {c:>14.0f} {f:>12.0f} ms {r:>13.0f}")
    finally:
        server.stop()
        import shutil

        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    main()
