"""Alarm engine capacity beside the fleet load, and what waits in front of the engine (issue 11).

The engine evaluates telemetry in one thread. If the fleet sends more than it can evaluate, a FIFO
in front of it (the old `PriorityGate`) grows without bound and the engine judges readings later
and later; the conflating gate (cloud/ingest/conflate.py) holds at most one entry per device, so
the engine always works on current readings. All in one run, on the fleet generator's own messages
(`simulators/fleet.py`, 40 gateways × 4 devices, as `bench/e2e_alarm_latency.py` loads the broker),
the real AlarmEngine on a SQLite file:

1. **capacity**: fleet messages straight into `engine.process`, one thread, as fast as it goes
   (msg/s evaluated); beside it the fleet load the e2e bench offers (`--rate`);
2. **the gate's cost per message** on the ingest thread: conflation vs the old FIFO append;
3. **offered load** `--rate` and `--overload` × `--rate` for `--seconds` each, through the
   conflating gate and, as the reference, through a FIFO gate (main's old behaviour), engine thread
   running: messages waiting at the end, the most ever held, and the age of the newest reading when
   the engine evaluated it (evaluation time − receive time).

Here the engine has a core to itself apart from the producer; inside `cloud serve` it shares the
GIL with ingest, storage and the web, so its capacity there is a fraction of phase 1's.

Run:  .venv/bin/python bench/engine_capacity.py [--rate 2300] [--overload 3] [--seconds 15]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import msgspec
import yaml

from cloud.alarms.config import AlarmSiteConfig
from cloud.alarms.directory import StaticDirectory
from cloud.alarms.engine import AlarmEngine, point_depth
from cloud.alarms.store import AlarmStore
from cloud.ingest.conflate import Conflator
from cloud.ingest.priority import PriorityGate
from cloud.safety import Readings, SafetyMessage
from device_profiles import wire
from simulators.fleet import FleetConfig, FleetModel, site_file_text


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s) + 0.5) - 1))]


class FifoGate:
    """The reference: main's PriorityGate before issue 11 — every telemetry message queued in
    order, handed on while the engine has fewer than `max_ahead` pending."""

    def __init__(self, sink: Any, max_ahead: int = 8) -> None:
        self.sink, self.max_ahead = sink, max_ahead
        self.q: deque[SafetyMessage] = deque()
        self.stop_ev = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)

    def start(self) -> FifoGate:
        self.t.start()
        return self

    def put(self, msg: SafetyMessage) -> None:
        if msg.kind is not wire.Kind.TELEMETRY:
            self.sink.put(msg)
        else:
            self.q.append(msg)

    def _run(self) -> None:
        while not self.stop_ev.is_set():
            room = self.max_ahead - self.sink.backlog()
            if not self.q or room <= 0:
                time.sleep(0.001)
                continue
            for _ in range(room):
                try:
                    self.sink.put(self.q.popleft())
                except IndexError:
                    break

    def held(self) -> int:
        return len(self.q)

    def stop(self) -> None:
        self.stop_ev.set()
        self.t.join(5)


class TimedEngine(AlarmEngine):
    """Records, for every message it evaluates, how old its newest reading is by then."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.ages: list[float] = []
        self.covered = 0  # fleet messages the evaluated messages stood for

    def process(self, msg: SafetyMessage) -> None:
        super().process(msg)
        if msg.kind is wire.Kind.TELEMETRY:
            self.ages.append(time.time() - msg.received)
            self.covered += msg.payload.merged if isinstance(msg.payload, Readings) else 1


def fleet(tmp: Path, gateways: int) -> tuple[FleetModel, AlarmSiteConfig]:
    model = FleetModel(FleetConfig(site="fleet", gateways=gateways))
    doc = yaml.safe_load(site_file_text(model.site, model.topology))
    devices = [{"id": d["id"], "profile": d["profile"], "gateway": g["id"]} for g in doc["gateways"]
               for d in g["devices"]]
    return model, AlarmSiteConfig.model_validate({"site": "fleet", "name": "Fleet", "devices": devices,
                                                  "gateway_offline": {"silence": 86400}})


