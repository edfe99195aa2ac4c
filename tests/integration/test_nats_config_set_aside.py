"""A remote-config answer whose handling keeps failing, on a real 3-node NATS cluster, through the ingest
service as `cloud serve` wires it (cloud/ingest/service.py `config_sink`, cloud/ingest/poison.py).

The answer is retried a bounded number of times, then set aside: kept as dead letter `handler_failed`,
counted, and acknowledged, so JetStream stops delivering it (before, it came back every ack wait for
ever). An answer that fails twice and then succeeds is recorded as usual, and a gateway's birth on the
same safety lane is handled as usual.

`config_sink` here is a stand-in for ConfigService.handle that fails on purpose (making the real store
fail for one message only is what this stands for: a bug for one particular answer); everything else
is real. The ack wait is shortened to 0.5 s and the bound to 4 deliveries so the test takes seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from cloud.cluster import partition as P
from cloud.ingest import jetstream
from cloud.ingest.poison import HANDLER_FAILED
from device_profiles import wire
from tests.fixtures.nats_cluster import NatsCluster, make_nats_cluster
from tests.integration.ingest_support import running_ingester
from tests.polling import wait_until

pytestmark = [pytest.mark.integration]

ACK_WAIT_S = 0.5
TRIES = 4
PARTITIONS = 2  # few consumers to make: the ingester starts in about a second


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    c = make_nats_cluster(tmp_path / "nats", partitions=PARTITIONS)
    try:
        yield c
    finally:
        c.stop_all()


def _ack_pending(cluster: NatsCluster, part: int) -> tuple[int, int]:
    """(delivered and not acknowledged, not delivered yet) on a partition's safety consumer."""
    import nats

    async def run() -> tuple[int, int]:
        nc = await nats.connect(jetstream.parse_servers(cluster.urls))
        try:
            ci = await nc.jetstream().consumer_info(P.MQTT_STREAM, P.consumer_name(part, P.SAFETY))
            return ci.num_ack_pending or 0, ci.num_pending or 0
        finally:
            await nc.close()

    return asyncio.run(run())


def test_a_config_answer_that_keeps_failing_is_set_aside_after_bounded_retries(
    cluster: NatsCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jetstream, "ACK_WAIT_S", ACK_WAIT_S)  # the consumers are made with it
    site = "demo-estate"
    poison = f"sw/v1/{site}/gw-shelter-a/config-result"  # docs/wire.md "Remote configuration"
    blip = f"sw/v1/{site}/gw-shelter-b/config-running"
    birth = f"sw/v1/{site}/gw-garage/status"
    calls: Counter[str] = Counter()
    recorded: list[str] = []

    def config_sink(topic: str, payload: bytes) -> None:
        calls[topic] += 1
        if topic == poison or calls[topic] <= 2:
            raise RuntimeError(f"cannot record {topic}")
        recorded.append(topic)

    with running_ingester(tmp_path, cluster.urls, f"sqlite:///{tmp_path}/ts.db",
                          partitions=cluster.partitions, time_beacon_s=None) as (svc, _safety):
        svc.config_sink = config_sink
        svc.max_deliveries = TRIES
        result = wire.encode(wire.ConfigResult(ts=wire.now(), version=3, status="applied", running=3, detail="ok"))
        running = wire.encode(wire.ConfigRunning(ts=wire.now(), version=3, digest="d" * 64, config="x: 1\n"))
        edge = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="set-aside-edge", protocol=mqtt.MQTTv311)
        edge.connect("127.0.0.1", cluster.nodes[0].cfg.mqtt_port, keepalive=5)
        edge.loop_start()
        try:
            for topic, body in ((poison, result), (blip, running),
                                (birth, wire.encode(wire.Status(ts=wire.now(), state="online")))):
                edge.publish(topic, body, qos=1).wait_for_publish(10)
            dead = wait_until(lambda: svc.dead.recent(reason=HANDLER_FAILED), 20,
                              "the failing answer set aside", detail=lambda: f"handled {dict(calls)}")
            wait_until(lambda: recorded == [blip], 20, "the answer that failed twice recorded")
            wait_until(lambda: svc.stats()["by_kind"].get("status"), 20, "the birth handled")
            part = P.partition_of(site, "gw-shelter-a", cluster.partitions)
            wait_until(lambda: _ack_pending(cluster, part) == (0, 0), 10, "the set-aside answer acknowledged")
            time.sleep(3 * ACK_WAIT_S)  # would have come again by now, had it not been acknowledged
        finally:
            edge.disconnect()
            edge.loop_stop()
        assert calls == {poison: TRIES, blip: 3}
        assert [(d.topic, d.reason, d.payload) for d in dead] == [(poison, HANDLER_FAILED, result)]
        assert "RuntimeError: cannot record" in dead[0].detail and f"{TRIES} deliveries" in dead[0].detail
        assert svc.stats()["dead_letters"] == {HANDLER_FAILED: 1}
