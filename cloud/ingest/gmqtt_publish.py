"""gmqtt with an ingester's PUBLISH path made lean: the hot loop of `shelterwatch cloud ingest`.

gmqtt keeps everything that is hard to get right: connecting, the persistent session, keepalive,
reconnects, subscriptions, MQTT 5 / 3.1.1. Only inbound PUBLISH packets of the common shape take a
shorter road here, because measured under load gmqtt's general path cost about as much CPU as our
whole validation pipeline: per message it builds struct format strings, parses a property dict,
logs at debug level, checks whether the callback is a coroutine, and sends the PUBACK through four
layers with one socket write each.

The short road (QoS 0/1, a topic name, no MQTT 5 properties — what gateways send):
  topic and payload are sliced out, the sink runs, and THEN the PUBACK is queued; the acks of one
  read burst go out in one socket write at the end of the event-loop step. So the broker deletes a
  message only after the pipeline has taken it (safety queue and storage queue in memory) — the same
  guarantee paho gives by acking when `on_message` returns.
Anything else (QoS 2, properties such as a topic alias or user properties, a topic that is not
UTF-8, an empty topic) goes through gmqtt's own parser and `on_message`, unchanged.

Written against gmqtt 0.8, whose Client delegates every packet to its `MqttPackageHandler`
(`_package_handler._handle_packet(cmd, packet)`): that one method is wrapped on the instance. The
tests run the ingester through both roads on a real mosquitto and on the embedded amqtt broker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import gmqtt
from gmqtt.mqtt.constants import MQTTv50

PUBLISH = 0x30
PUBACK = b"\x40\x02"

Sink = Callable[[str, bytes, float], object]


class LeanPublishClient(gmqtt.Client):
    def __init__(self, client_id: str, sink: Sink, **kwargs: Any) -> None:
        super().__init__(client_id, **kwargs)
        self._sink = sink
        self._acks = bytearray()
        self._acks_conn: Any = None
        self._flush_scheduled = False
        self.fast_path = 0  # messages that took the short road (tests check both roads are used)
        ph = self._package_handler
        self._gmqtt_handle_packet = ph._handle_packet
        ph._handle_packet = self._handle_packet

    def _handle_packet(self, cmd: int, packet: bytes) -> None:
        if cmd & 0xF0 == PUBLISH and self._publish(cmd, packet):
            self._package_handler._last_msg_in = time.monotonic()
            return
        self._gmqtt_handle_packet(cmd, packet)

    def _publish(self, cmd: int, raw: bytes) -> bool:
        """True if handled here; False hands the packet to gmqtt untouched."""
        qos = (cmd >> 1) & 3
        if qos == 2 or len(raw) < 2:
            return False
        end = 2 + ((raw[0] << 8) | raw[1])
        if end == 2 or len(raw) < end + (2 if qos else 0):
            return False
        try:
            topic = raw[2:end].decode()
        except UnicodeDecodeError:
            return False
        mid = 0
        if qos:
            mid = (raw[end] << 8) | raw[end + 1]
            end += 2
        if self._connection_state.protocol_version == MQTTv50:
            if len(raw) <= end or raw[end] != 0:
                return False  # properties present: gmqtt parses them (topic alias etc.)
            end += 1
        self._sink(topic, raw[end:], time.time())
        self.fast_path += 1
        if qos:
            self._queue_ack(mid)
        return True

    def _queue_ack(self, mid: int) -> None:
        conn = self._package_handler._connection
        if self._acks_conn is not conn:  # acks for a dropped connection are void: the broker redelivers
            self._acks.clear()
            self._acks_conn = conn
        self._acks += PUBACK
        self._acks.append(mid >> 8)
        self._acks.append(mid & 0xFF)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_acks)

    def _flush_acks(self) -> None:
        self._flush_scheduled = False
        conn, data = self._acks_conn, bytes(self._acks)
        self._acks.clear()
        if data and conn is not None and conn is self._package_handler._connection:
            proto = conn._protocol
            getattr(proto, "_sw_raw_write", proto.write_data)(data)
