"""End-to-end alarm latency (issue #5): simulator flips a physical value → push at a local receiver.

The whole chain runs for real: a mosquitto started here (free port, temp dir, stopped by PID), the
demo estate's simulators with one edge agent process per gateway polling safety points every 1 s,
the ingester, the alarm engine, apprise `json://` to a local HTTP receiver that timestamps arrivals
(`shelterwatch.demo.DemoStack`, so the demo, the browser tests and this bench share one wiring).

Phases (all in one run, so the figures compare on the same machine state):
1. reference: alarm cycles with no other traffic;
2. loaded: the same cycles while a fleet generator process (other, registered gateways) loads the
   broker with >= 2,000 msg/s of routine telemetry;
3. gateway lost: SIGKILL an edge agent (its TCP connection drops without DISCONNECT, the broker
   publishes its last will) → time to the offline push; then the agent is restarted.

A cycle: set sprinkler waterflow in the simulator (retard overridden to 0 s), t0 = the flip; wait for
the push; clear; wait for the RESOLVED push. The two sprinkler monitors (one per shelter gateway)
cycle in parallel to keep the run short. Reported: p50/p95/p99 of push arrival − t0 (end to end) and
of push dispatched − ingester received (`Dispatcher.dispatch_latency`, origin = SafetyMessage.received).
Targets: p99 <= 2 s end to end, p99 <= 100 ms ingest → dispatch.

Run:  .venv/bin/python bench/e2e_alarm_latency.py [--cycles 200] [--ref-cycles 60] [--rate 2200]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import shelterwatch.demo as demo
from tests.fixtures.servers import ServerProcess, free_port

SPRINKLERS = ("spk1", "spk2")  # cloud ids; gw-shelter-a and gw-shelter-b
FLEET_SCRIPT = """
import signal, sys, threading
from simulators.fleet import FleetConfig, publish_fleet
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *a: stop.set())
cfg = FleetConfig(broker=sys.argv[1], site_file=sys.argv[2], rate=float(sys.argv[3]), duration=900.0, connections=8)
r = publish_fleet(cfg, stop=stop)
print(f"{r.published} {r.seconds:.3f}", flush=True)
"""


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s) + 0.5) - 1))]


def row(name: str, xs: list[float], unit_ms: bool = True) -> str:
    k = 1000.0 if unit_ms else 1.0
    if not xs:
        return f"{name:<44} {'n=0':>6}"
    return (f"{name:<44} {len(xs):>6} {pct(xs, 50) * k:>9.0f} {pct(xs, 95) * k:>9.0f} {pct(xs, 99) * k:>9.0f}"
            f" {max(xs) * k:>9.0f}")


class Cycler:
    """Runs waterflow alarm cycles on one sprinkler, reading pushes from the demo's Inbox."""

    timeout_s = 10.0

    def __init__(self, stack: demo.DemoStack, cid: str) -> None:
        self.stack, self.cid, self.timeout = stack, cid, self.timeout_s
        self.model = stack.sim_device(cid).model
        self.e2e: list[float] = []
        self.timeouts = 0
        self.shelter = {"spk1": "shelter-a", "spk2": "shelter-b"}[cid]

    def _mine(self, r: dict[str, Any]) -> bool:
        return "waterflow" in r["title"].lower() and (self.cid in r["body"] or self.shelter in r["body"])

    def _wait(self, start_idx: int, resolved: bool) -> dict[str, Any] | None:
        inbox = self.stack.inbox
        assert inbox is not None
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            for r in inbox.to("volunteer")[start_idx:]:
                if self._mine(r) and (("RESOLVED" in r["title"]) == resolved):
                    return r
            time.sleep(0.005)
        return None

    def run(self, n: int) -> None:
        inbox = self.stack.inbox
        assert inbox is not None
        for _ in range(n):
            idx = len(inbox.to("volunteer"))
            t0 = time.time()
            self.model.set_waterflow(True)
            r = self._wait(idx, resolved=False)
            if r is None:
                self.timeouts += 1
            else:
                self.e2e.append(r["at"] - t0)
            idx = len(inbox.to("volunteer"))
            self.model.set_waterflow(False)
            if self._wait(idx, resolved=True) is None:
                self.timeouts += 1
            time.sleep(0.2)  # let pressure settle a little (the riser model lags)


