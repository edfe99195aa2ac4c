"""How the web part talks to gateways: publish a command, hear command results and device health.
Chosen by the broker URL, like the ingester: `mqtt://…` (paho, one broker) or `nats://h1,h2,h3`
(nats-py, a NATS cluster).

On NATS a command is stored before it is sent, as an edge's QoS 1 PUBLISH is: a JetStream publish into
the MQTT layer's stream (`$MQTT.msgs.sw.v1.<site>.<gw>.<device>.cmd`, cloud/cluster/partition.py
`command_subject`), acknowledged once the stream's replicas hold it. The MQTT layer delivers it at
QoS 1 to the gateway's persistent session, from whichever node the gateway is connected to, also when
it subscribed there a moment ago or connects later (a command carries its own expiry: the edge refuses
a stale one). A plain NATS publish reached MQTT subscribers at QoS 0 only, and only on nodes that had
already heard of the gateway's subscription: a command sent just after the gateway moved node was
lost. Results and device health come back on the partitioned uplink
subjects (cloud/cluster/partition.py); every replica hears every result and records it in the shared
database, so the page that sent a command sees its answer whichever replica took it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

from cloud.cluster import partition as P
from cloud.ingest.jetstream import is_nats_url, parse_servers

log = logging.getLogger(__name__)
OnMessage = Callable[[str, bytes], None]  # (MQTT-style topic, payload)


class MqttLink:
    def __init__(self, url: str, username: str | None = None, password: str | None = None) -> None:
        self.url = url
        self.username, self.password = username, password
        self._client: Any = None

    def start(self, on_message: OnMessage, name: str, timeout: float = 10.0) -> None:
        from cloud.paho_client import start_client

        self._client = start_client(self.url, name, [("sw/v1/+/+/+/cmd-result", 1), ("sw/v1/+/+/+/health", 0)],
                                    lambda _c, _u, msg: on_message(msg.topic, bytes(msg.payload)),
                                    self.username, self.password, wait_s=timeout)

    def connected(self) -> bool:
        return self._client is not None and bool(self._client.is_connected())

    def publish(self, topic: str, payload: bytes) -> str:
        """'' when handed to the broker, else why not."""
        info = self._client.publish(topic, payload, qos=1)
        return "" if info.rc == 0 else f"publish failed rc={info.rc}"

    def stop(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None


class NatsLink:
    def __init__(self, url: str, username: str | None = None, password: str | None = None) -> None:
        self.servers = parse_servers(url)
        self.username, self.password = username, password
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.nc: Any = None

    def start(self, on_message: OnMessage | None, name: str, timeout: float = 10.0) -> None:
        """Connect; with `on_message`, hear command results and device health (None: publish only)."""
        import nats

        from device_profiles import wire

        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="commands-nats", daemon=True)
        self._thread.start()

        async def cb(m: Any) -> None:
            up = P.parse_subject(m.subject)
            if up is not None and on_message is not None:
                on_message(up.topic, m.data)

        async def connect() -> None:
            self.nc = await nats.connect(servers=self.servers, name=f"{name}-{wire.new_id()[:8]}", connect_timeout=2,
                                         ping_interval=2, max_outstanding_pings=3, reconnect_time_wait=0.5,
                                         max_reconnect_attempts=-1, user=self.username, password=self.password)
            if on_message is not None:
                await self.nc.subscribe(P.partitions_subject_filter("cmd-result"), cb=cb)
                await self.nc.subscribe(P.partitions_subject_filter("health"), cb=cb)
            await self.nc.flush()

        try:
            asyncio.run_coroutine_threadsafe(connect(), self._loop).result(timeout)
        except Exception as e:  # the API answers 503 until it connects; keep trying meanwhile
            log.warning("commands: cannot connect to NATS %s: %s", self.servers, e)

    def connected(self) -> bool:
        return self.nc is not None and bool(self.nc.is_connected)

    def publish(self, topic: str, payload: bytes) -> str:
        """'' once the stream holds the command (QoS 1 to the gateway), else why not."""
        assert self._loop is not None
        try:
            asyncio.run_coroutine_threadsafe(self._publish(topic, payload), self._loop).result(6)
        except Exception as e:
            return f"publish failed: {type(e).__name__} {e}".rstrip()
        return ""

    async def _publish(self, topic: str, payload: bytes) -> None:
        js = self.nc.jetstream(timeout=5)
        await js.publish(P.stored_subject(topic), payload, headers={P.MQTT_QOS_HEADER: "1"})

    def stop(self) -> None:
        if self._loop is None:
            return
        if self.nc is not None:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self.nc.close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(5)
        self._loop = None


def make_link(url: str, username: str | None = None, password: str | None = None) -> MqttLink | NatsLink:
    return NatsLink(url, username, password) if is_nats_url(url) else MqttLink(url, username, password)