def decoded(model: FleetModel, n: int) -> list[SafetyMessage]:
    """`n` fleet messages as the ingester hands them over (decoded; `fresh` stamps them at hand-over)."""
    out = []
    for topic, payload, _ in model.messages():
        t = wire.parse_topic(topic)
        out.append(SafetyMessage("fleet", t.gateway, t.device, t.kind, wire.decode(t.kind, payload), time.time()))
        if len(out) >= n:
            return out
    return out


def fresh(m: SafetyMessage) -> SafetyMessage:
    """The message as if read and received now (edge ts and receive time)."""
    now = time.time()
    assert not isinstance(m.payload, Readings)
    p = msgspec.structs.replace(m.payload, ts=datetime.fromtimestamp(now - 0.02, UTC))
    return SafetyMessage(m.site, m.gateway, m.device, m.kind, p, now)


def engine(tmp: Path, cfg: AlarmSiteConfig, name: str) -> TimedEngine:
    store = AlarmStore(f"sqlite:///{tmp / (name + '.db')}")
    return TimedEngine(store, StaticDirectory([cfg]), [cfg], restart_grace_s=86400)


def capacity(tmp: Path, gateways: int, n: int) -> tuple[float, int, dict[Any, dict[str, int]]]:
    model, cfg = fleet(tmp, gateways)
    msgs = [fresh(m) for m in decoded(model, n)]
    eng = engine(tmp, cfg, "capacity")
    for m in msgs[: n // 10]:  # warm: tracks and rule caches exist in a running engine
        eng.process(m)
    rest = msgs[n // 10:]
    t = next_tick = time.perf_counter()
    for m in rest:
        eng.process(m)
        if (now := time.perf_counter()) >= next_tick:  # timers and their writes, as the worker does
            eng.tick()
            next_tick = now + eng.tick_s
    eng.tick()
    dt = time.perf_counter() - t
    eng.store.close()
    # What the gate would hold per point for this engine (as learnt in `cloud serve`)
    depths = {k: {pid: eng_depth(eng, k, pid) for pid in pids} for k, pids in seen_points(msgs).items()}
    return len(rest) / dt, len(rest), depths


def seen_points(msgs: list[SafetyMessage]) -> dict[tuple[str, str, str], set[str]]:
    out: dict[tuple[str, str, str], set[str]] = {}
    for m in msgs:
        if isinstance(m.payload, wire.Telemetry) and m.device is not None:
            out.setdefault((m.site, m.gateway, m.device), set()).update(m.payload.values)
    return out


def eng_depth(eng: AlarmEngine, key: tuple[str, str, str], pid: str) -> int:
    ref = eng.directory.lookup(*key)
    assert ref is not None
    by_point, _ = eng.rules_for(key[0], key[2], ref.profile_id)
    return point_depth(by_point, pid)


def put_cost(tmp: Path, gateways: int, n: int, depths: dict[Any, dict[str, int]]) -> tuple[float, float]:
    """µs per message on the ingest thread: Conflator.add (under the gate's lock, holding what the
    engine's rules read) vs deque.append (the old FIFO)."""
    model, _ = fleet(tmp, gateways)
    msgs = [m for m in decoded(model, n) if m.kind is wire.Kind.TELEMETRY]
    c, lock = Conflator(depths=depths), threading.Lock()
    t = time.perf_counter()
    for m in msgs:
        with lock:
            c.add(m)
    conf = (time.perf_counter() - t) / len(msgs) * 1e6
    q: deque[SafetyMessage] = deque()
    t = time.perf_counter()
    for m in msgs:
        q.append(m)
    fifo = (time.perf_counter() - t) / len(msgs) * 1e6
    return conf, fifo


def offered(tmp: Path, gateways: int, rate: float, seconds: float, conflate: bool) -> dict[str, Any]:
    model, cfg = fleet(tmp, gateways)
    src = iter(decoded(model, int(rate * seconds) + 1000))
    eng = engine(tmp, cfg, f"load-{rate:.0f}-{conflate}")
    eng.start()
    gate: Any = PriorityGate(eng, depths=eng.point_depths).start() if conflate else FifoGate(eng).start()
    held_max, sent = 0, 0
    t0 = time.perf_counter()
    next_check = t0
    while (now := time.perf_counter()) - t0 < seconds:
        target = int((now - t0) * rate)
        while sent < target:
            gate.put(fresh(next(src)))
            sent += 1
        if now >= next_check:
            held = gate.stats()["held_devices"] if conflate else gate.held()
            held_max, next_check = max(held_max, held), now + 0.05
        time.sleep(0.002)
    secs = time.perf_counter() - t0
    held_end = gate.stats()["held_devices"] if conflate else gate.held()
    evaluated, covered, ages = len(eng.ages), eng.covered, list(eng.ages)
    gate.stop() if not conflate else gate.stop(0.5)
    eng.stop()
    eng.store.close()
    return {"sent": sent, "secs": secs, "held_end": held_end, "held_max": held_max, "evaluated": evaluated,
            "covered": covered, "ages": ages}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rate", type=float, default=2300.0, help="fleet msg/s (the e2e bench's load)")
    ap.add_argument("--overload", type=float, default=3.0, help="second offered load, × rate")
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--gateways", type=int, default=40)
    ap.add_argument("--messages", type=int, default=40_000, help="messages for the capacity phase")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="engine-capacity-"))

    cap, n, depths = capacity(tmp, a.gateways, a.messages)
    print(f"1. engine capacity: {cap:,.0f} fleet msg/s evaluated, one thread ({n:,} messages)", flush=True)
    if cap > 0 and a.rate > 0:
        print(f"   fleet load {a.rate:,.0f} msg/s = {a.rate / cap:.0%} of it", flush=True)
    conf, fifo = put_cost(tmp, a.gateways, 50_000, depths)
    print(f"2. gate cost on the ingest thread: conflate {conf:.2f} µs/msg, FIFO append {fifo:.2f} µs/msg",
          flush=True)

    hdr = (f"{'3. offered load':<28} {'gate':<9} {'sent/s':>7} {'evaluated':>10} {'covers':>8} {'held max':>9} "
           f"{'held end':>9} {'age p50':>8} {'p99':>8} {'max':>8}")
    print(hdr)
    for rate in (a.rate, a.rate * a.overload):
        for conflate in (True, False):
            r = offered(tmp, a.gateways, rate, a.seconds, conflate)
            ages = r["ages"]
            name = "conflate" if conflate else "FIFO(ref)"
            unit = "entries" if conflate else "msgs"
            if not r["sent"] or not ages:
                print(f"{rate:>10,.0f} msg/s for {a.seconds:.0f} s   {name:<9} no work done (sent {r['sent']},"
                      f" evaluated {len(ages)}): no figures")
                continue
            print(f"{rate:>10,.0f} msg/s for {a.seconds:.0f} s   {name:<9} {r['sent'] / r['secs']:>7,.0f} "
                  f"{r['evaluated']:>7,} {unit[:3]} {r['covered']:>8,} {r['held_max']:>9,} {r['held_end']:>9,} "
                  f"{pct(ages, 50) * 1000:>6.0f}ms {pct(ages, 99) * 1000:>6.0f}ms {max(ages) * 1000:>6.0f}ms",
                  flush=True)
    print("\nheld = telemetry entries (conflate: devices) or messages (FIFO) waiting in front of the engine;"
          "\ncovers = fleet messages the evaluated ones stood for; age = evaluation time − receive time of the"
          "\nnewest reading evaluated. The engine runs here with the producer as its only neighbour.")


if __name__ == "__main__":
    main()
