"""The cloud's time beacon: its clock on `sw/v1/time` every few seconds (docs/wire.md, "Time").

MQTT carries no time, so a gateway cannot tell its clock is wrong from the broker alone. Each
ingester publishes a `TimeBeacon` (QoS 0, not retained: a retained beacon would be old news to
the next subscriber); gateways compare it with their own clock (edge_agent/clock.py) and report
the skew in their health. With several ingesters there are several beacons: each is a sample.
Its own small paho connection, so a telemetry backlog on the ingest lanes never delays a beacon.
On a NATS cluster (cloud/ingest/jetstream.py) it is a plain NATS publish on `sw.v1.time` through the
ingester's connection (`send`): the nodes hand it to the gateways' MQTT subscriptions at QoS 0.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from cloud.broker_account import BrokerAccount
from device_profiles import wire

log = logging.getLogger(__name__)


class TimeBeacon:
    def __init__(
        self, url: str, client_id: str, interval_s: float = 5.0, account: BrokerAccount | None = None,
        send: Callable[[str, bytes], bool] | None = None,
    ) -> None:
        self.url, self.client_id, self.interval_s, self.account = url, client_id, interval_s, account
        self.send = send  # publish through an existing connection (NATS) instead of a paho client of our own
        self.sent = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: Any = None

    def start(self) -> TimeBeacon:
        if self.send is None:
            self._connect()
        self._thread = threading.Thread(target=self._run, name="time-beacon", daemon=True)
        self._thread.start()
        return self

    def _connect(self) -> None:
        import paho.mqtt.client as mqtt

        from cloud.ingest.mqtt import parse_broker

        host, port, tls, user, pw = parse_broker(self.url, self.account)
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv311)
        if tls:
            c.tls_set()
        if user:
            c.username_pw_set(user, pw)
        c.reconnect_delay_set(1, 10)
        c.connect_async(host, port, keepalive=30)
        c.loop_start()
        self._client = c

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.publish()

    def publish(self) -> None:
        msg = wire.TimeBeacon(ts=wire.now(), source=self.client_id)
        if self.send is not None:
            self.sent += bool(self.send(wire.TIME_TOPIC, wire.encode(msg)))
            return
        c = self._client
        if c is not None and c.is_connected():
            c.publish(wire.TIME_TOPIC, wire.encode(msg), qos=0, retain=False)
            self.sent += 1

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None
