"""Gateway lost → gateway-offline alarm, through a real broker's last will.

A gateway stand-in (`mosquitto_pub -l`, a real MQTT client that stays connected) registers the
wire contract's last will and is then killed with SIGKILL (no clean disconnect), so mosquitto
publishes the will. A minimal subscriber stands in for the ingester (built in parallel): it
decodes with `device_profiles.wire` and hands over through `SafetySink.put`, as ingest does.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from cloud.alarms.config import AlarmSiteConfig
from cloud.alarms.directory import StaticDirectory
from cloud.alarms.engine import GATEWAY_RULE, AlarmEngine
from cloud.alarms.store import AlarmStore
from cloud.safety import SafetyMessage
from device_profiles import wire
from tests.fixtures.servers import Mosquitto, need


def wait(pred: Any, timeout: float = 10.0) -> bool:
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(0.02)
    return False


def test_last_will_raises_gateway_offline_and_return_clears_it(tmp_path: Path, mosquitto: Mosquitto) -> None:
    cfg = AlarmSiteConfig.model_validate(
        {
            "site": "demo",
            "gateway_offline": {"silence": 3600},
            "devices": [{"id": "riser-1", "profile": "nanfang-fsm8", "gateway": "gw-1"}],
        }
    )
    store = AlarmStore(f"sqlite:///{tmp_path / 'a.db'}")
    engine = AlarmEngine(store, StaticDirectory([cfg]), [cfg], tick_s=0.05).start()

    def on_message(_c: Any, _u: Any, m: mqtt.MQTTMessage) -> None:
        t = wire.parse_topic(m.topic)
        if not m.payload:
            return
        engine.put(
            SafetyMessage(t.site, t.gateway, t.device, t.kind, wire.decode(t.kind, m.payload), time.time())
        )

    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="ingest-standin")
    sub.on_message = on_message
    sub.connect("127.0.0.1", mosquitto.port)
    for f in wire.subscriptions("demo"):
        sub.subscribe(f, qos=1)
    sub.loop_start()
    status = wire.topic("demo", "gw-1", wire.Kind.STATUS)
    gw = subprocess.Popen(
        [
            need("mosquitto_pub"),
            "-h",
            "127.0.0.1",
            "-p",
            str(mosquitto.port),
            "-i",
            "gw-1",
            "-q",
            "1",
            "-l",
            "-t",
            status,
            "--will-topic",
            status,
            "--will-retain",
            "--will-qos",
            "1",
            "--will-payload",
            wire.encode(wire.last_will()).decode(),
        ],
        stdin=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert gw.stdin is not None
        gw.stdin.write(wire.encode(wire.Status(ts=wire.now(), state="online")) + b"\n")
        gw.stdin.flush()
        time.sleep(0.5)
        assert store.list_alarms() == []
        t_lost = time.time()
        gw.send_signal(signal.SIGKILL)  # the gateway loses power: no DISCONNECT, the broker sends the will
        gw.wait(5)
        assert wait(lambda: any(a.active for a in store.list_alarms() if a.rule == GATEWAY_RULE))
        [a] = store.list_alarms()
        assert a.gateway == "gw-1" and "last will" in a.detail["reason"]
        assert a.raised_at - t_lost < 60
        back = wire.encode(wire.Status(ts=wire.now(), state="online"))
        subprocess.run(
            [
                need("mosquitto_pub"),
                "-h",
                "127.0.0.1",
                "-p",
                str(mosquitto.port),
                "-q",
                "1",
                "-r",
                "-t",
                status,
                "-m",
                back.decode(),
            ],
            check=True,
            timeout=10,
        )
        assert wait(lambda: not any(a.active for a in store.list_alarms()))
        assert store.list_alarms()[0].cleared_at is not None
    finally:
        if gw.poll() is None:
            gw.kill()
            gw.wait(5)
        sub.loop_stop()
        sub.disconnect()
        engine.stop()
        store.close()
