"""Ingest throughput against mosquitto_sub on the same broker, in the same run. Two figures:

live (default first): N `mosquitto_pub -l` processes publish QoS 1 ~200-byte valid telemetry (one
device each, increasing seq) as fast as the broker takes them for `--duration` seconds while one
subscriber drains concurrently: (a) mosquitto_sub, then (b) the ingester writing every reading to
VictoriaMetrics. Same broker settings, fresh broker per side. The publishers' own rate is measured
from how far each one has read its input file (/proc/<pid>/fdinfo/0), so both sides are shown to
face the same offered load; the subscriber's rate is what it received inside the window.

backlog: both subscribers drain the same preloaded queue: N QoS 1 telemetry messages of the fleet
generator's routine mix (~150-200-byte JSON) waiting in a persistent session on a fresh mosquitto.
mosquitto_sub (C) only prints them to /dev/null; the ingester validates, checks identity, dedupes,
hands every message to the safety queue and writes every point to VictoriaMetrics through
influxdb-client. Prints msg/s, CPU µs per message, and the ratio.

    .venv/bin/python bench/ingest_throughput.py [--mode live|backlog|both] [--duration 10]
        [--publishers 2] [--messages 100000]
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
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import contextlib

import paho.mqtt.client as mqtt
import psutil
from paho.mqtt.enums import CallbackAPIVersion

from cloud.ingest.safety_queue import QueueSafetySink
from cloud.ingest.service import IngestConfig, IngestService
from cloud.ingest.timepolicy import TimePolicy
from cloud.site_config import load_site
from cloud.state.registry import Registry
from device_profiles import wire
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


def bench_ingest_config(d: Path, broker: str, vm_port: int, batch_points: int) -> IngestConfig:
    """The ingester both modes measure: MQTT 5 without a shared group, VictoriaMetrics through the
    v2 write API, the bench site (50 gateways, as in `make_messages`) registered in a fresh state db."""
    site = d / "site.yaml"
    site.write_text(site_file_text("bench", FleetModel(FleetConfig(site="bench", gateways=50)).topology))
    cfg = IngestConfig(
        broker=broker,
        mqtt_version="5",
        shared_group=None,
        tsdb=f"influx2://127.0.0.1:{vm_port}?bucket=b&org=o",
        state_db=f"sqlite:///{d}/state.db",
        spool_dir=str(d / "spool"),
        client_id="bench-ingest",
        batch_points=batch_points,
        # the fleet replays 2026-01-01 (a simulated clock): judge only the future side of the policy
        time_policy=TimePolicy(past_s=None),
    )
    reg = Registry(cfg.state_db)
    reg.register_site(load_site(site))
    reg.close()
    return cfg


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
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311, clean_session=False)
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


def live_payloads(n_pub: int, per_pub: int) -> list[tuple[str, list[bytes]]]:
    """One (topic, payloads) stream per publisher: a distinct charger each, seq 0.., ts 1 ms apart,
    values a rotating window of the charger's points sized to ~200 bytes."""
    snaps: list[tuple[str, wire.Telemetry]] = []
    for t, p in make_messages(2000):
        if t.endswith("-chg1/telemetry") and len(snaps) < n_pub:
            msg = wire.decode(wire.Kind.TELEMETRY, p)
            if msg.snapshot:
                snaps.append((t, msg))
    if len(snaps) < n_pub:
        raise SystemExit(f"only {len(snaps)} chargers in the generated fleet")
    out = []
    for topic, snap in snaps:
        items = list(snap.values.items())
        base = snap.ts
        payloads = []
        for i in range(per_pub):
            vals: dict[str, object] = {}
            j = i * 5
            while True:
                k, v = items[j % len(items)]
                vals[k] = v
                j += 1
                if len(vals) >= 5:
                    break
            m = wire.Telemetry(ts=base + timedelta(milliseconds=i), seq=i, values=vals)  # type: ignore[arg-type]
            payloads.append(wire.encode(m))
        out.append((topic, payloads))
    return out


