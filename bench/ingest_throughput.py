"""Ingest throughput against mosquitto_sub draining the same broker, in the same run.

Both subscribers drain the same preloaded queue: N QoS 1 telemetry messages of the fleet
generator's routine mix (~150-200-byte JSON) waiting in a persistent session on a fresh mosquitto.
mosquitto_sub (C) only prints them to /dev/null; the ingester validates, checks identity, dedupes,
hands every message to the safety queue and writes every point to VictoriaMetrics through
influxdb-client. Prints msg/s, CPU µs per message, and the ratio.

    .venv/bin/python bench/ingest_throughput.py [--messages 100000]
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from cloud.ingest.safety_queue import QueueSafetySink
from cloud.ingest.service import IngestConfig, IngestService
from cloud.site_config import load_site
from cloud.state.registry import Registry
from simulators.fleet import FleetConfig, FleetModel, site_file_text
from tests.fixtures.servers import make_mosquitto
from tests.fixtures.tsdb_servers import make_victoriametrics


def make_messages(n: int) -> list[tuple[str, bytes]]:
    cfg = FleetConfig(
        site="bench",
        gateways=50,
        sim_start=datetime(2026, 1, 1, tzinfo=UTC),
        snapshot_every=10**9,
        health_every=10**9,
        event_probability=0.0,
    )
    model = FleetModel(cfg)
    out: list[tuple[str, bytes]] = []
    while len(out) < n:
        out.extend((t, p) for t, p, _ in model.tick_messages())
    return out[:n]


def subscribe_persistent(port: int, client_id: str, topic: str, v5: bool) -> None:
    """Create the persistent session (so messages queue while the subscriber is away)."""
    if v5:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        c.connect("127.0.0.1", port, clean_start=False, properties=props)
    else:
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311, clean_session=False
        )
        c.connect("127.0.0.1", port)
    c.loop_start()
    r = c.subscribe(topic, qos=1)
    time.sleep(0.5)
    assert r[0] == 0
    c.disconnect()
    c.loop_stop()


def preload(port: int, msgs: list[tuple[str, bytes]]) -> float:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-pub", protocol=mqtt.MQTTv311)
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port)
    c.loop_start()
    t0 = time.monotonic()
    infos = []
    for t, p in msgs:
        infos.append(c.publish(t, p, qos=1))
        if len(infos) >= 30_000:  # paho's message ids wrap at 65535: keep fewer in flight
            for i in infos:
                i.wait_for_publish(120)
            infos = []
    for i in infos:
        i.wait_for_publish(120)
    dt = time.monotonic() - t0
    c.disconnect()
    c.loop_stop()
    return dt


def child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_mosquitto_sub(port: int, n: int) -> tuple[float, float]:
    cpu0 = child_cpu()
    t0 = time.monotonic()
    subprocess.run(
        [
            "mosquitto_sub",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-i",
            "bench-c",
            "-c",
            "-q",
            "1",
            "-t",
            "sw/v1/#",
            "-C",
            str(n),
        ],
        stdout=subprocess.DEVNULL,
        check=True,
        timeout=600,
    )
    return time.monotonic() - t0, child_cpu() - cpu0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--batch-points", type=int, default=5000)
    args = ap.parse_args()
    n = args.messages
    avg = sum(len(p) for _, p in make_messages(n)) / n
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        (tmp / "mq").mkdir()
        (tmp / "vm").mkdir()
        mq = make_mosquitto(tmp / "mq").start()
        vm = make_victoriametrics(tmp / "vm").start()
        try:
            # Reference: mosquitto_sub
            subscribe_persistent(mq.port, "bench-c", "sw/v1/#", v5=False)
            pt = preload(mq.port, make_messages(n))
            ref_s, ref_cpu = run_mosquitto_sub(mq.port, n)

            # Ingester
            site = tmp / "site.yaml"
            site.write_text(
                site_file_text("bench", FleetModel(FleetConfig(site="bench", gateways=50)).topology)
            )
            cfg = IngestConfig(
                broker=mq.url,
                mqtt_version="5",
                shared_group=None,
                tsdb=f"influx2://127.0.0.1:{vm.port}?bucket=b&org=o",
                state_db=f"sqlite:///{tmp}/state.db",
                spool_dir=str(tmp / "spool"),
                client_id="bench-ingest",
                batch_points=args.batch_points,
            )
            reg = Registry(cfg.state_db)
            reg.register_site(load_site(site))
            reg.close()
            svc = IngestService(cfg, safety=QueueSafetySink()).start()  # creates the persistent session
            svc.stop()
            preload(mq.port, make_messages(n))
            gc.collect()  # the preloaded messages are garbage now; do not let them cost the ingester
            svc = IngestService(cfg, safety=QueueSafetySink())
            safety = svc.safety
            assert isinstance(safety, QueueSafetySink)
            cpu0 = time.process_time()
            t0 = time.monotonic()
            svc.start(wait=0)
            while svc.stats()["received"] < n:
                time.sleep(0.005)
                if time.monotonic() - t0 > 60:
                    raise SystemExit(f"stalled: {svc.stats()}")
            recv_s = time.monotonic() - t0
            svc.flush(120)
            stored_s = time.monotonic() - t0
            cpu = time.process_time() - cpu0
            st = svc.stats()
            svc.stop()
            assert st["accepted"] == n and not st["dead_letters"], st
            vm.flush()
        finally:
            vm.stop()
            mq.stop()
    ref_rate = n / ref_s
    rate = n / stored_s
    print(
        f"messages: {n} QoS 1, avg payload {avg:.0f} B, {st['written']} points "
        f"({st['written'] / n:.2f} per message); preload {n / pt:.0f} msg/s"
    )
    print(f"mosquitto_sub : {ref_rate:8.0f} msg/s  CPU {ref_cpu / n * 1e6:6.1f} µs/msg")
    print(
        f"ingester      : {rate:8.0f} msg/s  CPU {cpu / n * 1e6:6.1f} µs/msg (all threads, incl. VM writes)"
        f"  [received in {recv_s:.2f}s, all stored in {stored_s:.2f}s]"
    )
    print(f"ratio ingester / mosquitto_sub: {rate / ref_rate:.2f} (target >= 0.50)")
    print(f"safety queue got {safety.put_count} messages; pid {os.getpid()}")


if __name__ == "__main__":
    main()
