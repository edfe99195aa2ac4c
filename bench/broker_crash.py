"""What a `kill -9` of mosquitto loses, and what its persistence settings cost, measured per setting.

crash (default): one run per setting: a fresh mosquitto (persistence on, the setting's autosave
lines), a durable subscriber standing in for the ingester (MQTT 5, persistent session, Receive
Maximum 4096, acknowledging each message `--ack-delay` s after receipt, as the ingester does once the
message is durable) and a gateway-like publisher (QoS 1, 100 in flight, numbered messages at
`--rate` msg/s). After `--kill-after` s the broker gets SIGKILL and is started again on the same port
and files; the publisher reconnects and goes on (what it had in flight unacknowledged it sends
again, as the edge's outbox does). `--subscriber-down S` disconnects the subscriber S seconds before
the kill (the ingester restarting when the broker dies). Then:

- lost: messages the broker had acknowledged to the publisher (PUBACK) that never reached the
  subscriber, even after the restart (the broker's promise broken);
- again: messages the subscriber got twice (harmless: the ingester's replay check drops them);
- broker CPU µs per message while publishing (before the kill), and when it last saved.

drain: `--backlog` messages wait in the subscriber's session while it is away; then it connects and
drains them: msg/s and broker CPU per message, per setting (a save writes the whole database, so
saving often costs most while a backlog waits).

    .venv/bin/python bench/broker_crash.py [--mode crash|drain|both] [--rate 2300] [--kill-after 4]
        [--runs 2] [--ack-delay 0.1] [--subscriber-down 0] [--backlog 50000]
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
    """The ingester's stand-in: persistent MQTT 5 session; each message acknowledged `ack_delay` s
    after it arrived (from one acker thread, in order)."""

    def __init__(self, port: int, ack_delay: float = 0.0) -> None:
        self.got: dict[int, int] = {}
        self.lock = threading.Lock()
        self.ack_delay = ack_delay
        self.pending: list[tuple[float, int]] = []
        self.closed = threading.Event()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="crash-sub", protocol=mqtt.MQTTv5,
                             manual_ack=True)
        self.c.on_message = self._on_message
        self.c.on_connect = lambda c, u, f, rc, p: c.subscribe(TOPIC, qos=1)
        self.subscribed = threading.Event()
        self.c.on_subscribe = lambda c, u, mid, rcs, p: self.subscribed.set()
        self.c.reconnect_delay_set(1, 1)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        props.ReceiveMaximum = 4096
        self.c.connect("127.0.0.1", port, clean_start=False, properties=props)
        self.c.loop_start()
        if not self.subscribed.wait(10):
            raise SystemExit("the subscriber could not subscribe")
        self.acker = threading.Thread(target=self._ack_loop, daemon=True)
        self.acker.start()

    def _on_message(self, c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        n = int(msg.payload.split(b",", 1)[0])
        with self.lock:
            self.got[n] = self.got.get(n, 0) + 1
            self.pending.append((time.monotonic(), msg.mid))
        if not self.ack_delay:
            self._ack_due()

    def _ack_due(self) -> None:
        now = time.monotonic()
        with self.lock:
            i = 0
            while i < len(self.pending) and now - self.pending[i][0] >= self.ack_delay:
                i += 1
            due, self.pending = self.pending[:i], self.pending[i:]
        for _, mid in due:
            self.c.ack(mid, 1)

    def _ack_loop(self) -> None:
        while not self.closed.wait(0.01):
            self._ack_due()

    def count(self) -> int:
        with self.lock:
            return len(self.got)

    def close(self) -> None:
        self.closed.set()
        self.c.disconnect()
        self.c.loop_stop()


class Publisher:
    """A gateway: numbered QoS 1 messages at a fixed rate; `acked()` says which the broker
    acknowledged (paho sets each message's flag from its network thread; no callback, no lock)."""

    def __init__(self, port: int, rate: float) -> None:
        self.rate = rate
        self.infos: list[mqtt.MQTTMessageInfo] = []
        self.stop = threading.Event()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="crash-pub", protocol=mqtt.MQTTv311,
                             clean_session=False)
        self.c.max_inflight_messages_set(100)
        self.c.max_queued_messages_set(0)
        self.c.reconnect_delay_set(1, 1)
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        self.thread = threading.Thread(target=self._run, daemon=True)

    @property
    def sent(self) -> int:
        return len(self.infos)

    def acked(self) -> set[int]:
        # `_published` rather than is_published(): that raises for a message first handed over while
        # the broker was down (paho still sends it after the reconnect, and sets the flag on PUBACK).
        return {n for n, info in enumerate(list(self.infos)) if info._published}

    def _run(self) -> None:
        t0 = time.monotonic()
        pad = b"x" * 150
        while not self.stop.is_set():
            due = t0 + len(self.infos) / self.rate
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            self.infos.append(self.c.publish(TOPIC, b"%d," % len(self.infos) + pad, qos=1))


