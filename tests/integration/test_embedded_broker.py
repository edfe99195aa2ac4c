"""The demo's embedded amqtt broker carries what the wire contract needs: QoS 1, retained status,
the last will, with paho-mqtt speaking MQTT 3.1.1."""

from __future__ import annotations

import queue
import socket

import paho.mqtt.client as mqtt
import pytest

from cloud.broker import EmbeddedBroker
from device_profiles import wire

pytestmark = pytest.mark.integration


def client(broker: EmbeddedBroker, cid: str, inbox: queue.Queue | None = None) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv311)
    if inbox is not None:
        c.on_message = lambda _c, _u, m: inbox.put((m.topic, m.payload, m.retain))
    return c


def test_qos1_retained_and_last_will():
    broker = EmbeddedBroker().start()
    try:
        status_topic = wire.topic("demo", "gw1", wire.Kind.STATUS)
        gw = client(broker, "gw1")
        gw.will_set(status_topic, wire.encode(wire.last_will()), qos=1, retain=True)
        gw.connect("127.0.0.1", broker.port)
        gw.loop_start()
        birth = wire.Status(ts=wire.now(), state="online")
        gw.publish(status_topic, wire.encode(birth), qos=1, retain=True).wait_for_publish(5)

        inbox: queue.Queue = queue.Queue()
        sub = client(broker, "cloud", inbox)
        sub.connect("127.0.0.1", broker.port)
        sub.subscribe("sw/v1/+/+/status", qos=1)
        sub.loop_start()
        topic, payload, retained = inbox.get(timeout=5)
        assert topic == status_topic and retained
        assert wire.decode(wire.Kind.STATUS, payload).state == "online"

        # Drop the gateway's socket without DISCONNECT: the broker must publish the will.
        gw.loop_stop()
        sock = gw.socket()
        assert sock is not None
        sock.shutdown(socket.SHUT_RDWR)
        sock.close()
        topic, payload, _ = inbox.get(timeout=10)
        assert wire.decode(wire.Kind.STATUS, payload).state == "offline"
        sub.loop_stop()
        sub.disconnect()
    finally:
        broker.stop()
