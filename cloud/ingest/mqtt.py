"""The ingester's MQTT side (paho-mqtt 2.x, its own network thread).

MQTT 5 where the broker speaks it (mosquitto, EMQX): shared subscriptions `$share/<group>/…` let
N ingesters split the load, and a session expiry keeps QoS 1 messages queued across a restart.
MQTT 3.1.1 for the embedded amqtt broker (protocol level 4 only): plain subscriptions, clean
session off. `version="auto"` asks for 5 and falls back to 3.1.1 when the broker refuses it.

Two lanes, two connections: the **safety lane** (client id `<id>-safety`, its own persistent
session, so its own queue in the broker) carries only `wire.safety_subscriptions()` (gateway status,
device events and health); the **main lane** carries the telemetry bulk. When the ingester falls
behind, the broker's backlog piles up on the main lane while events still arrive at once on the
safety lane. Both lanes call the same handler; a client guarantees it is never called concurrently.

Acknowledgement: paho runs with manual acks; after each message the client asks the ingester's
durability point (`durable.after`, cloud/ingest/durability.py) and sends the PUBACK once the message
is durable. Acks meant for a connection that has since dropped are not sent (the broker redelivers).

Receive Maximum (MQTT 5 CONNECT property, `receive_maximum`): how many unacknowledged QoS 1 messages
the broker may send a lane. mosquitto 2 takes it as that client's in-flight limit instead of its
`max_inflight_messages` (which still applies to MQTT 3.1.1 clients). It must cover the messages
that arrive while acks wait for the store (rate × ~50 ms), but not much more: mosquitto writes a
client's whole in-flight window before it serves other sockets, so a window of 65,535 let a
40,000-message backlog on the main lane hold a live event on the safety lane back until the backlog
was drained (tests/integration/test_ingest_lanes.py); 4,096 keeps both.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.parse
from collections.abc import Callable
from functools import partial
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from cloud.broker_account import BrokerAccount, redact
from cloud.ingest.durability import Durable
from device_profiles import wire

log = logging.getLogger(__name__)


def parse_broker(
    url: str, account: BrokerAccount | None = None
) -> tuple[str, int, bool, str | None, str | None]:
    """(host, port, tls, user, password): the account if given, else credentials left in the URL."""
    u = urllib.parse.urlsplit(url if "://" in url else f"mqtt://{url}")
    tls = u.scheme in ("mqtts", "ssl", "tls")
    user, pw = (account.username, account.password) if account else (u.username, u.password)
    return u.hostname or "127.0.0.1", u.port or (8883 if tls else 1883), tls, user, pw


def probe_version(url: str, timeout: float = 5.0, account: BrokerAccount | None = None) -> int:
    """5 if the broker accepts an MQTT 5 CONNECT, else 4 (3.1.1)."""
    host, port, tls, user, pw = parse_broker(url, account)
    result: dict[str, Any] = {}
    done = threading.Event()

    def on_connect(c: mqtt.Client, u: Any, flags: Any, rc: Any, props: Any) -> None:
        result["ok"] = not rc.is_failure
        done.set()

    def on_disconnect(c: mqtt.Client, u: Any, flags: Any, rc: Any, props: Any) -> None:
        result.setdefault("ok", False)
        done.set()

    c = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"sw-probe-{wire.new_id()[:8]}", protocol=mqtt.MQTTv5
    )
    if tls:
        c.tls_set()
    if user:
        c.username_pw_set(user, pw)
    c.on_connect, c.on_disconnect = on_connect, on_disconnect
    try:
        c.connect(host, port, keepalive=10)
    except OSError:
        raise
    c.loop_start()
    done.wait(timeout)
    c.disconnect()
    c.loop_stop()
    return 5 if result.get("ok") else 4


MAIN, SAFETY = "main", "safety"


class BaseIngestClient:
    """What every ingest MQTT client shares: its settings, the topic filters of each lane and the
    `connected` flag (set once every lane is subscribed). Subclasses own the protocol work.

    `lanes=False` puts every filter on one connection (the layout before the safety lane; kept
    for the benchmark's comparison and for brokers that limit connections per client)."""

    def __init__(
        self,
        url: str,
        handler: Callable[[str, bytes, float], object],
        client_id: str,
        version: str = "auto",
        shared_group: str | None = "ingest",
        site: str = "+",
        session_expiry: int = 3600,
        lanes: bool = True,
        safety_handler: Callable[[str, bytes, float], object] | None = None,
        account: BrokerAccount | None = None,
        durable: Durable | None = None,
        receive_maximum: int = 4096,
    ) -> None:
        self.url = url
        self.account = account
        self.receive_maximum = receive_maximum
        self.durable = durable  # acknowledge behind it (None: as soon as the handler returned)
        self.handler = handler
        self.handlers = {MAIN: handler, SAFETY: safety_handler or handler}  # per lane
        self.client_id = client_id
        self.version = version
        self.shared_group = shared_group
        self.site = site
        self.session_expiry = session_expiry
        self.lanes: tuple[str, ...] = (MAIN, SAFETY) if lanes else (MAIN,)
        self.lane_connected = {lane: threading.Event() for lane in self.lanes}
        self.connected = threading.Event()  # every lane subscribed
        self.lane_received = {lane: 0 for lane in self.lanes}
        self.protocol = 0

    def lane_client_id(self, lane: str) -> str:
        return self.client_id if lane == MAIN else f"{self.client_id}-{lane}"

    def _raw_filters(self, lane: str | None) -> list[str]:
        if lane is None or len(self.lanes) == 1:
            return wire.subscriptions(self.site)
        return wire.safety_subscriptions(self.site) if lane == SAFETY else wire.bulk_subscriptions(self.site)

    def _decorate(self, subs: list[str]) -> list[str]:
        """Shared subscriptions only on MQTT 5 (amqtt and other 3.1.1 brokers get plain ones).
        One group name serves both lanes: their filters differ, so each is its own shared group."""
        if self.protocol == 5 and self.shared_group:
            return [wire.shared(s, self.shared_group) for s in subs]
        return subs

    def filters(self, lane: str | None = None) -> list[str]:
        """The filters `lane` subscribes to; every lane's when `lane` is None."""
        return self._decorate(self._raw_filters(lane))

    def stale_filters(self, lane: str) -> list[str]:
        """The other lanes' filters: a persistent session made before the split (one connection for
        everything) still holds them, and would keep queuing events behind telemetry. Unsubscribed
        on connect; unsubscribing a filter the session does not hold is harmless."""
        if len(self.lanes) == 1:
            return []
        mine = set(self._raw_filters(lane))
        return self._decorate([f for f in wire.subscriptions(self.site) if f not in mine])

    def _lane_up(self, lane: str) -> None:
        self.lane_connected[lane].set()
        if all(e.is_set() for e in self.lane_connected.values()):
            self.connected.set()  # "connected" means subscribed: nothing published from now on is missed

    def _lane_down(self, lane: str) -> None:
        self.lane_connected[lane].clear()
        self.connected.clear()

    def received_by_lane(self) -> dict[str, int]:
        """Messages received per lane (tests, stats, /metrics)."""
        return dict(self.lane_received)

    def connected_lanes(self) -> list[str]:
        return [lane for lane, e in self.lane_connected.items() if e.is_set()]

    def wait_connected(self, timeout: float = 10.0) -> bool:
        return self.connected.wait(timeout)


class IngestClient(BaseIngestClient):
    """paho-mqtt: one paho client (one network thread) per lane, every message fed to `handler`.

    Two network threads would call the handler concurrently: one lock serialises them (the
    pipeline is single-threaded by design)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[str, mqtt.Client] = {}
        self._lock = threading.Lock()
        self._conn_gen = dict.fromkeys(self.lanes, 0)  # bumped on each connect: acks of older ones are void

    def start(self) -> None:
        level = {"5": 5, "3.1.1": 4, "311": 4, "4": 4}.get(self.version)
        if level is None:
            level = probe_version(self.url, account=self.account)
        self.protocol = level
        for lane in self.lanes:
            self._clients[lane] = self._start_lane(lane)

    def _start_lane(self, lane: str) -> mqtt.Client:
        host, port, tls, user, pw = parse_broker(self.url, self.account)
        level = self.protocol
        proto = mqtt.MQTTv5 if level == 5 else mqtt.MQTTv311
        kw: dict[str, Any] = {} if level == 5 else {"clean_session": False}
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.lane_client_id(lane),
            protocol=proto,
            userdata=lane,
            manual_ack=self.durable is not None,
            **kw,
        )
        c.max_inflight_messages_set(1000)
        c.max_queued_messages_set(0)
        c.reconnect_delay_set(1, 5)
        if tls:
            c.tls_set()
        if user:
            c.username_pw_set(user, pw)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        connect_kw: dict[str, Any] = {}
        if level == 5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self.session_expiry
            props.ReceiveMaximum = self.receive_maximum
            connect_kw = {"clean_start": False, "properties": props}
        c.connect_async(host, port, keepalive=30, **connect_kw)
        c.loop_start()
        return c

    def _on_connect(self, c: mqtt.Client, lane: str, flags: Any, rc: Any, props: Any) -> None:
        if rc.is_failure:
            log.error("broker refused the %s lane's connection: %s", lane, rc)
            return
        with self._lock:
            self._conn_gen[lane] += 1
        stale = self.stale_filters(lane)
        if stale:
            c.unsubscribe(stale)
        if self.protocol == 5:
            c.subscribe([(f, SubscribeOptions(qos=1)) for f in self.filters(lane)])
        else:
            c.subscribe([(f, 1) for f in self.filters(lane)])
        log.info("%s lane connected to %s (MQTT %s)", lane, redact(self.url), "5" if self.protocol == 5 else "3.1.1")

    def _on_subscribe(self, c: mqtt.Client, lane: str, mid: int, rcs: Any, props: Any) -> None:
        self._lane_up(lane)

    def _on_disconnect(self, c: mqtt.Client, lane: str, flags: Any, rc: Any, props: Any) -> None:
        self._lane_down(lane)
        # A disconnect we asked for is routine; anything else is worth a warning (paho reconnects).
        (log.info if not getattr(rc, "is_failure", True) else log.warning)(
            "%s lane disconnected from broker: %s", lane, rc
        )

    def _on_message(self, c: mqtt.Client, lane: str, msg: mqtt.MQTTMessage) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = msg._topic.decode("utf-8", "replace")
        payload = bytes(msg.payload)
        with self._lock:
            self.lane_received[lane] += 1
            self.handlers[lane](topic, payload, time.time())
            if self.durable is not None and msg.qos:
                self.durable.after(partial(self._ack, c, lane, self._conn_gen[lane], msg.mid, msg.qos))

    def _ack(self, c: mqtt.Client, lane: str, gen: int, mid: int, qos: int) -> None:
        """The message is durable: acknowledge it, unless its connection has dropped since."""
        if self._conn_gen[lane] == gen:
            c.ack(mid, qos)

    def stop(self) -> None:
        for c in self._clients.values():
            c.disconnect()
        for c in self._clients.values():
            c.loop_stop()
        self._clients = {}