class Publishers:
    """N mosquitto_pub -l processes, each fed from its own file; stopped by PID."""

    def __init__(self, port: int, files: list[tuple[str, Path, list[int]]]) -> None:
        self.port, self.files = port, files
        self.procs: list[subprocess.Popen[bytes]] = []
        self.counts: list[int] = []
        self.cpu = 0.0
        self.feeders: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        # The input comes through a pipe that stays open (cat, then sleep): at end of input
        # mosquitto_pub -l disconnects and drops what it has read but not yet sent, so it must
        # never see EOF inside the window; it is stopped by PID when the window closes.
        for topic, path, _ in self.files:
            feeder = subprocess.Popen(["sh", "-c", 'cat "$0"; exec sleep 3600', str(path)], stdout=subprocess.PIPE)
            self.feeders.append(feeder)
            self.procs.append(
                subprocess.Popen(
                    [
                        "mosquitto_pub",
                        "-h",
                        "127.0.0.1",
                        "-p",
                        str(self.port),
                        "-q",
                        "1",
                        "-M",
                        "100",
                        "-t",
                        topic,
                        "-l",
                    ],
                    stdin=feeder.stdout,
                )
            )
            assert feeder.stdout is not None
            feeder.stdout.close()  # only mosquitto_pub holds the read end now

    def stop(self) -> None:
        for p in self.procs:
            with contextlib.suppress(psutil.Error):
                self.cpu += sum(psutil.Process(p.pid).cpu_times()[:2])
            if p.poll() is None:
                p.terminate()
        for p in self.feeders:
            if p.poll() is None:
                p.terminate()
        for p in self.procs + self.feeders:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def write_pub_files(tmp: Path, streams: list[tuple[str, list[bytes]]]) -> list[tuple[str, Path, list[int]]]:
    files = []
    for i, (topic, payloads) in enumerate(streams):
        path = tmp / f"pub{i}.txt"
        ends, pos = [], 0
        with path.open("wb") as f:
            for p in payloads:
                f.write(p + b"\n")
                pos += len(p) + 1
                ends.append(pos)
        files.append((topic, path, ends))
    return files


def live(args: argparse.Namespace) -> None:
    per_pub = int(args.duration * args.max_rate / args.publishers)
    streams = live_payloads(args.publishers, per_pub)
    avg = sum(len(p) for _, ps in streams for p in ps) / sum(len(ps) for _, ps in streams)
    dur = args.duration
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        files = write_pub_files(tmp, streams)
        n_lines = sum(len(e) for _, _, e in files)
        del streams
        gc.collect()
        results = {}
        for side in ("mosquitto_sub", "ingester"):
            d = tmp / side
            (d / "mq").mkdir(parents=True)
            mq = make_mosquitto(d / "mq", extra_conf="sys_interval 1").start()
            vm = None
            try:
                if side == "mosquitto_sub":
                    out = d / "sub.out"
                    with out.open("wb") as fo:
                        sub = subprocess.Popen(
                            ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(mq.port), "-q", "1", "-t", "sw/v1/#"],
                            stdout=fo,
                        )
                    time.sleep(1.0)
                    sp = psutil.Process(sub.pid)
                    pubs = Publishers(mq.port, files)
                    c0 = sum(sp.cpu_times()[:2])
                    lines0 = 0
                    t0 = time.monotonic()
                    pubs.start()
                    time.sleep(dur)
                    got = _count_lines(out) - lines0
                    cpu = sum(sp.cpu_times()[:2]) - c0
                    elapsed = time.monotonic() - t0
                    pubs.stop()
                    sent = broker_received(mq.port)
                    exhausted = sent >= n_lines
                    total = _count_lines(out)
                    sub.terminate()
                    sub.wait(5)
                    results[side] = (sent, got, elapsed, cpu, pubs.cpu, total, exhausted, None)
                else:
                    (d / "vm").mkdir()
                    vm = make_victoriametrics(d / "vm").start()
                    cfg = bench_ingest_config(d, mq.url, vm.port, args.batch_points)
                    svc = IngestService(cfg, safety=QueueSafetySink())
                    svc.start()
                    pubs = Publishers(mq.port, files)
                    c0 = time.process_time()
                    t0 = time.monotonic()
                    pubs.start()
                    time.sleep(dur)
                    got = svc.pipeline.stats.received
                    cpu = time.process_time() - c0
                    elapsed = time.monotonic() - t0
                    pubs.stop()
                    # Let the backlog the broker queued drain, then check every reading was stored.
                    tq = time.monotonic()
                    sent = broker_received(mq.port)
                    exhausted = sent >= n_lines
                    while svc.pipeline.stats.received < sent and time.monotonic() - tq < 120:
                        time.sleep(0.05)
                    drain_s = time.monotonic() - tq
                    svc.flush(120)
                    st = svc.stats()
                    svc.stop()
                    total = st["received"]
                    results[side] = (sent, got, elapsed, cpu, pubs.cpu, total, exhausted, (st, drain_s))
            finally:
                if vm is not None:
                    vm.stop()
                mq.stop()
    print(f"LIVE: {args.publishers} x mosquitto_pub -l, QoS 1, avg payload {avg:.0f} B, window {dur:.0f} s")
    rates = {}
    for side, (sent, got, el, cpu, pcpu, total, exh, extra) in results.items():
        rates[side] = got / el
        print(
            f"  {side:13s}: publishers {sent / el:8.0f} msg/s "
            f"(their CPU {pcpu / max(sent, 1) * 1e6:5.1f} µs/msg, counted by the broker)"
            f"{' [INPUT EXHAUSTED: raise --max-rate]' if exh else ''}; subscriber received {got / el:8.0f} msg/s"
            f"  CPU {cpu / max(got, 1) * 1e6:6.1f} µs/msg; total received {total} of {sent} sent"
        )
        if extra:
            st, drain_s = extra
            print(
                f"  {'':13s}  backlog after window drained in {drain_s:.1f} s; accepted {st['accepted']}, "
                f"duplicates {st['duplicates']}, dead {st['dead_letters']}, points written {st['written']}"
                f" ({st['points']} produced), safety {st['accepted']}; store writes {st.get('batches', '?')},"
                f" acknowledgement bursts {st.get('durable_points', '?')}"
            )
    print(f"  ratio ingester / mosquitto_sub (live): {rates['ingester'] / rates['mosquitto_sub']:.2f} (target >= 0.50)")


