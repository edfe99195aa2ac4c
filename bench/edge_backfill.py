"""Backfill after a 10-minute outage: how fast the outbox drains, and how late live readings are
while it does.

The outbox is filled with what 200 devices polled once a second store in 10 minutes (120 000
telemetry messages, written through `Outbox.put_many` exactly as the agent does). Then the uplink
connects to a real mosquitto while new live readings keep coming at 200/s. A `mosquitto_sub`
process records every arrival; live delay = arrival time − the reading's edge timestamp.

Reference, measured in the same run: a bare paho client publishing the same payloads at QoS 1 with
the same in-flight window, no outbox (the broker/client ceiling on this machine).

    .venv/bin/python bench/edge_backfill.py [minutes] [devices]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from device_profiles import wire  # noqa: E402
from edge_agent.config import Uplink as UplinkCfg  # noqa: E402
from edge_agent.outbox import New, Outbox  # noqa: E402
from edge_agent.uplink import Uplink  # noqa: E402
from tests.fixtures.servers import make_mosquitto  # noqa: E402

SITE, GW = "bench", "gw1"
VALUES: dict[str, wire.Scalar] = {
    f"port.{i}.{k}": 12.3 for i in range(1, 3) for k in ("voltage", "current", "power", "connector_temp")
}


def item(dev: str) -> New:
    ts = wire.now()
    return New(
        wire.topic(SITE, GW, wire.Kind.TELEMETRY, dev),
        lambda seq: wire.encode(wire.Telemetry(ts=ts, seq=seq, values=VALUES)),
        dev,
    )


def reference(port: int, payloads: list[tuple[str, bytes]], window: int) -> float:
    done = threading.Semaphore(0)
    inflight = threading.Semaphore(window)
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-ref")

    def on_pub(*a: object) -> None:
        inflight.release()
        done.release()

    c.on_publish = on_pub
    c.connect("127.0.0.1", port)
    c.loop_start()
    time.sleep(0.5)
    t0 = time.monotonic()
    for t, p in payloads:
        inflight.acquire()
        c.publish(t, p, qos=1)
    for _ in payloads:
        done.acquire()
    dt = time.monotonic() - t0
    c.disconnect()
    c.loop_stop()
    return len(payloads) / dt


def main() -> None:
    minutes = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
    n_dev = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    backlog_n = int(minutes * 60 * n_dev)
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        (tmp / "mq").mkdir()
        mq = make_mosquitto(tmp / "mq").start()
        try:
            ob = Outbox(tmp / "outbox.db")
            t0 = time.monotonic()
            for start in range(0, backlog_n, 2000):
                ob.put_many([item(f"d{(start + i) % n_dev}") for i in range(min(2000, backlog_n - start))])
            fill_s = time.monotonic() - t0
            rows = ob.backlog(0, 10**9, 20000)
            ref = reference(mq.port, [(r.topic, r.payload) for r in rows], 100)

            out = open(tmp / "sub.txt", "w")  # noqa: SIM115
            sub = subprocess.Popen(
                ["mosquitto_sub", "-p", str(mq.port), "-t", f"sw/v1/{SITE}/{GW}/+/telemetry", "-q", "1", "-F", "%U %p"],
                stdout=out,
                start_new_session=True,
            )
            time.sleep(1.0)
            up = Uplink(UplinkCfg(url=f"mqtt://127.0.0.1:{mq.port}", window=100), SITE, GW, ob)
            hi = ob.max_id()
            stop = threading.Event()
            live_made: list[float] = []
            lock = threading.Lock()

            def live() -> None:  # 200 readings/s in batches of 20 every 100 ms, as the bus loops make them
                k = 0
                while not stop.is_set():
                    batch = [item(f"d{(k + i) % n_dev}") for i in range(n_dev // 10)]
                    k += len(batch)
                    with lock:
                        r = ob.put_many(batch)
                        up.offer(r)
                    live_made.append(time.time())
                    time.sleep(0.1)

            up.start()
            t_start = time.time()
            th = threading.Thread(target=live, daemon=True)
            t0 = time.monotonic()
            th.start()
            while True:
                with lock:
                    up.pump(2000)
                if (
                    up._backlog_hi >= hi
                    and not up.backlog_remaining()
                    and not any(rid <= hi for rid in up._inflight_rows)
                ):
                    break
                up.wake.wait(0.005)
                up.wake.clear()
            drain_s = time.monotonic() - t0
            time.sleep(2)
            stop.set()
            th.join()
            with lock:
                up.wait_idle(20)
            up.stop()
            time.sleep(1)
            sub.terminate()
            sub.wait(5)
            out.close()
        finally:
            mq.stop()
        delays = []
        backlog_arrivals = 0
        for line in (tmp / "sub.txt").read_text().splitlines():
            arr_s, payload = line.split(" ", 1)
            arr = float(arr_s)
            ts = datetime.fromisoformat(payload.split('"ts":"', 1)[1].split('"', 1)[0].replace("Z", "+00:00"))
            if ts.timestamp() >= t_start:
                if arr - t_start <= drain_s + 0.5:
                    delays.append((arr - ts.timestamp()) * 1000)
            else:
                backlog_arrivals += 1
    print(
        f"backlog: {backlog_n} telemetry messages ({minutes:.0f} min × {n_dev} devices at 1 Hz), "
        f"filled in {fill_s:.1f} s"
    )
    print(f"reference (bare paho QoS 1, window 100, no outbox): {ref:,.0f} msg/s")
    print(
        f"edge_agent backfill: {backlog_n / drain_s:,.0f} msg/s (drained in {drain_s:.1f} s; "
        f"{backlog_arrivals} backlog messages reached the subscriber)"
    )
    if delays:
        q = statistics.quantiles(delays, n=100)
        print(
            f"live readings during the backfill: {len(delays)}, delay p50 {q[49]:.0f} ms, p99 {q[98]:.0f} ms, "
            f"max {max(delays):.0f} ms"
        )


if __name__ == "__main__":
    main()
