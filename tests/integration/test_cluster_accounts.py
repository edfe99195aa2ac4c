"""The test-only fleet account of the cluster tests (tests/integration/cluster_accounts.py) on a REAL
3-node cluster: the load generator, connecting without credentials, is bound by `no_auth_user` to a
user that may publish its own gateways' uplink and nothing else, so the chaos tests' real edge and
replicas keep production's accounts and their boundaries.
"""

from __future__ import annotations

import asyncio
import queue
import time
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from cloud.cluster import partition as P
from cloud.enrol import DeviceSpec
from cloud.ingest.jetstream import parse_servers
from device_profiles import wire
from tests.fixtures.nats_cluster import NatsCluster
from tests.integration.cluster_accounts import ClusterAccounts

pytestmark = [pytest.mark.integration]

SITE, EDGE, FLEET = "acct-site", "gw-edge", "gw-fleet-1"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ClusterAccounts, NatsCluster]]:
    accounts = ClusterAccounts(SITE, 16, edges={EDGE: [DeviceSpec("spk", "nanfang-fsm8")]}, fleet_gateways=[FLEET])
    cluster = accounts.cluster(tmp_path_factory.mktemp("acct") / "nats")
    try:
        yield accounts, cluster
    finally:
        cluster.stop_all()


def _client(cluster: NatsCluster, client_id: str, login: dict[str, Any] | None = None) -> tuple[
        mqtt.Client, queue.Queue[Any]]:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
    if login is not None:
        c.username_pw_set(login["username"], login["password"])
    events: queue.Queue[Any] = queue.Queue()
    connack: queue.Queue[Any] = queue.Queue()
    c.on_connect = lambda _c, _u, _f, rc, _p: connack.put(rc)
    c.on_subscribe = lambda _c, _u, _mid, rcs, _p: events.put(("suback", [r.value for r in rcs]))
    c.on_message = lambda _c, _u, m: events.put(("msg", m.topic))
    c.connect("127.0.0.1", cluster.nodes[0].cfg.mqtt_port, keepalive=10)
    c.loop_start()
    rc = connack.get(timeout=10)
    assert not rc.is_failure, f"{client_id}: CONNACK {rc}"
    return c, events


def _close(*clients: mqtt.Client) -> None:
    for c in clients:
        c.disconnect()
        c.loop_stop()


def _stored(cluster: NatsCluster, gateway: str) -> int:
    """Messages `$MQTT_msgs` holds under a gateway's subjects (partitioned uplink and its commands)."""
    import nats

    async def run() -> int:
        nc = await nats.connect(parse_servers(cluster.urls), **cluster.connect_kwargs)
        try:
            n = 0
            for f in (f"{P.MQTT_STREAM_PREFIX}{P.PREFIX}.*.sw.v1.{SITE}.{gateway}.>",
                      f"{P.MQTT_STREAM_PREFIX}sw.v1.{SITE}.{gateway}.>"):
                si = await nc.jetstream().stream_info(P.MQTT_STREAM, subjects_filter=f)
                n += sum((si.state.subjects or {}).values())
            return n
        finally:
            await nc.close()

    return asyncio.run(run())


def _interest(cluster: NatsCluster) -> None:
    """A consumer on the site's subjects, as a replica has: without interest the MQTT layer does not
    keep a QoS 1 message in `$MQTT_msgs` (measured), and a count there would prove nothing."""
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig

    async def run() -> None:
        nc = await nats.connect(parse_servers(cluster.urls), **cluster.connect_kwargs)
        try:
            await nc.jetstream().add_consumer(P.MQTT_STREAM, ConsumerConfig(
                durable_name="acct-interest", ack_policy=AckPolicy.EXPLICIT,
                filter_subjects=[f"{P.MQTT_STREAM_PREFIX}{P.PREFIX}.*.sw.v1.{SITE}.>",
                                 f"{P.MQTT_STREAM_PREFIX}sw.v1.{SITE}.>"]))
        finally:
            await nc.close()

    asyncio.run(run())


def _telemetry() -> bytes:
    return wire.encode(wire.Telemetry(ts=wire.now(), seq=1, values={"pipe_pressure": 4.2}, epoch="acct"))


def test_the_fleet_publishes_its_own_gateways_uplink_and_nothing_else(
        stack: tuple[ClusterAccounts, NatsCluster]) -> None:
    accounts, cluster = stack
    edge, edge_events = _client(cluster, accounts.uplink(EDGE)["client_id"], accounts.uplink(EDGE))
    fleet, fleet_events = _client(cluster, "fleet-probe")  # no credentials: the no_auth_user
    try:
        edge.subscribe(wire.cmd_topic(SITE, EDGE), qos=1)
        assert edge_events.get(timeout=5) == ("suback", [1])
        _interest(cluster)  # the MQTT layer made `$MQTT_msgs` when the first client connected
        for kind, dev in ((wire.Kind.STATUS, None), (wire.Kind.TELEMETRY, "d1"), (wire.Kind.EVENT, "d1")):
            payload = b'{"state":"online"}' if kind is wire.Kind.STATUS else _telemetry()
            fleet.publish(wire.topic(SITE, FLEET, kind, dev), payload, qos=1).wait_for_publish(5)
        # as the real edge: a fake reading and a fake command are acknowledged and dropped
        fleet.publish(wire.topic(SITE, EDGE, wire.Kind.TELEMETRY, "spk"), _telemetry(), qos=1).wait_for_publish(5)
        fleet.publish(wire.cmd_topic(SITE, EDGE, "spk"), b"{}", qos=1).wait_for_publish(5)
        fleet.subscribe(f"{wire.PREFIX}/#", qos=1)
        assert fleet_events.get(timeout=5) == ("suback", [0x80]), "the fleet may not read anything"
        time.sleep(0.5)
        assert fleet.is_connected(), "a refused publish does not disconnect"
        assert edge_events.empty(), list(edge_events.queue)
        assert _stored(cluster, FLEET) == 3, "the fleet's status, telemetry and event stored"
        assert _stored(cluster, EDGE) == 0, "nothing stored under the edge's subjects"
        refused = cluster.refusals()  # what the chaos tests assert empty: it sees these refusals
        assert any("Publish Violation" in r and f"{SITE}.{EDGE}.spk.telemetry" in r for r in refused), refused
        assert any("Publish Violation" in r and f"{SITE}.{EDGE}.spk.cmd" in r for r in refused), refused
        assert any("Subscription Violation" in r for r in refused), refused
    finally:
        _close(edge, fleet)


def test_without_credentials_the_nats_protocol_is_refused(stack: tuple[ClusterAccounts, NatsCluster]) -> None:
    """The fleet's user is MQTT-only: the JetStream API stays the cloud's."""
    import nats

    _, cluster = stack

    async def run() -> None:
        await nats.connect(parse_servers(cluster.urls), allow_reconnect=False, connect_timeout=3)

    with pytest.raises(Exception, match="Authorization Violation"):
        asyncio.run(run())