def run(setting: str, autosave: str, rate: float, kill_after: float, ack_delay: float,
        sub_down: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        mq = make_mosquitto(tmp, autosave=autosave).start()
        sub: Subscriber | None = Subscriber(mq.port, ack_delay)
        time.sleep(0.5)
        pub = Publisher(mq.port, rate)
        proc = psutil.Process(mq.pid)
        cpu0 = sum(proc.cpu_times()[:2])
        pub.thread.start()
        got: dict[int, int] = {}
        if sub_down:
            time.sleep(max(0.0, kill_after - sub_down))
            assert sub is not None
            sub.close()  # the ingester restarting: its session keeps queuing
            got = dict(sub.got)
            sub = None
            time.sleep(sub_down)
        else:
            time.sleep(kill_after)
        cpu = sum(proc.cpu_times()[:2]) - cpu0
        sent_before = pub.sent
        db = tmp / "mosquitto.db"
        saved_at = db.stat().st_mtime if db.exists() else 0.0
        mq.stop(kill=True)
        killed_at = time.time()
        acked_before = pub.acked()
        mq.start()
        if sub is None:
            sub = Subscriber(mq.port, ack_delay)
        time.sleep(2.0)  # the publisher goes on after the restart
        pub.stop.set()
        pub.thread.join(5)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(pub.acked()) < pub.sent:
            time.sleep(0.1)
        time.sleep(2.0 + ack_delay)  # let the subscriber drain
        with sub.lock:
            for n, k in sub.got.items():
                got[n] = got.get(n, 0) + k
        pub.c.disconnect()
        pub.c.loop_stop()
        sub.close()
        mq.stop()
        return {
            "rate": sent_before / kill_after,
            "cpu_us": cpu / max(sent_before, 1) * 1e6,
            "lost": float(len(acked_before - got.keys())),
            "again": float(sum(1 for n in got.values() if n > 1)),
            "save_age": killed_at - saved_at if saved_at else float("nan"),
        }


def drain(autosave: str, backlog: int, ack_delay: float) -> tuple[float, float, float]:
    """msg/s the broker took the backlog in at (subscriber away), then msg/s and broker µs/msg while
    the subscriber drains it."""
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        mq = make_mosquitto(tmp, autosave=autosave).start()
        try:
            Subscriber(mq.port).close()  # the session exists
            time.sleep(0.3)
            pub = Publisher(mq.port, 1e9)
            pad = b"x" * 150
            t_in = time.monotonic()
            for n in range(backlog):
                pub.infos.append(pub.c.publish(TOPIC, b"%d," % n + pad, qos=1))
            while len(pub.acked()) < backlog:
                time.sleep(0.05)
            rate_in = backlog / (time.monotonic() - t_in)
            pub.c.disconnect()
            pub.c.loop_stop()
            proc = psutil.Process(mq.pid)
            cpu0 = sum(proc.cpu_times()[:2])
            t0 = time.monotonic()
            sub = Subscriber(mq.port, ack_delay)
            deadline = t0 + 300
            while sub.count() < backlog and time.monotonic() < deadline:
                time.sleep(0.02)
            dt = time.monotonic() - t0
            got = sub.count()
            sub.close()
            cpu = sum(proc.cpu_times()[:2]) - cpu0
            return rate_in, got / dt, cpu / max(got, 1) * 1e6
        finally:
            mq.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=("crash", "drain", "both"), default="crash")
    ap.add_argument("--rate", type=float, default=2300.0)
    ap.add_argument("--kill-after", type=float, default=4.0)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--ack-delay", type=float, default=0.1, help="subscriber acknowledges this long after receipt")
    ap.add_argument("--subscriber-down", type=float, default=0.0, help="subscriber away this long before the kill")
    ap.add_argument("--backlog", type=int, default=50_000, help="drain mode: queued messages")
    ap.add_argument("--only", default="", help="run settings whose name contains this")
    args = ap.parse_args()
    settings = {k: v for k, v in SETTINGS.items() if args.only in k}
    if args.mode in ("crash", "both"):
        down = f", subscriber away for the last {args.subscriber_down:.1f} s" if args.subscriber_down else ""
        print(f"mosquitto kill -9 after {args.kill_after:.0f} s of QoS 1 publishing at {args.rate:.0f} msg/s; "
              f"subscriber acknowledges {args.ack_delay:.2f} s after receipt{down}; {args.runs} run(s) per setting")
        print(f"{'setting':45s} {'msg/s':>7s} {'broker µs/msg':>14s} {'lost (acked, never delivered)':>30s}"
              f" {'delivered twice':>16s} {'last save before kill':>22s}")
        for name, conf in settings.items():
            for _ in range(args.runs):
                r = run(name, conf, args.rate, args.kill_after, args.ack_delay, args.subscriber_down)
                print(f"{name:45s} {r['rate']:7.0f} {r['cpu_us']:14.1f} {r['lost']:30.0f} {r['again']:16.0f}"
                      f" {r['save_age']:20.2f} s", flush=True)
    if args.mode in ("drain", "both"):
        print(f"draining a backlog of {args.backlog} queued messages (subscriber acks after {args.ack_delay:.2f} s)")
        ref: float | None = None
        for name, conf in settings.items():
            rate_in, rate, cpu = drain(conf, args.backlog, args.ack_delay)
            if not rate:
                raise SystemExit(f"{name}: the subscriber drained nothing; no figure to compare")
            ref = ref or rate
            print(f"{name:45s} queued at {rate_in:7.0f} msg/s; drained at {rate:7.0f} msg/s "
                  f"({rate / ref:4.2f}x the first row), broker {cpu:7.1f} µs/msg", flush=True)


if __name__ == "__main__":
    main()