def broker_received(port: int) -> int:
    """PUBLISH packets the broker took in (mosquitto's own counter; publishers stopped ≥ 1.5 s ago
    so the 1-s $SYS refresh has caught up). mosquitto_pub reads its input far ahead of what it has
    sent, so the file offsets cannot count this."""
    time.sleep(1.5)
    out = subprocess.run(
        [
            "mosquitto_sub",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-C",
            "1",
            "-W",
            "5",
            "-t",
            "$SYS/broker/publish/messages/received",
        ],
        capture_output=True,
        check=True,
        timeout=10,
    )
    return int(out.stdout.split()[0])


def _count_lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=("live", "backlog", "both"), default="both")
    ap.add_argument("--messages", type=int, default=100_000, help="backlog mode: queued messages")
    ap.add_argument("--duration", type=float, default=10.0, help="live mode: publishing window (s)")
    ap.add_argument("--publishers", type=int, default=2, help="live mode: mosquitto_pub processes")
    ap.add_argument("--max-rate", type=float, default=80_000, help="live mode: input sized for this msg/s")
    ap.add_argument("--batch-points", type=int, default=5000)
    args = ap.parse_args()
    if args.mode in ("live", "both"):
        live(args)
    if args.mode in ("backlog", "both"):
        backlog(args)


def backlog(args: argparse.Namespace) -> None:
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
            cfg = bench_ingest_config(tmp, mq.url, vm.port, args.batch_points)
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
            while svc.pipeline.stats.received < n:
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
        f"BACKLOG: messages: {n} QoS 1, avg payload {avg:.0f} B, {st['written']} points "
        f"({st['written'] / n:.2f} per message); preload {n / pt:.0f} msg/s"
    )
    print(f"mosquitto_sub : {ref_rate:8.0f} msg/s  CPU {ref_cpu / n * 1e6:6.1f} µs/msg")
    print(
        f"ingester      : {rate:8.0f} msg/s  CPU {cpu / n * 1e6:6.1f} µs/msg (all threads, incl. VM writes)"
        f"  [received in {recv_s:.2f}s, all stored in {stored_s:.2f}s]"
    )
    print(f"ratio ingester / mosquitto_sub: {rate / ref_rate:.2f} (target >= 0.50)")
    print(f"store writes {st.get('batches', '?')}, acknowledgement bursts {st.get('durable_points', '?')}")
    print(f"safety queue got {safety.put_count} messages; pid {os.getpid()}")


if __name__ == "__main__":
    main()
