"""What a `kill -9` of mosquitto loses, and what its persistence settings cost, measured per setting.

One run per setting: a fresh mosquitto (persistence on, the setting's autosave lines), a durable
subscriber standing in for the ingester (MQTT 5, persistent session, receives and acknowledges at
once) and a gateway-like publisher (QoS 1, 100 in flight, numbered messages at `--rate` msg/s).
After `--kill-after` s the broker gets SIGKILL and is started again on the same port and files; the
publisher reconnects and goes on (what it had in flight unacknowledged it sends again, as the
edge's outbox does). Then:

- lost: messages the broker had acknowledged to the publisher (PUBACK) that never reached the
  subscriber, even after the restart (the broker's promise broken);
- again: messages the subscriber got twice (harmless: the ingester's replay check drops them);
- broker CPU µs per message while publishing (before the kill), and the saves it made.

    .venv/bin/python bench/broker_crash.py [--rate 2300] [--kill-after 4] [--runs 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import paho.mqtt.client as mqtt
import psutil
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.fixtures.servers import make_mosquitto

SETTINGS = {
    "autosave_interval 1800 (mosquitto default)": "autosave_interval 1800\n",
    "autosave_interval 1 (seconds)": "autosave_interval 1\n",
    "autosave_on_changes, every 1000 changes": "autosave_on_changes true\nautosave_interval 1000\n",
    "autosave_on_changes, every 100 changes": "autosave_on_changes true\nautosave_interval 100\n",
    "autosave_on_changes, every change": "autosave_on_changes true\nautosave_interval 1\n",
}
TOPIC = "sw/v1/bench/gw1/dev1/telemetry"


class Subscriber:
    """The ingester's stand-in: persistent MQTT 5 session, every message acknowledged on receipt."""

    def __init__(self, port: int) -> None:
        self.got: dict[int, int] = {}
        self.lock = threading.Lock()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="crash-sub", protocol=mqtt.MQTTv5)
        self.c.on_message = self._on_message
        self.c.on_connect = lambda c, u, f, rc, p: c.subscribe(TOPIC, qos=1)
        self.c.reconnect_delay_set(0.1, 0.5)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        props.ReceiveMaximum = 4096
        self.c.connect("127.0.0.1", port, clean_start=False, properties=props)
        self.c.loop_start()

    def _on_message(self, c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        n = int(msg.payload.split(b",", 1)[0])
        with self.lock:
            self.got[n] = self.got.get(n, 0) + 1

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


class Publisher:
    """A gateway: numbered QoS 1 messages at a fixed rate; remembers which the broker acknowledged."""

    def __init__(self, port: int, rate: float) -> None:
        self.rate = rate
        self.acked: set[int] = set()
        self.sent = 0
        self.stop = threading.Event()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="crash-pub", protocol=mqtt.MQTTv311,
                             clean_session=False)
        self.c.max_inflight_messages_set(100)
        self.c.max_queued_messages_set(0)
        self.c.reconnect_delay_set(0.1, 0.5)
        self.mids: dict[int, int] = {}
        self.lock = threading.Lock()
        self.c.on_publish = self._on_publish
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _on_publish(self, c: mqtt.Client, u: object, mid: int, rc: object, p: object) -> None:
        with self.lock:
            n = self.mids.pop(mid, None)
            if n is not None:
                self.acked.add(n)

    def _run(self) -> None:
        t0 = time.monotonic()
        pad = b"x" * 150
        while not self.stop.is_set():
            due = t0 + self.sent / self.rate
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            with self.lock:
                info = self.c.publish(TOPIC, b"%d," % self.sent + pad, qos=1)
                self.mids[info.mid] = self.sent
            self.sent += 1


def run(setting: str, autosave: str, rate: float, kill_after: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        mq = make_mosquitto(tmp, autosave=autosave).start()
        sub = Subscriber(mq.port)
        time.sleep(0.5)
        pub = Publisher(mq.port, rate)
        proc = psutil.Process(mq.pid)
        cpu0 = sum(proc.cpu_times()[:2])
        pub.thread.start()
        time.sleep(kill_after)
        cpu = sum(proc.cpu_times()[:2]) - cpu0
        sent_before = pub.sent
        db = tmp / "mosquitto.db"
        saved_at = db.stat().st_mtime if db.exists() else 0.0
        mq.stop(kill=True)
        killed_at = time.time()
        with pub.lock:
            acked_before = set(pub.acked)
        mq.start()
        time.sleep(2.0)  # the publisher goes on after the restart
        pub.stop.set()
        pub.thread.join(5)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with pub.lock:
                if not pub.mids:
                    break
            time.sleep(0.1)
        time.sleep(2.0)  # let the subscriber drain
        with sub.lock:
            got = dict(sub.got)
        with pub.lock:
            acked = set(pub.acked)
        pub.c.disconnect()
        pub.c.loop_stop()
        sub.close()
        mq.stop()
        lost_before = len(acked_before - got.keys())
        return {
            "rate": sent_before / kill_after,
            "cpu_us": cpu / max(sent_before, 1) * 1e6,
            "lost": float(lost_before),
            "lost_all": float(len(acked - got.keys())),
            "again": float(sum(1 for n in got.values() if n > 1)),
            "save_age": killed_at - saved_at if saved_at else float("nan"),
        }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=2300.0)
    ap.add_argument("--kill-after", type=float, default=4.0)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--only", default="", help="run settings whose name contains this")
    args = ap.parse_args()
    print(f"mosquitto kill -9 after {args.kill_after:.0f} s of QoS 1 publishing at {args.rate:.0f} msg/s; "
          f"subscriber acknowledges on receipt; {args.runs} run(s) per setting")
    print(f"{'setting':45s} {'msg/s':>7s} {'broker µs/msg':>14s} {'lost (acked, never delivered)':>30s}"
          f" {'delivered twice':>16s} {'last save before kill':>22s}")
    for name, conf in SETTINGS.items():
        if args.only not in name:
            continue
        for _ in range(args.runs):
            r = run(name, conf, args.rate, args.kill_after)
            print(f"{name:45s} {r['rate']:7.0f} {r['cpu_us']:14.1f} {r['lost']:30.0f} {r['again']:16.0f}"
                  f" {r['save_age']:20.2f} s", flush=True)


if __name__ == "__main__":
    main()
