"""What keeping rule windows for a takeover costs the alarm engine (issue 13, branch `resume`).

The engine saves its changed rate-of-rise and comm-error windows with the last-seen flush (every
5 s; cloud/alarms/resume.py). On the fleet generator's messages (`bench/engine_capacity.py`'s
capacity phase: 40 gateways × 4 devices, a real AlarmEngine on a SQLite file, ticks as the worker
does them, the flush on the engine thread as when driven by hand, so its whole cost is counted):

1. capacity (fleet msg/s evaluated) with the windows saved, against the same engine with
   `flush_windows` turned off (the reference: main's behaviour), alternating `--rounds` times;
2. one flush of every window the fleet has: rows, ms, and reading them back (a takeover's load).

Run:  .venv/bin/python bench/resume_flush.py [--messages 40000] [--rounds 3] [--db sqlite|URL]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.engine_capacity import decoded, engine, fleet, fresh
from cloud.alarms.engine import owns_everything


def run(tmp: Path, gateways: int, n: int, keep: bool, name: str) -> tuple[float, int]:
    model, cfg = fleet(tmp, gateways)
    msgs = [fresh(m) for m in decoded(model, n)]
    eng = engine(tmp, cfg, name)
    if not keep:
        eng.flush_windows = lambda mine=None: None  # type: ignore[method-assign]
    for m in msgs[: n // 10]:
        eng.process(m)
    rest = msgs[n // 10:]
    t = next_tick = time.perf_counter()
    for m in rest:
        eng.process(m)
        if (now := time.perf_counter()) >= next_tick:
            eng.tick()
            next_tick = now + eng.tick_s
    eng.tick()
    dt = time.perf_counter() - t
    rows = len(eng.resume_store.load("rate", owns_everything)) if keep else 0
    eng.store.close()
    return len(rest) / dt, rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=40_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--gateways", type=int, default=40)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="resume-flush-"))
    keep: list[float] = []
    ref: list[float] = []
    rows = 0
    for i in range(a.rounds):
        r, _ = run(tmp, a.gateways, a.messages, False, f"ref{i}")
        ref.append(r)
        k, rows = run(tmp, a.gateways, a.messages, True, f"keep{i}")
        keep.append(k)
        print(f"round {i + 1}: windows kept {k:,.0f} msg/s, reference (not kept) {r:,.0f} msg/s", flush=True)
    if not rows or min(ref) <= 0:
        print("no windows were saved (or the reference did no work): no ratio")
        return
    mk, mr = statistics.median(keep), statistics.median(ref)
    print(f"1. capacity, median of {a.rounds}: windows kept {mk:,.0f} msg/s, reference {mr:,.0f} msg/s: "
          f"ratio {mk / mr:.2f} ({rows} rate windows saved)")

    # 2. one full flush and its reading back
    model, cfg = fleet(tmp, a.gateways)
    eng = engine(tmp, cfg, "full")
    for m in [fresh(m) for m in decoded(model, a.messages)]:
        eng.process(m)
    n = len(eng._rate_dirty) + len(eng._comm_dirty)
    t0 = time.perf_counter()
    eng.flush_windows()
    t1 = time.perf_counter()
    got = eng._load_windows_rows("rate", owns_everything), eng._load_windows_rows("comm", owns_everything)
    t2 = time.perf_counter()
    eng._restore_windows(*got)
    t3 = time.perf_counter()
    if not n:
        print("2. nothing to flush: no figures")
        return
    print(f"2. one flush of {n} windows: {(t1 - t0) * 1000:.0f} ms; reading them back {(t2 - t1) * 1000:.0f} ms, "
          f"restoring {(t3 - t2) * 1000:.0f} ms")
    eng.store.close()


if __name__ == "__main__":
    main()
