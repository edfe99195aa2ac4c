"""`kill -9` of the cluster replica whose push of a fire alarm is on its way: the survivor sends it at
the takeover (issue 13, item 3; cloud/notify/outbox.py).

A real 3-node NATS cluster with production's broker accounts (tests/integration/cluster_accounts.py:
the replicas on the cloud's user, the gateway on its enrolled account), two `cloud serve` replicas
(subprocesses, tests/integration/cluster_support.py `Replica`) sharing a real PostgreSQL, a gateway
speaking MQTT 3.1.1 to a node, and the phone stand-in
(`PushReceiver`), which holds the first push unanswered: the owner is killed at a known moment, with
the push at the phone and its success not recorded. Before the outbox the survivor took the alarm over
as active and notified and nobody was paged until the reminder (an hour here). The push after the
takeover is printed (issue 13's target: within 2 s of the takeover), not asserted (bench/cluster.py
measures).
"""

from __future__ import annotations

import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from cloud.cluster.partition import partition_of
from cloud.enrol import DeviceSpec
from tests.integration.cluster_accounts import CLOUD, ClusterAccounts
from tests.integration.cluster_support import ClusterDb, PushReceiver, Replica, alarm_file_text, partition_owner_wait
from tests.integration.push_support import assert_sent_again_once, flow_until_held
from tests.polling import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SITE_FILE = Path(__file__).parents[2] / "cloud" / "sites" / "demo-estate.yaml"
SITE, GW, DEV = "demo-estate", "gw-shelter-a", "spk1"
PARTITIONS = 16


def test_the_survivor_sends_the_push_its_dead_owner_had_on_the_way(tmp_path: Path, postgres_url: str) -> None:
    accounts = ClusterAccounts(SITE, PARTITIONS, edges={GW: [DeviceSpec(DEV, "nanfang-fsm8")]})
    nats_cluster = accounts.cluster(tmp_path / "nats")
    rec = PushReceiver(hold=1)
    alarms = tmp_path / "alarms.yaml"
    alarms.write_text(alarm_file_text(SITE, rec.url))
    replicas = {n: Replica(n, tmp_path, nats_cluster.urls, SITE_FILE, alarms, f"sqlite:///{tmp_path / n}-ts.db",
                           postgres_url, PARTITIONS, account=CLOUD) for n in ("r1", "r2")}
    db = ClusterDb(postgres_url)
    part = partition_of(SITE, GW, PARTITIONS)
    login = accounts.uplink(GW)
    gw = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=login["client_id"], protocol=mqtt.MQTTv311)
    gw.username_pw_set(login["username"], login["password"])
    try:
        for r in replicas.values():
            r.start()
        wait_until(lambda: set(db.owners().values()) == {"r1", "r2"}, 60, "both replicas holding partitions")
        gw.connect("127.0.0.1", nats_cluster.nodes[0].cfg.mqtt_port, keepalive=5)
        gw.loop_start()
        flow_until_held(gw, SITE, GW, DEV, rec, lambda: next((f"{n} exited\n{r.tail()}" for n, r in replicas.items()
                                                           if not r.alive()), None))
        owner = db.owner(part)
        assert owner in replicas
        replicas[owner].kill()  # kill -9 while the phone has not answered
        survivor, took = partition_owner_wait(db, part, owner, 30)
        taken = time.time()
        [push] = wait_until(lambda: rec.alarms(), 30, f"the survivor's push\n{replicas[survivor].tail()}")
        print(f"takeover {took:.2f} s after the kill; the push at the phone {push.at - taken:+.2f} s after it")
        assert rec.got == [push] and len(rec.held) == 1  # the held one reached the phone too: at least once
        assert nats_cluster.refusals() == [], "the cloud's and the gateway's accounts allowed every step"
    finally:
        gw.loop_stop()
        gw.disconnect()
        for r in replicas.values():
            r.stop()
        rec.stop()
        nats_cluster.stop_all()
    assert_sent_again_once(postgres_url, SITE)
