"""gmqtt with an ingester's PUBLISH path made lean: the hot loop of `shelterwatch cloud ingest`.

gmqtt keeps everything that is hard to get right: connecting, the persistent session, keepalive,
reconnects, subscriptions, MQTT 5 / 3.1.1. Only inbound PUBLISH packets of the common shape take a
shorter road here, because measured under load gmqtt's general path cost about as much CPU as our
whole validation pipeline: per message it builds struct format strings, parses a property dict,
logs at debug level, checks whether the callback is a coroutine, and sends the PUBACK through four
layers with one socket write each.

The short road (QoS 0/1, a topic name, no MQTT 5 properties — what gateways send):
  topic and payload are sliced out, the sink runs, and THEN the PUBACK is queued.
Anything else (QoS 2, properties such as a topic alias or user properties, a topic that is not
UTF-8, an empty topic) goes through gmqtt's own parser and `on_message`, unchanged.

Acknowledgements, both roads: every PUBACK of a connection goes into one buffer (`adopt` routes
gmqtt's own PUBACKs there too, so they stay in the order the PUBLISH packets came). At the end of
the event-loop step, i.e. after the read burst's messages went through the pipeline, the buffer is
handed to the ingester's durability point (`durable.after`, cloud/ingest/durability.py) and written
in one socket write once everything the pipeline did with those messages is durable: stored or
spooled, dead letters committed, events seen by the alarm engine. So the broker deletes a message
only when a crash of the ingester can no longer lose it. Acks meant for a connection that has since
dropped are discarded: the broker delivers those messages again on the next connection.

Written against gmqtt 0.8, whose Client delegates every packet to its `MqttPackageHandler`
(`_package_handler._handle_packet(cmd, packet)`): that one method is wrapped on the instance. The
tests run the ingester through both roads on a real mosquitto and on the embedded amqtt broker.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any

import gmqtt
from gmqtt.mqtt.constants import MQTTv50

from cloud.ingest.durability import Durable

PUBLISH = 0x30
PUBACK = b"\x40\x02"
PUBACK_TYPE = 0x40

Sink = Callable[[str, bytes, float], object]


class LeanPublishClient(gmqtt.Client):
    """`durable`: the point acknowledgements wait for; None acknowledges at the end of the step."""

    def __init__(self, client_id: str, sink: Sink, durable: Durable | None = None, **kwargs: Any) -> None:
        super().__init__(client_id, **kwargs)
        self._sink = sink
        self._durable = durable
        self._acks = bytearray()
        self._acks_conn: Any = None
        self._flush_scheduled = False
        self._ready: deque[tuple[Any, bytes]] = deque()  # durable now: to write on the loop
        self._ready_scheduled = False
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

    def adopt(self, protocol: Any) -> None:
        """Route gmqtt's own PUBACKs of this connection into our buffer (call on each connect: gmqtt
        makes a new protocol object per connection). Other packets are written at once."""
        write = protocol.write_data
        protocol._sw_raw_write = write

        def write_data(data: bytes) -> None:
            if data and data[0] == PUBACK_TYPE:
                self._buffer_ack(data)
            else:
                write(data)

        protocol.write_data = write_data

    def _queue_ack(self, mid: int) -> None:
        """`_buffer_ack` inlined for the lean road's PUBACK (one per message)."""
        conn = self._package_handler._connection
        if self._acks_conn is not conn:  # acks for a dropped connection are void: the broker redelivers
            self._acks.clear()
            self._acks_conn = conn
        acks = self._acks
        acks += PUBACK
        acks.append(mid >> 8)
        acks.append(mid & 0xFF)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_acks)

    def _buffer_ack(self, packet: bytes) -> None:
        conn = self._package_handler._connection
        if self._acks_conn is not conn:  # acks for a dropped connection are void: the broker redelivers
            self._acks.clear()
            self._acks_conn = conn
        self._acks += packet
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_acks)

    def _flush_acks(self) -> None:
        """End of the event-loop step: the burst's messages went through the pipeline."""
        self._flush_scheduled = False
        conn, data = self._acks_conn, bytes(self._acks)
        self._acks.clear()
        if not data or conn is None:
            return
        if self._durable is None:
            self._write_acks(conn, data)
        else:
            self._durable.after(partial(self._acks_durable, asyncio.get_running_loop(), conn, data))

    def _acks_durable(self, loop: asyncio.AbstractEventLoop, conn: Any, data: bytes) -> None:
        """On the durability point's thread (callbacks come one at a time, in order): hand the acks
        to the loop, one wake-up for all that became durable together."""
        self._ready.append((conn, data))
        if not self._ready_scheduled:
            self._ready_scheduled = True
            loop.call_soon_threadsafe(self._write_ready)

    def _write_ready(self) -> None:
        self._ready_scheduled = False
        while self._ready:
            self._write_acks(*self._ready.popleft())

    def _write_acks(self, conn: Any, data: bytes) -> None:
        if conn is self._package_handler._connection:
            proto = conn._protocol
            transport = getattr(proto, "_transport", None)
            if transport is not None and transport.is_closing():
                return  # stopped or lost meanwhile: the broker delivers these again
            getattr(proto, "_sw_raw_write", proto.write_data)(data)
