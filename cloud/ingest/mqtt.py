"""The ingester's MQTT side (paho-mqtt 2.x, its own network thread).

MQTT 5 where the broker speaks it (mosquitto, EMQX): shared subscriptions `$share/<group>/…` let
N ingesters split the load, and a session expiry keeps QoS 1 messages queued across a restart.
MQTT 3.1.1 for the embedded amqtt broker (protocol level 4 only): plain subscriptions, clean
session off. `version="auto"` asks for 5 and falls back to 3.1.1 when the broker refuses it.

paho acknowledges a QoS 1 message when `on_message` returns, i.e. after the pipeline has handed
it to the safety and storage paths.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from device_profiles import wire

log = logging.getLogger(__name__)


def parse_broker(url: str) -> tuple[str, int, bool, str | None, str | None]:
    u = urllib.parse.urlsplit(url if "://" in url else f"mqtt://{url}")
    tls = u.scheme in ("mqtts", "ssl", "tls")
    return u.hostname or "127.0.0.1", u.port or (8883 if tls else 1883), tls, u.username, u.password


def probe_version(url: str, timeout: float = 5.0) -> int:
    """5 if the broker accepts an MQTT 5 CONNECT, else 4 (3.1.1)."""
    host, port, tls, user, pw = parse_broker(url)
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


class BaseIngestClient:
    """What every ingest MQTT client shares: its settings, the topic filters it subscribes to and
    the `connected` flag (set once subscribed). Subclasses own the protocol work."""

    def __init__(
        self,
        url: str,
        handler: Callable[[str, bytes, float], object],
        client_id: str,
        version: str = "auto",
        shared_group: str | None = "ingest",
        site: str = "+",
        session_expiry: int = 3600,
    ) -> None:
        self.url = url
        self.handler = handler
        self.client_id = client_id
        self.version = version
        self.shared_group = shared_group
        self.site = site
        self.session_expiry = session_expiry
        self.connected = threading.Event()
        self.protocol = 0

    def filters(self) -> list[str]:
        """Shared subscriptions only on MQTT 5 (amqtt and other 3.1.1 brokers get plain ones)."""
        subs = wire.subscriptions(self.site)
        if self.protocol == 5 and self.shared_group:
            subs = [wire.shared(s, self.shared_group) for s in subs]
        return subs

    def wait_connected(self, timeout: float = 10.0) -> bool:
        return self.connected.wait(timeout)


class IngestClient(BaseIngestClient):
    """paho-mqtt: subscribes to the wire contract's uplink topics and feeds every message to `handler`."""

    _client: mqtt.Client | None = None

    def start(self) -> None:
        host, port, tls, user, pw = parse_broker(self.url)
        level = {"5": 5, "3.1.1": 4, "311": 4, "4": 4}.get(self.version)
        if level is None:
            level = probe_version(self.url)
        self.protocol = level
        proto = mqtt.MQTTv5 if level == 5 else mqtt.MQTTv311
        kw: dict[str, Any] = {} if level == 5 else {"clean_session": False}
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=proto, **kw)
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
            connect_kw = {"clean_start": False, "properties": props}
        self._client = c
        c.connect_async(host, port, keepalive=30, **connect_kw)
        c.loop_start()

    def _on_connect(self, c: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if rc.is_failure:
            log.error("broker refused the connection: %s", rc)
            return
        if self.protocol == 5:
            c.subscribe([(f, SubscribeOptions(qos=1)) for f in self.filters()])
        else:
            c.subscribe([(f, 1) for f in self.filters()])
        log.info("connected to %s (MQTT %s), subscribed", self.url, "5" if self.protocol == 5 else "3.1.1")

    def _on_subscribe(self, c: mqtt.Client, userdata: Any, mid: int, rcs: Any, props: Any) -> None:
        self.connected.set()  # "connected" means subscribed: nothing published from now on is missed

    def _on_disconnect(self, c: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        self.connected.clear()
        # A disconnect we asked for is routine; anything else is worth a warning (paho reconnects).
        (log.info if not getattr(rc, "is_failure", True) else log.warning)("disconnected from broker: %s", rc)

    def _on_message(self, c: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = msg._topic.decode("utf-8", "replace")
        self.handler(topic, bytes(msg.payload), time.time())

    def stop(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None