def phase(stack: demo.DemoStack, cycles: int) -> tuple[list[float], list[float], int, float]:
    """Both sprinklers in parallel, `cycles` in total. Returns e2e, ingest→dispatch, timeouts, seconds."""
    assert stack.dispatcher is not None
    d0 = len(stack.dispatcher.dispatch_latency)
    cyclers = [Cycler(stack, c) for c in SPRINKLERS]
    per = [cycles // 2 + cycles % 2, cycles // 2]
    # Daemon threads: SIGTERM (KeyboardInterrupt in the main thread) must not wait for the cycles.
    ts = [threading.Thread(target=c.run, args=(k,), daemon=True) for c, k in zip(cyclers, per, strict=True)]
    t = time.monotonic()
    for th in ts:
        th.start()
    for th in ts:
        th.join()
    secs = time.monotonic() - t
    disp = list(stack.dispatcher.dispatch_latency)[d0:]
    return [x for c in cyclers for x in c.e2e], disp, sum(c.timeouts for c in cyclers), secs


def gateway_lost(stack: demo.DemoStack, trials: int) -> list[float]:
    """SIGKILL the garage's edge agent → the broker's will → offline push; restart and wait online."""
    inbox = stack.inbox
    assert inbox is not None
    out = []
    name, gw = "garage", demo.GATEWAYS["garage"][0]
    for _ in range(trials):
        p = stack.agents[name]
        idx = len(inbox.to("volunteer"))
        t0 = time.time()
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(10)
        deadline = time.monotonic() + 90
        got = None
        while time.monotonic() < deadline and got is None:
            for r in inbox.to("volunteer")[idx:]:
                if "RESOLVED" not in r["title"] and "waterflow" not in r["title"].lower():
                    got = r
                    break
            time.sleep(0.01)
        if got is None:
            print("gateway lost: no push within 90 s", flush=True)
        else:
            out.append(got["at"] - t0)
            print(f"gateway lost: offline push after {got['at'] - t0:.2f} s: {got['title']}", flush=True)
        cfg = stack.workdir / f"edge-{gw}.yaml"
        logf = open(stack.workdir / f"edge-{gw}.log", "ab")  # noqa: SIM115 - owned by the child
        stack.agents[name] = subprocess.Popen([sys.executable, "-m", "edge_agent", "run", str(cfg)],
                                              stdout=logf, stderr=subprocess.STDOUT, start_new_session=True,
                                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
        logf.close()
        # Wait for the new agent's birth to clear the offline alarm. `wait_live` alone is not
        # enough: the registry ignores the will (its ts is the agent's start, older than the birth
        # it follows), so it still says "online" and the next kill could hit an agent that has not
        # connected yet (no will, no push: a false "no push").
        deadline = time.monotonic() + 60
        def offline() -> bool:
            active = stack.store.list_alarms(site=demo.SITE, active=True)
            return any(a.gateway == gw and a.rule == "gateway_offline" for a in active)

        while time.monotonic() < deadline and offline():
            time.sleep(0.05)
        stack.wait_live(60)
        time.sleep(1.0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cycles", type=int, default=200, help="alarm cycles under fleet load")
    ap.add_argument("--ref-cycles", type=int, default=60, help="alarm cycles without load (reference)")
    ap.add_argument("--rate", type=float, default=2200.0, help="fleet messages/s")
    ap.add_argument("--fleet-gateways", type=int, default=40)
    ap.add_argument("--lost-trials", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for one push")
    ap.add_argument("--single-lane", action="store_true",
                    help="ingest on one MQTT connection (no safety lane), for comparison")
    a = ap.parse_args()
    # SIGTERM (e.g. `timeout`) unwinds through `finally`, so the broker, agents and fleet are stopped.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    Cycler.timeout_s = a.timeout

    demo.FAST_POLL["safety"] = 1.0  # issue #5: 1 s safety polling
    tmp = Path(tempfile.mkdtemp(prefix="e2e-bench-"))
    port = free_port()
    mosq_dir = tmp / "mosquitto"
    mosq_dir.mkdir()
    (mosq_dir / "m.conf").write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                                     "max_inflight_messages 0\nmax_queued_messages 100000\n")
    broker = ServerProcess("mosquitto", ["mosquitto", "-c", str(mosq_dir / "m.conf")], port=port, workdir=mosq_dir)
    broker.start()
    url = f"mqtt://127.0.0.1:{port}"
    stack = demo.DemoStack(demo.DemoOptions(workdir=tmp / "stack", broker_url=url, waterflow_retard_s=0.0,
                                            tier2_after_s=3600.0, repeat_s=3600.0,
                                            fire_lane_for_s=86400.0,  # only waterflow and offline push
                                            safety_lane=not a.single_lane))
    fleet: subprocess.Popen[str] | None = None
    try:
        stack.start()
        from cloud.site_config import load_site
        from simulators.fleet import FleetConfig, FleetModel, site_file_text

        model = FleetModel(FleetConfig(site="fleet", gateways=a.fleet_gateways))
        fleet_site = tmp / "fleet-site.yaml"
        fleet_site.write_text(site_file_text(model.site, model.topology))
        stack.registry.register_site(load_site(fleet_site))
        stack.wait_live(90)
        time.sleep(3.0)
        print(f"estate live; mosquitto on {port}; work dir {tmp}", flush=True)

        ref_e2e, ref_disp, ref_to, ref_s = phase(stack, a.ref_cycles)
        print(f"reference: {a.ref_cycles} cycles in {ref_s:.0f} s, {ref_to} timeouts", flush=True)
        print(row("  flip → push received", ref_e2e), flush=True)
        print(row("  ingest → dispatch", ref_disp), flush=True)

        fleet = subprocess.Popen([sys.executable, "-c", FLEET_SCRIPT, url, str(fleet_site), str(a.rate)],
                                 stdout=subprocess.PIPE, text=True, start_new_session=True)
        time.sleep(3.0)
        ing0 = _ingested(stack)
        ld_e2e, ld_disp, ld_to, ld_s = phase(stack, a.cycles)
        ing1 = _ingested(stack)
        fleet.send_signal(signal.SIGTERM)
        out, _ = fleet.communicate(timeout=60)
        published, fsecs = (float(x) for x in out.split()[:2])
        fleet = None
        print(f"loaded: {a.cycles} cycles in {ld_s:.0f} s, {ld_to} timeouts; fleet published "
              f"{published:.0f} msgs in {fsecs:.0f} s = {published / fsecs:.0f} msg/s", flush=True)
        print(row("  flip → push received", ld_e2e), flush=True)
        print(row("  ingest → dispatch", ld_disp), flush=True)
        if ing0 is not None and ing1 is not None:
            print(f"  ingester received {(ing1 - ing0) / ld_s:.0f} msg/s over the loaded phase", flush=True)

        lost = gateway_lost(stack, a.lost_trials)
    finally:
        if fleet is not None:
            fleet.kill()
            fleet.wait()
        stack.stop()
        broker.stop()

    hdr = f"{'latency (ms)':<44} {'n':>6} {'p50':>9} {'p95':>9} {'p99':>9} {'max':>9}"
    print()
    print(hdr)
    print("-" * len(hdr))
    print(row("reference, no load: flip → push received", ref_e2e))
    print(row(f"loaded {published / fsecs:.0f} msg/s: flip → push received", ld_e2e))
    print(row("reference, no load: ingest → dispatch", ref_disp))
    print(row("loaded: ingest → dispatch", ld_disp))
    print(row("gateway SIGKILL → offline push", lost))
    if ing1 is not None and ing0 is not None:
        print(f"\ningester counter over the loaded phase: {ing1 - ing0:.0f} ({(ing1 - ing0) / ld_s:.0f}/s)")
    print("targets: p99 flip → push <= 2000 ms; p99 ingest → dispatch <= 100 ms; gateway lost <= 60 s")


def _ingested(stack: demo.DemoStack) -> float | None:
    """Messages the ingester received, to show the fleet load reached it (not just the broker)."""
    v = stack.ingest.stats().get("received")
    return float(v) if isinstance(v, int | float) else None


if __name__ == "__main__":
    main()
