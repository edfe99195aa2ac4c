"""Shared by the outbox's process tests (test_push_outbox_restart.py, test_push_outbox_cluster.py): a
gateway that reports waterflow until the phone holds the push, and what the store must say after."""

from __future__ import annotations

from collections.abc import Callable

import paho.mqtt.client as mqtt

from cloud.alarms.store import AlarmStore
from device_profiles import wire
from tests.integration.cluster_support import PushReceiver
from tests.polling import wait_until


def flow_until_held(gw: mqtt.Client, site: str, gateway: str, device: str, rec: PushReceiver,
                    alive: Callable[[], str | None]) -> None:
    """Waterflow (QoS 1) every 0.5 s until the push reaches the phone: the ingester subscribes a while
    after start, and repeats are the same active alarm. `alive()` returns a complaint if the process
    the test waits on died."""
    topic = wire.topic(site, gateway, wire.Kind.TELEMETRY, device)
    seq = 0

    def flowing() -> bool:
        nonlocal seq
        seq += 1
        msg = wire.Telemetry(ts=wire.now(), seq=seq, values={"waterflow": True, "pipe_pressure": 3.9})
        gw.publish(topic, wire.encode(msg), qos=1).wait_for_publish(10)
        problem = alive()
        assert problem is None, problem
        return bool(rec.held)

    wait_until(flowing, 60, "the fire alarm's push to reach the phone", every=0.5)


def assert_sent_again_once(db_url: str, site: str) -> None:
    """The notify log of the site's waterflow alarm: one intent, settled sent; one successful attempt
    (the re-send; the held one never answered); the audit says it was re-sent."""
    store = AlarmStore(db_url)
    try:
        [alarm] = [a for a in store.list_alarms(site=site) if a.rule == "waterflow"]
        [intent] = store.intents(alarm.id)
        assert (intent["person"], intent["purpose"], intent["state"]) == ("vol", "alarm", "sent")
        assert [x["ok"] for x in store.attempts(alarm.id) if x["purpose"] == "alarm"] == [True]
        assert "push-resent" in [e["action"] for e in store.audit_of(alarm.id)]
    finally:
        store.close()
