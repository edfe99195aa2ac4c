"""The cluster tier (issue 13): throughput with every reading stored, takeover time, flip → push.

One run, all on this machine (servers on loopback, started here, stopped by PID):

1. **Throughput, every reading stored.** A backlog of M fleet messages (QoS 1, 160 devices) waits in
   the broker while the consumers are down; then they start and the time until the last reading is
   stored is measured (from the first message received, so process start-up does not count), three
   ways: mosquitto + 1 ingester (`shelterwatch cloud ingest`: the single-machine path, the reference),
   the 3-node NATS cluster + 1 `cloud serve` replica, and the cluster + 2 replicas. The store is
   VictoriaMetrics for all three; acknowledgements wait for the durability point on every path.
2. **Takeover.** Two replicas under fleet load, a real edge agent with a simulated sprinkler monitor
   and a simulated 10-port charger on its RS-485 bus. A flip is two alarms at once, one of each path:
   the waterflow switch on (an event, safety lane) and port 1's connector at 72 °C (telemetry; the
   reading that crosses 70 °C is urgent telemetry on the safety lane, docs/wire.md, the rest bulk;
   "Charging port overheating" raises above 70 °C held 5 s, so its flip → push includes those 5 s
   and the edge's poll). Reference: flips with nothing broken. Then, `--kills` times: `kill -9`
   the replica that owns the edge's partition, flip at once, and measure the takeover (kill → the
   survivor holds the partition, read from the lease table) and flip → push of both alarms at the
   phone stand-in; then restart it.

Run:  .venv/bin/python bench/cluster.py [--messages 40000] [--kills 10] [--load-rate 500]
Targets (DESIGN.md §8): takeover ≤ 10 s, alarms of that window pushed ≤ 2 s after it, flip → push
p99 ≤ 2 s with no failure at ≥ 2,000 msg/s.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml
from sqlalchemy import text

from simulators.fleet import FleetConfig, FleetModel, publish_fleet, site_file_text
from tests.fixtures.modbus_slave import RtuBus, SimDevice
from tests.fixtures.nats_cluster import make_nats_cluster
from tests.fixtures.postgres import make_postgres
from tests.fixtures.servers import free_port, make_mosquitto
from tests.fixtures.tsdb_servers import make_victoriametrics
from tests.integration.cluster_support import (
    ALARM_CHG,
    ALARM_DEV,
    ALARM_GW,
    RECENT_START,
    ClusterDb,
    FleetRun,
    PushReceiver,
    Replica,
    alarm_file_text,
    alarm_partition,
    edge_status,
    scrape,
)
from tests.integration.edge.helpers import AgentProcess
from tests.polling import wait_until

PARTITIONS = 16
GATEWAYS = 40


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s) + 0.5) - 1))]


def site_files(root: Path, site: str, receiver_url: str, with_edge: bool) -> tuple[Path, Path, FleetModel]:
    model = FleetModel(FleetConfig(site=site, gateways=GATEWAYS, sim_start=RECENT_START, seed=3))
    doc = yaml.safe_load(site_file_text(site, model.topology, auto_enrol=False))
    if with_edge:
        doc["gateways"].append({"id": ALARM_GW, "devices": [{"id": ALARM_DEV, "profile": "nanfang-fsm8"},
                                                            {"id": ALARM_CHG, "profile": "voltpile-cp10"}]})
    sf, af = root / f"{site}.yaml", root / f"{site}-alarms.yaml"
    sf.write_text(yaml.safe_dump(doc, sort_keys=False))
    af.write_text(alarm_file_text(site, receiver_url))
    return sf, af, model


def backlog(broker: str, site: str, model: FleetModel, n: int) -> int:
    cfg = FleetConfig(broker=broker, site=site, gateways=GATEWAYS, sim_start=RECENT_START, seed=3, rate=0,
                      duration=None, max_messages=n, connections=8, client_prefix=f"bench-{site}", keepalive_s=5)
    res = publish_fleet(cfg, model=model)
    if res.unacked:
        raise SystemExit(f"{res.unacked} backlog messages not acknowledged by the broker")
    return res.published


def drain(ports: list[int], n: int, timeout: float = 900.0) -> tuple[float, float]:
    """Wait until the consumers behind these metrics ports accepted `n` messages and stored every
    point; (seconds from the first message received, messages/s)."""
    deadline = time.monotonic() + timeout
    t0 = None
    while time.monotonic() < deadline:
        rx = sum(scrape(p, "received_total") for p in ports)
        if t0 is None and rx > 0:
            t0 = time.monotonic()
        acc = sum(scrape(p, "accepted_total") for p in ports)
        pending = sum(scrape(p, "points_pending") for p in ports)
        if acc >= n and pending == 0 and t0 is not None:
            dt = time.monotonic() - t0
            return dt, n / dt if dt > 0 else 0.0
        time.sleep(0.25)
    raise SystemExit(f"not drained in {timeout:.0f} s: accepted {acc} of {n}")


class MosquittoIngester:
    """`shelterwatch cloud ingest` on the single-machine path."""

    def __init__(self, root: Path, broker: str, tsdb: str, state_db: str) -> None:
        self.metrics_port = free_port()
        self.argv = [sys.executable, "-m", "shelterwatch.cli", "cloud", "ingest", "--broker", broker,
                     "--tsdb", tsdb, "--state-db", state_db, "--spool-dir", str(root / "spool"),
                     "--client-id", "bench-ingest", "--group", "", "--metrics-port", str(self.metrics_port)]
        self.log = root / "ingest.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen(self.argv, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        wait_until(lambda: scrape(self.metrics_port, "connected") == 1.0, 60, "the ingester to subscribe")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)


def throughput(root: Path, cluster: Any, mosq: Any, vm: Any, pg: Any, receiver: PushReceiver,
               n: int) -> dict[str, float]:
    tsdb = f"influx2://127.0.0.1:{vm.port}?bucket=sw&org=sw"
    out: dict[str, float] = {}
    # 1. mosquitto + 1 ingester: subscribe once (the broker keeps the session), then the backlog
    from cloud.site_config import load_site
    from cloud.state.registry import Registry

    sf, _af, model = site_files(root, "bench-mq", receiver.url, False)
    state = f"sqlite:///{root}/mq-state.db"
    reg = Registry(state)
    reg.register_site(load_site(sf))
    reg.close()
    (root / "mq").mkdir()
    ing = MosquittoIngester(root / "mq", mosq.url, tsdb, state)
    ing.start()
    ing.stop()
    sent = backlog(mosq.url, "bench-mq", model, n)
    ing.start()
    try:
        dt, rate = drain([ing.metrics_port], sent)
    finally:
        ing.stop()
    out["mosquitto + 1 ingester"] = rate
    print(f"  mosquitto + 1 ingester: {sent} messages in {dt:.1f} s = {rate:,.0f} msg/s", flush=True)
    # 2. and 3. the NATS cluster with 1 and 2 replicas
    for k in (1, 2):
        site = f"bench-n{k}"
        sf, af, model = site_files(root, site, receiver.url, False)
        db = pg.url(pg.create_database())
        reps = [Replica(f"t{k}-r{i}", root, cluster.urls, sf, af, tsdb, db, PARTITIONS) for i in range(1, k + 1)]
        for r in reps:  # consumers exist from the first start; stopped, the backlog waits in the stream
            r.start()
        for r in reps:
            r.stop()
        sent = backlog(",".join(cluster.mqtt_urls), site, model, n)
        threads = [threading.Thread(target=r.start) for r in reps]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        try:
            dt, rate = drain([r.metrics_port for r in reps], sent)
        finally:
            for r in reps:
                r.stop()
        out[f"NATS cluster + {k} replica{'s' if k > 1 else ''}"] = rate
        print(f"  NATS cluster + {k} replica(s): {sent} messages in {dt:.1f} s = {rate:,.0f} msg/s", flush=True)
    return out


def takeovers(root: Path, cluster: Any, vm: Any, pg: Any, receiver: PushReceiver, kills: int, refs: int,
              load_rate: float) -> dict[str, list[float]]:
    from device_profiles.loader import get_profile

    site = "bench-to"
    sf, af, model = site_files(root, site, receiver.url, True)
    db_url = pg.url(pg.create_database())
    db = ClusterDb(db_url)
    tsdb = f"influx2://127.0.0.1:{vm.port}?bucket=sw&org=sw"
    reps = {n: Replica(n, root, cluster.urls, sf, af, tsdb, db_url, PARTITIONS) for n in ("k-r1", "k-r2")}
    for r in reps.values():
        r.start()
    dev = SimDevice(get_profile("nanfang-fsm8"), 3)
    chg = SimDevice(get_profile("voltpile-cp10"), 4)
    (root / "bus").mkdir()
    bus = RtuBus(root / "bus", [dev, chg])
    cfg = {"site": site, "gateway": ALARM_GW, "state_dir": str(root / "edge-state"),
           "uplink": {"url": cluster.mqtt_urls, "client_id": "bench-edge", "keepalive_s": 5,
                      "reconnect_min_s": 0.5, "reconnect_max_s": 2},
           "snapshot_s": 30, "health_s": 5,
           "buses": [{"name": "rs485", "transport": "modbus_rtu", "port": bus.port, "baud": 9600, "timeout_s": 0.2}],
           "devices": [{"id": ALARM_DEV, "profile": "nanfang-fsm8", "bus": "rs485", "address": 3,
                        "poll": {"safety": 0.5, "routine": 5, "slow": 60}},
                       {"id": ALARM_CHG, "profile": "voltpile-cp10", "bus": "rs485", "address": 4,
                        "poll": {"safety": 0.5, "routine": 5, "slow": 60}}]}
    (root / "edge.yaml").write_text(yaml.safe_dump(cfg))
    edge = AgentProcess(root / "edge.yaml", root / "edge.log").start()
    fleet = FleetRun(FleetConfig(broker=",".join(cluster.mqtt_urls), site=site, gateways=GATEWAYS,
                                 sim_start=RECENT_START, seed=3, rate=load_rate, duration=None, connections=8,
                                 client_prefix="bench-load", keepalive_s=5), model)
    part = alarm_partition(site, PARTITIONS)
    out: dict[str, list[float]] = {"reference flip→push": [], "reference overheat→push": [], "takeover": [],
                                   "flip→push": [], "push after takeover": [], "overheat→push": [],
                                   "overheat push after takeover": [], "overheat push after it was due": []}
    hot = "Charging port overheating"
    try:
        wait_until(lambda: edge_status(root / "edge-state").get("uplink", {}).get("connected"), 60, "the edge")
        wait_until(lambda: db.owner(part) is not None, 60, "the edge's partition owned")
        fleet.start()

        def flip(kill: Replica | None) -> tuple[float, float, float | None]:
            """→ (waterflow flip → push, overheat → push, kill → takeover or None)"""
            n, n_hot = len(receiver.alarms()), len(receiver.alarms(hot, ALARM_CHG))
            t_kill = time.time()
            took: list[float] = []
            if kill is not None:
                old = kill.name
                kill.kill()

                def watch() -> None:
                    while time.time() - t_kill < 60:
                        o = db.owner(part)
                        if o is not None and o != old:
                            took.append(time.time())
                            return
                        time.sleep(0.05)

                threading.Thread(target=watch, daemon=True).start()
            t0 = time.time()
            dev.set(waterflow=True)
            chg.set(port__1__connector_temp=72.0)
            push = wait_until(lambda: receiver.alarms()[n:], 90, "the push")[0]
            push_hot = wait_until(lambda: receiver.alarms(hot, ALARM_CHG)[n_hot:], 90, "the overheat push")[0]
            dev.set(waterflow=False)
            chg.set(port__1__connector_temp=30.0)
            wait_until(lambda: not db.alarms(ALARM_CHG, "connector_overtemp")[-1]["active"], 90, "the overheat clear")
            try:
                wait_until(lambda: not db.alarms(ALARM_DEV, "waterflow")[-1]["active"], 90, "the clear")
            except AssertionError:
                # Say what the store and the replicas saw before everything is stopped and deleted (a
                # missing clear after a takeover was seen once, 2026-12-02, and not reproduced).
                print(f"  no clear: alarms {db.alarms(ALARM_DEV, 'waterflow')[-3:]}, owners {db.owners()}", flush=True)
                with db.engine.connect() as c:
                    for row in c.execute(text("SELECT * FROM alarm_audit WHERE alarm_id = :a ORDER BY ts"),
                                         {"a": db.alarms(ALARM_DEV, "waterflow")[-1]["id"]}):
                        print(f"  audit {tuple(row)}", flush=True)
                for r in reps.values():
                    print(f"  --- {r.name} (alive {r.alive()})\n{r.tail()}", flush=True)
                raise
            if kill is not None:
                wait_until(lambda: took, 60, "the takeover")
                return push.at - t0, push_hot.at - t0, took[0] - t_kill
            return push.at - t0, push_hot.at - t0, None

        for _ in range(refs):
            lat, lat_hot, _t = flip(None)
            out["reference flip→push"].append(lat)
            out["reference overheat→push"].append(lat_hot)
        for i in range(kills):
            owner = wait_until(lambda: db.owner(part), 60, "an owner")
            assert owner is not None
            victim = reps[owner]
            lat, lat_hot, took_s = flip(victim)
            assert took_s is not None
            out["takeover"].append(took_s)
            out["flip→push"].append(lat)
            out["push after takeover"].append(lat - took_s)
            out["overheat→push"].append(lat_hot)
            out["overheat push after takeover"].append(lat_hot - took_s)
            # Due at the later of the takeover and the rule's hold (a takeover shorter than the hold
            # cannot make the alarm earlier than the hold does)
            out["overheat push after it was due"].append(lat_hot - max(took_s, OVERHEAT_HOLD_S))
            print(f"  kill {i + 1}/{kills} of {victim.name}: takeover {took_s:.2f} s, flip → push {lat:.2f} s, "
                  f"overheat → push {lat_hot:.2f} s", flush=True)
            victim.start()
            wait_until(partial(_holds_some, db, victim.name), 60, "the restarted replica back")
        # Each flip raises each alarm once, so each must reach the phone once: a re-send after a
        # takeover that doubles a push shows here (late ones included: a few seconds to arrive).
        time.sleep(5)
        flips = refs + kills
        n_flow, n_hot = len(receiver.alarms()), len(receiver.alarms(hot, ALARM_CHG))
        print(f"  pushes: waterflow {n_flow}, overheating {n_hot}, for {flips} flips each"
              f"{'' if n_flow == n_hot == flips else '  <-- NOT ONE PUSH PER ALARM'}", flush=True)
    finally:
        res = fleet.stop() if fleet.thread is not None else None
        if res is not None:
            print(f"  load during the takeovers: {res.rate:,.0f} msg/s ({res.published} messages)")
        edge.stop()
        bus.stop()
        for r in reps.values():
            r.stop()
    return out


OVERHEAT_HOLD_S = 5.0  # voltpile-cp10's connector_overtemp `for:` (device_profiles/catalog/voltpile-cp10.yaml)


def _holds_some(db: ClusterDb, name: str) -> bool:
    return name in set(db.owners().values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=40_000, help="backlog per throughput run")
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--refs", type=int, default=5, help="reference flips with nothing broken")
    ap.add_argument("--load-rate", type=float, default=500.0, help="fleet msg/s during the takeovers")
    ap.add_argument("--skip-throughput", action="store_true")
    a = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="sw-bench-cluster-"))
    print(f"workdir {root}", flush=True)
    (root / "mosq").mkdir()
    (root / "vm").mkdir()
    mosq = make_mosquitto(root / "mosq").start()
    vm = make_victoriametrics(root / "vm", ["-dedup.minScrapeInterval=1ms"]).start()
    pg, pg_top = make_postgres()
    pg.start()
    cluster = make_nats_cluster(root / "nats", partitions=PARTITIONS)
    receiver = PushReceiver()
    try:
        if not a.skip_throughput:
            print(f"throughput, every reading stored ({a.messages} messages of backlog each):", flush=True)
            tp = throughput(root, cluster, mosq, vm, pg, receiver, a.messages)
        print(f"takeover ({a.kills} kills of the owning replica, load {a.load_rate:.0f} msg/s):", flush=True)
        to = takeovers(root, cluster, vm, pg, receiver, a.kills, a.refs, a.load_rate)
    finally:
        receiver.stop()
        cluster.stop_all()
        pg.stop()
        shutil.rmtree(pg_top, ignore_errors=True)
        vm.stop()
        mosq.stop()
    print("\n== results ==")
    if not a.skip_throughput:
        ref = tp["mosquitto + 1 ingester"]
        for k, v in tp.items():
            ratio = f"{v / ref:.2f}× the reference" if ref > 0 and v > 0 else "(no ratio: a side did no work)"
            print(f"  {k:28s} {v:9,.0f} msg/s  {ratio}")
    for k, xs in to.items():
        if xs:
            print(f"  {k:30s} p50 {pct(xs, 50):6.2f} s  p99 {pct(xs, 99):6.2f} s  max {max(xs):6.2f} s  (n={len(xs)})")
    print("  targets: takeover ≤ 10 s; pushed ≤ 2 s after the takeover; reference flip → push p99 ≤ 2 s")
    print("  (overheat: raised above 70 °C held 5 s, so its flip → push includes those 5 s and the edge's poll)")


if __name__ == "__main__":
    main()
