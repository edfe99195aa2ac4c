"""`cloud serve` killed (`kill -9`) while a fire alarm's push is on its way: the restarted process
sends it (issue 13; cloud/notify/outbox.py).

A real `cloud serve` subprocess (tests/integration/cluster_support.py `Replica`) on a real mosquitto,
its alarm state in a real PostgreSQL, and the phone stand-in (`PushReceiver`): it receives the first
push and holds it unanswered, so the process is killed at a known moment — the push reached the
phone, its success is not recorded. Without an outbox the restarted process loaded the alarm as
active and notified, and nobody was paged until the escalation's reminder (an hour here). With it,
the push goes again at the restart: twice at the phone (the held one and the re-sent one), which is
the documented price of at-least-once; one success in the notify log.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from device_profiles import wire
from tests.integration.cluster_support import PushReceiver, Replica, alarm_file_text
from tests.integration.push_support import assert_sent_again_once, flow_until_held
from tests.polling import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SITE_FILE = Path(__file__).parents[2] / "cloud" / "sites" / "demo-estate.yaml"
SITE, GW, DEV = "demo-estate", "gw-shelter-a", "spk1"


def test_a_push_cut_off_by_kill_9_is_sent_by_the_restarted_process(tmp_path: Path, mosquitto: Any,
                                                                  postgres_url: str) -> None:
    rec = PushReceiver(hold=1)
    alarms = tmp_path / "alarms.yaml"
    alarms.write_text(alarm_file_text(SITE, rec.url))
    serve = Replica("solo", tmp_path, mosquitto.url, SITE_FILE, alarms, f"sqlite:///{tmp_path / 'ts.db'}",
                    postgres_url, 16)
    gw = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=GW)
    try:
        serve.start(wait=0)
        gw.connect("127.0.0.1", mosquitto.port)
        gw.loop_start()
        status = wire.encode(wire.Status(ts=wire.now(), state="online"))
        gw.publish(wire.topic(SITE, GW, wire.Kind.STATUS), status, qos=1, retain=True).wait_for_publish(5)
        flow_until_held(gw, SITE, GW, DEV, rec, lambda: None if serve.alive() else serve.tail())
        serve.kill()  # kill -9 while the phone has not answered
        assert rec.got == []
        t0 = time.time()
        serve.start(wait=0)
        got = wait_until(lambda: rec.alarms(), 60, f"the push after the restart\n{serve.tail()}")
        print(f"restart: the push at the phone {got[0].at - t0:.2f} s after the process was launched")
        assert len(got) == 1 and len(rec.held) == 1  # at least once: the held one and the re-sent one
    finally:
        gw.loop_stop()
        gw.disconnect()
        serve.stop()
        rec.stop()
    assert_sent_again_once(postgres_url, SITE)
