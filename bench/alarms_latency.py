"""Alarm latency under load: message into the engine → push dispatched, and → push received.

Background: >= 2,000 routine telemetry messages/s (chargers with 10 ports, nothing alarming)
put into the engine from another thread. Foreground: a cabinet smoke alarm every 40 ms on a
rotating device (raised, pushed over apprise json:// to a local HTTP receiver, then cleared).

References measured in the same run:
- the same alarms with no background load (what the load costs),
- a bare apprise json:// send to the same receiver (the floor of "received"),
- apprise's default per-target throttle: two sends in a row to one target (what we switched off).
Targets: p99 dispatch <= 100 ms (DESIGN.md), vs Alertmanager's 30 s group_wait.

Run:  .venv/bin/python bench/alarms_latency.py [--seconds 20] [--rate 2000]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cloud.alarms.config import AlarmSiteConfig
from cloud.alarms.directory import StaticDirectory
from cloud.alarms.engine import AlarmEngine
from cloud.alarms.store import AlarmStore
from cloud.notify.dispatch import AppriseSender, Dispatcher
from cloud.notify.links import AckSigner
from cloud.safety import SafetyMessage
from device_profiles import wire

DEV_RE = re.compile(r"device (charger-\d+)")


class Receiver:
    def __init__(self) -> None:
        self.arrivals: dict[str, list[float]] = {}
        rec = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                m = DEV_RE.search(body.get("message", ""))
                if m and "RESOLVED" not in body.get("title", ""):
                    rec.arrivals.setdefault(m.group(1), []).append(time.time())
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a: Any) -> None:
                pass

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))] * 1000


def summary(name: str, xs: list[float]) -> str:
    if not xs:
        return f"{name:<44} no samples"
    return (
        f"{name:<44} n={len(xs):<5} p50={pct(xs, 50):7.1f} ms  p95={pct(xs, 95):7.1f} ms  "
        f"p99={pct(xs, 99):7.1f} ms  max={max(xs) * 1000:7.1f} ms"
    )


def run(
    seconds: float, rate: int, n_chargers: int, alarm_every: float, tmp: Path, rec: Receiver
) -> dict[str, Any]:
    cfg = AlarmSiteConfig.model_validate(
        {
            "site": "bench",
            "name": "Bench",
            "people": [{"id": "v1", "name": "V1", "channels": [{"url": f"json://127.0.0.1:{rec.port}/v1"}]}],
            "escalation": {"tiers": [{"tier": 1, "after": 0}], "repeat": 3600},
            "gateway_offline": {"silence": 3600},
            "devices": [
                {"id": f"charger-{i}", "profile": "voltpile-cp10", "gateway": f"gw-{i % 20}"}
                for i in range(n_chargers)
            ],
        }
    )
    store = AlarmStore(f"sqlite:///{tmp / 'alarms.db'}")
    disp = Dispatcher(AppriseSender(), store.log_attempt, workers=8)
    engine = AlarmEngine(
        store, StaticDirectory([cfg]), [cfg], disp, AckSigner("bench-secret-0123456789")
    ).start()
    rec.arrivals.clear()
    stop = threading.Event()
    seqs = [0] * n_chargers

    def background() -> None:
        i = 0
        t_next = time.perf_counter()
        while not stop.is_set():
            d = i % n_chargers
            seqs[d] += 1
            vals: dict[str, wire.Scalar] = {
                f"port.{p}.connector_temp": 30.0 + (i % 7) * 0.1 for p in range(1, 11)
            }
            vals["ambient_temp"] = 25.0
            p = wire.Telemetry(ts=wire.now(), seq=seqs[d], values=vals)
            engine.put(
                SafetyMessage("bench", f"gw-{d % 20}", f"charger-{d}", wire.Kind.TELEMETRY, p, time.time())
            )
            i += 1
            t_next += 1.0 / rate
            delay = t_next - time.perf_counter()
            if delay > 0:
                time.sleep(delay)

    bg = threading.Thread(target=background, daemon=True)
    if rate:
        bg.start()
    sent: dict[str, float] = {}
    t_end = time.time() + seconds
    k = 0
    time.sleep(0.5)
    m0 = engine.counters["messages"]
    t0 = time.time()
    while time.time() < t_end:
        d = k % n_chargers
        dev = f"charger-{d}"
        for val in (True, False):
            seqs[d] += 1
            p = wire.Telemetry(ts=wire.now(), seq=seqs[d], values={"smoke": val})
            now = time.time()
            if val:
                sent[dev] = now
            engine.put(SafetyMessage("bench", f"gw-{d % 20}", dev, wire.Kind.TELEMETRY, p, now))
            time.sleep(alarm_every / 2)
        k += 1
    elapsed = time.time() - t0
    processed = engine.counters["messages"] - m0
    stop.set()
    engine.drain(30)
    time.sleep(1.0)
    engine.stop()
    disp.close()
    received = [rec.arrivals[d][-1] - sent[d] for d in sent if d in rec.arrivals]
    alarms = len(store.list_alarms(limit=100_000))
    store.close()
    return {
        "dispatch": list(disp.dispatch_latency),
        "delivered": list(disp.delivered_latency),
        "received": received,
        "rate": processed / elapsed,
        "alarms": alarms,
        "errors": engine.counters["errors"],
    }


def capacity(tmp: Path, n_chargers: int, n: int = 30_000) -> float:
    """Routine messages/s the engine drains when fed as fast as possible (headroom over the load)."""
    return drain_rate(f"sqlite:///{tmp / 'cap.db'}", n, n_chargers)


def drain_rate(url: str, n: int, chargers: int = 200) -> float:
    """Messages/s an engine on the alarm store at `url` drains: `n` routine charger readings (ten
    port temperatures each, no alarm), fed as fast as `put` takes them."""
    cfg = AlarmSiteConfig.model_validate(
        {
            "site": "bench",
            "gateway_offline": {"silence": 3600},
            "devices": [{"id": f"charger-{i}", "profile": "voltpile-cp10", "gateway": "gw-0"} for i in range(chargers)],
        }
    )
    store = AlarmStore(url)
    engine = AlarmEngine(store, StaticDirectory([cfg]), [cfg])
    msgs = []
    for i in range(n):
        vals: dict[str, wire.Scalar] = {
            f"port.{p}.connector_temp": 30.0 + (i % 7) * 0.1 for p in range(1, 11)
        }
        p = wire.Telemetry(ts=wire.now(), seq=i, values=vals)
        msgs.append(SafetyMessage("bench", "gw-0", f"charger-{i % chargers}", wire.Kind.TELEMETRY, p, 0.0))
    engine.start()
    t = time.perf_counter()
    for m in msgs:
        engine.put(m)
    engine.drain(120)
    rate = n / (time.perf_counter() - t)
    engine.stop()
    store.close()
    return rate


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--rate", type=int, default=2000)
    ap.add_argument("--chargers", type=int, default=200)
    args = ap.parse_args()
    rec = Receiver()
    with tempfile.TemporaryDirectory() as d:
        Path(d, "a").mkdir()
        Path(d, "b").mkdir()
        base = run(min(8.0, args.seconds), 0, args.chargers, 0.08, Path(d) / "a", rec)
        loaded = run(args.seconds, args.rate, args.chargers, 0.08, Path(d) / "b", rec)
        cap = capacity(Path(d), args.chargers)
    s = AppriseSender()
    url = f"json://127.0.0.1:{rec.port}/floor"
    floor = []
    for _ in range(50):
        t = time.time()
        s.send(url, "t", "floor")
        floor.append(time.time() - t)
    import apprise
    from aiosmtpd.controller import Controller

    class Sink:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            return "250 OK"

    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        smtp_port = sock.getsockname()[1]
    ctl = Controller(
        Sink(), hostname="127.0.0.1", port=smtp_port, auth_require_tls=False, auth_callback=lambda *a: True
    )
    ctl.start()
    mail = f"mailto://a:b@127.0.0.1:{smtp_port}?smtp=127.0.0.1&mode=insecure&from=a@b.test&to=c@d.test"
    p = apprise.Apprise.instantiate(mail)  # apprise's defaults: the email plugin throttles
    assert p is not None, mail
    t = time.time()
    p.notify(body="a", title="t")
    p.notify(body="b", title="t")
    throttled = time.time() - t
    t = time.time()
    s.send(mail, "t", "a")
    s.send(mail, "t", "b")
    ours = time.time() - t
    ctl.stop()
    print(
        f"alarm latency, {args.chargers} chargers, smoke alarm every 80 ms (raise + clear), "
        f"SQLite state, apprise json:// to a local receiver"
    )
    print(
        f"background load achieved: {loaded['rate']:.0f} messages/s into the engine (asked {args.rate}); "
        f"alarms raised: {loaded['alarms']}; engine errors: {loaded['errors']}"
    )
    print(f"engine capacity, routine telemetry (10 ports each), fed flat out: {cap:.0f} messages/s")
    print(summary("UNDER LOAD  entered engine → push dispatched", loaded["dispatch"]))
    print(summary("UNDER LOAD  entered engine → send returned ok", loaded["delivered"]))
    print(summary("UNDER LOAD  entered engine → receiver got it", loaded["received"]))
    print(summary("reference: no load, → push dispatched", base["dispatch"]))
    print(summary("reference: no load, → receiver got it", base["received"]))
    print(summary("reference: bare apprise json:// send", floor))
    print(
        f"{'reference: 2 mails to one target, apprise default':<44} {throttled * 1000:7.0f} ms "
        f"(request_rate_per_sec {p.request_rate_per_sec} s)"
    )
    print(f"{'           2 mails to one target, ours (0 s)':<44} {ours * 1000:7.0f} ms")
    print("target: p99 dispatch <= 100 ms; Alertmanager group_wait default 30 000 ms")


if __name__ == "__main__":
    main()
