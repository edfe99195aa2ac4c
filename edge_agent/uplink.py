"""MQTT uplink (paho-mqtt 2.x): drains the outbox at QoS 1, live first and backlog in order behind.

Rows are deleted from the outbox only when paho reports the PUBACK (`on_publish` with the mid).
The session is persistent (clean_session False, fixed client id) so messages in flight when the
link drops are re-sent by paho on reconnect under the same mid; we never publish them twice.
While disconnected nothing is handed to paho: new rows wait in SQLite, bounded, not in RAM.

A broker cluster (`uplink.url` a list, e.g. the three NATS nodes): one node at a time; every new
connection attempt after the first goes to the next node in the list, so a node that is lost or
refuses is left at once, and paho re-sends the QoS 1 messages still in flight there to the next one.
The session (the edge's command subscription) and the retained status live in the cluster, not in
one node. Gateways start at different nodes (by client id) so a fleet spreads over the cluster.
A node that hangs without closing the connection (SIGSTOP, a frozen VM) is only noticed by MQTT's
keepalive, after up to twice `keepalive_s`: use a short keepalive (5 s) with a cluster.

Threading: paho runs its network loop in its own thread (`loop_start`); everything else (the
outbox, the pump) runs in the agent's thread. The two meet only in `_acked` under a lock.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable
from typing import Any

import msgspec
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from device_profiles import wire
from edge_agent.clock import ClockSkew
from edge_agent.config import Uplink as UplinkConfig
from edge_agent.outbox import Outbox, Row

log = logging.getLogger(__name__)


class Uplink:
    def __init__(
        self,
        cfg: UplinkConfig,
        site: str,
        gateway: str,
        outbox: Outbox,
        on_command: Callable[[str, bytes], None] | None = None,
        birth: Callable[[], wire.Status] | None = None,
        live_max: int = 20000,
    ) -> None:
        self.cfg, self.site, self.gateway, self.outbox = cfg, site, gateway, outbox
        self.on_command = on_command
        self.birth = birth or (lambda: wire.Status(ts=wire.now(), state="online"))
        self.client_id = cfg.client_id or f"sw-edge-{site}-{gateway}"
        self.status_topic = wire.topic(site, gateway, wire.Kind.STATUS)
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=self.client_id, clean_session=False, protocol=mqtt.MQTTv311
        )
        if cfg.username:
            c.username_pw_set(cfg.username, cfg.password)
        if cfg.use_tls:
            t = cfg.tls
            c.tls_set(
                ca_certs=t.ca_file if t else None,
                certfile=t.cert_file if t else None,
                keyfile=t.key_file if t else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
            if t and t.insecure:
                c.tls_insecure_set(True)
        self.client_will_ts = wire.now()
        self.servers = cfg.servers
        self._server_i = zlib.crc32(self.client_id.encode()) % len(self.servers)
        self._attempts = 0
        c.on_pre_connect = self._pre_connect  # paho calls it before every connection attempt
        c.reconnect_delay_set(min_delay=max(1, int(cfg.reconnect_min_s)), max_delay=max(1, int(cfg.reconnect_max_s)))
        c.max_inflight_messages_set(cfg.window)
        c.max_queued_messages_set(0)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_message = self._on_message
        self.client = c
        self.connected = False
        self._lock = threading.Lock()
        self._acked: deque[int] = deque()
        self._inflight: dict[int, int] = {}  # mid → outbox row id
        self._inflight_rows: set[int] = set()
        self._live: deque[Row] = deque()
        self._live_max = live_max
        self._backlog_hi = 0  # rows up to this id are backlog (stored before the current connection)
        self._backlog_cur = 0
        self._need_reset = False
        self.wake = threading.Event()
        self.clock = ClockSkew()  # our clock against the cloud's time beacon
        # While held (an uplink on trial, edge_agent/apply.py) nothing leaves the outbox: a broker
        # the cloud does not read would acknowledge, and so delete, what the cloud never got.
        self.hold = False
        self.sent = 0
        self.acks = 0
        self.connects = 0
        self.last_error = ""

    # ------------------------------------------------------------------ paho callbacks (network thread)

    @property
    def server(self) -> tuple[str, int]:
        """The broker (node) of the current or next connection."""
        return self.servers[self._server_i]

    def _pre_connect(self, client: mqtt.Client, userdata: Any) -> None:
        """Before every connection attempt: the next node of a cluster (after the first attempt),
        then the last will of this connection."""
        if self._attempts and len(self.servers) > 1:
            self._server_i = (self._server_i + 1) % len(self.servers)
            # paho's `host` setter refuses while CONNECTING (its state here); reconnect() reads these next
            client._host, client._port = self.server
        self._attempts += 1
        self._arm_will(client)

    def _arm_will(self, client: mqtt.Client) -> None:
        """The last will of the connection about to be made, timed now (so the birth that follows
        carries the time this connection was made; see `_on_connect`)."""
        self.client_will_ts = wire.now()
        client.will_set(self.status_topic, wire.encode(wire.last_will(self.client_will_ts)), qos=1, retain=True)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any = None) -> None:
        if rc.is_failure:
            self.last_error = f"connect refused: {rc}"
            log.warning("MQTT %s", self.last_error)
            return
        client.subscribe([(wire.cmd_topic(self.site, self.gateway), 1), (wire.TIME_TOPIC, 0),
                          *((t, 1) for t in wire.gateway_config_subscriptions(self.site, self.gateway))])
        # The birth carries the same time as this connection's last will: a status's time says which
        # connection it is about. The will of this connection then ties with its birth (and, coming
        # later, wins), while a stale will of an older connection is older than this birth.
        birth = msgspec.structs.replace(self.birth(), ts=self.client_will_ts)
        client.publish(self.status_topic, wire.encode(birth), qos=1, retain=True)
        with self._lock:
            self._need_reset = True
            self.connected = True
            self.connects += 1
        self.wake.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any = None) -> None:
        with self._lock:
            self.connected = False
        self.last_error = f"disconnected: {rc}"

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, rc: Any, props: Any) -> None:
        # paho calls this holding its own message lock: take none of ours (deque.append is atomic)
        self._acked.append(mid)
        self.wake.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == wire.TIME_TOPIC:
            try:
                beacon = wire.decode_beacon(bytes(msg.payload))
            except wire.WireError:
                return  # a malformed beacon is no sample (and not worth a log line each)
            self.clock.sample(time.time(), beacon.ts.timestamp(), time.monotonic())
            return
        if self.on_command is not None:
            try:
                self.on_command(msg.topic, bytes(msg.payload))
            except Exception:  # a bad command must never kill the network thread
                log.exception("command handler failed")

    # ------------------------------------------------------------------ agent thread

    def start(self) -> None:
        host, port = self.server
        self.client.connect_async(host, port, keepalive=self.cfg.keepalive_s)
        self.client.loop_start()

    def stop(self, graceful: bool = True) -> None:
        if graceful and self.connected:
            off = wire.Status(ts=wire.now(), state="offline", reason="agent stopped")
            info = self.client.publish(self.status_topic, wire.encode(off), qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(2.0)
        self.client.disconnect()
        self.client.loop_stop()

    def offer(self, rows: list[Row]) -> None:
        """Freshly committed rows: they go out ahead of the backlog while we are connected."""
        if not self.connected:
            return  # they are in SQLite; the next connection takes them as backlog
        for r in rows:
            if len(self._live) >= self._live_max:
                break  # beyond this they wait in SQLite and are picked up as backlog
            self._live.append(r)
        self.wake.set()

    def pending(self) -> int:
        return len(self._inflight)

    def backlog_remaining(self) -> bool:
        return self._backlog_cur < self._backlog_hi

    def pump(self, budget: int = 1000) -> int:
        """Process PUBACKs, then hand paho up to `budget` rows: live first, then backlog in order."""
        acked = []
        while self._acked:
            acked.append(self._acked.popleft())
        with self._lock:
            reset, self._need_reset = self._need_reset, False
            connected = self.connected
        if acked:
            ids = []
            for mid in acked:
                rid = self._inflight.pop(mid, None)
                if rid is not None:
                    ids.append(rid)
                    self._inflight_rows.discard(rid)
            self.outbox.ack(ids)
            self.acks += len(ids)
        if reset:
            # everything stored before this connection is backlog, oldest first
            self._live.clear()
            self._backlog_hi = self.outbox.max_id()
            self._backlog_cur = 0
        if not connected or self.hold:
            return 0
        n = 0
        room = min(budget, self.cfg.window - len(self._inflight))
        while room > 0 and self._live:
            r = self._live.popleft()
            if r.id in self._inflight_rows or r.id <= self._backlog_hi:
                continue
            if not self._publish(r):
                return n
            n += 1
            room -= 1
        if room > 0 and self._backlog_cur < self._backlog_hi:
            rows = self.outbox.backlog(self._backlog_cur, self._backlog_hi, room, self._inflight_rows)
            if not rows:
                self._backlog_cur = self._backlog_hi
            for r in rows:
                if not self._publish(r):
                    return n
                self._backlog_cur = r.id
                n += 1
        return n

    def _publish(self, r: Row) -> bool:
        # PUBACKs are matched to rows in pump(), on this thread, after publish() returned the mid
        info = self.client.publish(r.topic, r.payload, qos=1, retain=r.retain)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            return False  # not taken by paho: the row stays in SQLite and goes out as backlog later
        # NO_CONN: paho keeps a QoS 1 message and sends it on reconnect (persistent session)
        self._inflight[info.mid] = r.id
        self._inflight_rows.add(r.id)
        self.sent += 1
        return info.rc == mqtt.MQTT_ERR_SUCCESS

    def publish_now(self, topic: str, payload: bytes, retain: bool = False, qos: int = 0) -> None:
        """Not durable (gateway health, the running config): best effort, only while connected."""
        if self.connected:
            self.client.publish(topic, payload, qos=qos, retain=retain)

    def republish_birth(self) -> None:
        """The birth again, with this connection's time (the running config changed)."""
        birth = msgspec.structs.replace(self.birth(), ts=self.client_will_ts)
        self.publish_now(self.status_topic, wire.encode(birth), retain=True, qos=1)

    def wait_idle(self, timeout: float) -> bool:
        """Until nothing is in flight and nothing is waiting (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.pump()
            if not self._inflight and not self._live and not self.backlog_remaining() and self.outbox.count == 0:
                return True
            self.wake.wait(0.05)
            self.wake.clear()
        return False
