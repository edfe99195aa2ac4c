"""The ingester's lean PUBLISH road on gmqtt (cloud/ingest/gmqtt_publish.py), on a real mosquitto
and on the embedded amqtt broker: plain messages take the short road, messages with MQTT 5
properties take gmqtt's own; both reach the handler intact and both are acknowledged (a second
session with the same client id gets nothing redelivered)."""

from __future__ import annotations

import threading
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from cloud.broker import EmbeddedBroker
from cloud.ingest.mqtt_gmqtt import GmqttIngestClient

pytestmark = pytest.mark.integration


class Recorder:
    def __init__(self) -> None:
        self.got: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()

    def __call__(self, topic: str, payload: bytes, received: float) -> None:
        with self.lock:
            self.got.append((topic, payload))

    def wait(self, n: int, timeout: float = 15.0) -> list[tuple[str, bytes]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.got) >= n:
                    return list(self.got)
            time.sleep(0.02)
        raise AssertionError(f"got {len(self.got)} of {n} messages")


def publisher(port: int, v5: bool) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="pub", protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311)
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c


def run_session(url: str, version: str, rec: Recorder) -> GmqttIngestClient:
    c = GmqttIngestClient(url, rec, "lean-test", version, shared_group=None, site="s1")
    c.start()
    assert c.wait_connected(10)
    return c


@pytest.mark.parametrize("version", ["5", "3.1.1"])
def test_both_roads_deliver_and_acknowledge(mosquitto, version):
    rec = Recorder()
    ingest = run_session(mosquitto.url, version, rec)
    pub = publisher(mosquitto.port, v5=True)
    try:
        sent: list[tuple[str, bytes]] = []
        for i in range(200):
            t, p = f"sw/v1/s1/gw{i % 3}/dev{i % 7}/telemetry", f'{{"n":{i},"é":"ü"}}'.encode()
            props = None
            if i % 10 == 0:  # properties on the wire: gmqtt's own road (only MQTT 5 carries them)
                props = Properties(PacketTypes.PUBLISH)
                props.UserProperty = ("k", str(i))
                props.MessageExpiryInterval = 600
            pub.publish(t, p, qos=1 if i % 4 else 0, properties=props).wait_for_publish(5)
            sent.append((t, p))
        got = rec.wait(len(sent))
        assert sorted(got) == sorted(sent)
        lean = ingest.fast_path
        if version == "5":
            assert lean == len(sent) - 20  # every 10th carried properties
        else:
            assert lean == len(sent)  # a 3.1.1 session gets no properties: all on the short road
    finally:
        ingest.stop()
    # Same client id, persistent session: anything not acknowledged would come again.
    again = Recorder()
    ingest = run_session(mosquitto.url, version, again)
    try:
        pub.publish("sw/v1/s1/gw0/dev0/telemetry", b"marker", qos=1).wait_for_publish(5)
        assert again.wait(1) == [("sw/v1/s1/gw0/dev0/telemetry", b"marker")]
        time.sleep(0.5)
        assert len(again.got) == 1
    finally:
        ingest.stop()
        pub.loop_stop()
        pub.disconnect()


def test_embedded_amqtt_broker():
    broker = EmbeddedBroker().start()
    rec = Recorder()
    try:
        ingest = run_session(broker.url, "3.1.1", rec)
        pub = publisher(broker.port, v5=False)
        try:
            sent = [(f"sw/v1/s1/gw1/dev{i}/event", f"{i}".encode()) for i in range(50)]
            for t, p in sent:
                pub.publish(t, p, qos=1).wait_for_publish(5)
            assert sorted(rec.wait(len(sent))) == sorted(sent)
            assert ingest.fast_path == len(sent)
        finally:
            ingest.stop()
            pub.loop_stop()
            pub.disconnect()
    finally:
        broker.stop()
