"""Chaos on the cluster tier, on real servers, under fleet load (cloud/cluster, docs/operations.md).

One stack for the module (tests/integration/cluster_support.py): 3 NATS nodes, 2 `cloud serve`
replicas (subprocesses) sharing PostgreSQL and VictoriaMetrics, a real edge agent with a simulated
sprinkler monitor on a pseudo-terminal, and the fleet generator publishing through the three nodes'
MQTT listeners for the whole module (SW_CHAOS_RATE msg/s, default 2,000). The nodes have production's
broker accounts (tests/integration/cluster_accounts.py): the replicas connect as the cloud's user, the
edge with its enrolled account, the fleet as a test-only user allowed its gateways' uplink only; so every
takeover here also checks the cloud's permissions. Each scenario breaks
something, flips the edge's waterflow input while it is broken, and checks that the waterflow alarm
is raised and pushed exactly once (counted in the shared store's notify log and at the webhook), and
records how long the push took. The last test stops the fleet and compares, per device, the readings
in the store with those the fleet had acknowledged: none lost, none stored twice.

The sixth failure of issue 13, `kill -9` of an ingester on the single-mosquitto path, is
tests/integration/test_ingest_kill.py (branch durable).

Figures (takeover seconds, push latencies) are printed for the record, never asserted: speed is
measured in bench/cluster.py.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from cloud.enrol import DeviceSpec
from cloud.site_config import load_site
from simulators.fleet import FleetConfig, FleetModel, site_file_text
from tests.fixtures.modbus_slave import RtuBus, SimDevice
from tests.fixtures.nats_cluster import NatsCluster
from tests.fixtures.tsdb_servers import make_victoriametrics
from tests.integration.cluster_accounts import CLOUD, ClusterAccounts
from tests.integration.cluster_support import (
    ALARM_DEV,
    ALARM_GW,
    RECENT_START,
    ClusterDb,
    FleetRun,
    PushReceiver,
    Replica,
    alarm_file_text,
    alarm_partition,
    edge_status,
    partition_owner_wait,
)
from tests.integration.edge.helpers import AgentProcess
from tests.polling import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SITE = "chaos"
PARTITIONS = 16
RATE = float(os.environ.get("SW_CHAOS_RATE", "2000"))
GATEWAYS = 40  # 160 devices


@dataclass
class Stack:
    root: Path
    cluster: NatsCluster
    vm: Any
    db: ClusterDb
    receiver: PushReceiver
    replicas: dict[str, Replica]
    bus: RtuBus
    dev: SimDevice
    edge: AgentProcess
    edge_state: Path
    fleet: FleetRun
    site_file: Path
    figures: dict[str, Any] = field(default_factory=dict)


def _edge_config(root: Path, cluster: NatsCluster, port: str, login: dict[str, Any]) -> Path:
    """`login`: the uplink credentials of the edge config enrolment returned (user, password, client id)."""
    cfg = {
        "site": SITE, "gateway": ALARM_GW, "state_dir": str(root / "edge-state"),
        "uplink": {"url": cluster.mqtt_urls, **login, "keepalive_s": 5, "reconnect_min_s": 0.5, "reconnect_max_s": 2},
        "snapshot_s": 30, "health_s": 5,
        "buses": [{"name": "rs485", "transport": "modbus_rtu", "port": port, "baud": 9600, "timeout_s": 0.2}],
        "devices": [{"id": ALARM_DEV, "profile": "nanfang-fsm8", "bus": "rs485", "address": 3,
                     "poll": {"safety": 0.5, "routine": 5, "slow": 60}}],
    }
    p = root / "edge.yaml"
    p.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return p


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, postgres_server: Any) -> Iterator[Stack]:
    from device_profiles.loader import get_profile

    root = tmp_path_factory.mktemp("chaos")
    model = FleetModel(FleetConfig(site=SITE, gateways=GATEWAYS, sim_start=RECENT_START, seed=11))
    accounts = ClusterAccounts(SITE, PARTITIONS, edges={ALARM_GW: [DeviceSpec(ALARM_DEV, "nanfang-fsm8")]},
                               fleet_gateways=[gw for gw, _ in model.topology])
    cluster = accounts.cluster(root / "nats")
    (root / "vm").mkdir()
    vm = make_victoriametrics(root / "vm", ["-dedup.minScrapeInterval=1ms"]).start()
    db_url = postgres_server.url(postgres_server.create_database())
    receiver = PushReceiver()
    doc = yaml.safe_load(site_file_text(SITE, model.topology, auto_enrol=False))
    doc["gateways"].append({"id": ALARM_GW, "devices": [{"id": ALARM_DEV, "profile": "nanfang-fsm8"}]})
    site_file = root / "site.yaml"
    site_file.write_text(yaml.safe_dump(doc, sort_keys=False))
    alarm_file = root / "alarms.yaml"
    alarm_file.write_text(alarm_file_text(SITE, receiver.url))
    tsdb = f"influx2://127.0.0.1:{vm.port}?bucket=sw&org=sw"
    replicas = {n: Replica(n, root, cluster.urls, site_file, alarm_file, tsdb, db_url, PARTITIONS, account=CLOUD)
                for n in ("r1", "r2")}
    started: list[Any] = []
    try:
        for r in replicas.values():
            r.start()
            started.append(r)
        db = ClusterDb(db_url)
        wait_until(lambda: all(db.owners().values()), 30, "every partition owned")
        dev = SimDevice(get_profile("nanfang-fsm8"), 3)
        dev.set(pipe_pressure=4.2)
        bus_dir = root / "bus"
        bus_dir.mkdir()
        bus = RtuBus(bus_dir, [dev])
        edge = AgentProcess(_edge_config(root, cluster, bus.port, accounts.uplink(ALARM_GW)), root / "edge.log").start()
        wait_until(lambda: edge_status(root / "edge-state").get("uplink", {}).get("connected"), 30,
                   "the edge connected")
        fleet = FleetRun(FleetConfig(broker=",".join(cluster.mqtt_urls), site=SITE, gateways=GATEWAYS,
                                     sim_start=RECENT_START, seed=11, rate=RATE, duration=None, connections=8,
                                     client_prefix="chaos-fleet", keepalive_s=5), model).start()
        fleet.running(lambda: sum(r.metric("received_total") for r in replicas.values()))
        s = Stack(root, cluster, vm, db, receiver, replicas, bus, dev, edge, root / "edge-state", fleet, site_file)
        yield s
        print("\nchaos figures:", s.figures)
    finally:
        for r in replicas.values():
            r.stop()
        for name in ("edge", "bus"):
            obj = locals().get(name)
            if obj is not None:
                obj.stop()
        receiver.stop()
        cluster.stop_all()
        vm.stop()


def flip(s: Stack, during: Callable[[], None] | None = None, timeout: float = 60.0) -> dict[str, float]:
    """Waterflow on (while `during` breaks something), wait for the one push, waterflow off, wait for
    the clear. Returns latency figures; asserts raised once and pushed once."""
    before = len(s.db.alarms(ALARM_DEV, "waterflow"))
    pushes_before = len(s.receiver.alarms())
    if during is not None:
        during()
    t_flip = time.time()
    s.dev.set(waterflow=True)
    try:
        push = wait_until(lambda: s.receiver.alarms()[pushes_before:], timeout, "the waterflow push")[0]
    except AssertionError:
        raise AssertionError(f"no push; alarms {s.db.alarms(ALARM_DEV, 'waterflow')}, owners {s.db.owners()}, "
                             f"edge {edge_status(s.edge_state).get('uplink')}\n"
                             + "\n".join(f"--- {n}\n{r.tail()}" for n, r in s.replicas.items())) from None
    rows = wait_until(lambda: s.db.alarms(ALARM_DEV, "waterflow")[before:], 10, "the alarm row")
    s.dev.set(waterflow=False)
    wait_until(lambda: not s.db.alarms(ALARM_DEV, "waterflow")[-1]["active"], timeout, "the alarm cleared")
    time.sleep(1.0)  # a second push would come now, if any
    rows = s.db.alarms(ALARM_DEV, "waterflow")[before:]
    assert len(rows) == 1, f"raised {len(rows)} times: {_alarm_trail(s, rows)}"
    assert s.db.pushes(rows[0]["id"]) == 1, "pushed more than once (notify log)"
    assert len(s.receiver.alarms()) == pushes_before + 1, "pushed more than once (webhook)"
    return {"flip_to_push_s": round(push.at - t_flip, 3), "raise_to_push_s": round(push.at - rows[0]["raised_at"], 3)}


def _alarm_trail(s: Stack, rows: list[dict[str, Any]]) -> str:
    """The rows whole (times, transition marks, audit) and what each replica logged of the alarm device
    and of its partitions: which replica raised and cleared what, from which reading."""
    import re

    wanted = re.compile(r"alarm-spk|partitions \[|handed|taken over|lapsed")
    logs = "\n".join(f"--- {n}\n" + "\n".join(ln for ln in r.log.read_text(errors="replace").splitlines()
                                              if wanted.search(ln))[-12000:] for n, r in s.replicas.items())
    return f"{s.db.alarm_rows([r['id'] for r in rows])}\n{logs}"


def edge_node(s: Stack) -> int:
    server = edge_status(s.edge_state).get("uplink", {}).get("server", "")
    return [u.split("//", 1)[1] for u in s.cluster.mqtt_urls].index(server)


def test_flip_with_nothing_broken(stack: Stack) -> None:
    """The reference: the same flip with the whole stack up, under the same load."""
    stack.figures["baseline"] = flip(stack)


def test_kill9_of_a_nats_node(stack: Stack) -> None:
    """The node the edge is connected to dies: the edge moves to the next, the stream keeps a quorum."""
    victim = edge_node(stack)
    stack.figures["nats_kill"] = flip(stack, lambda: stack.cluster.kill(victim))
    stack.cluster.start(victim)


def test_kill9_of_a_replica(stack: Stack) -> None:
    """The replica owning the edge's partition dies: the other takes the partition over from the shared
    state and pushes the alarm of a flip made while it was taking over."""
    part = alarm_partition(SITE, PARTITIONS)
    owner = stack.db.owner(part)
    assert owner in stack.replicas
    victim = stack.replicas[owner]
    took: list[float] = []

    def kill() -> None:
        victim.kill()
        threading.Thread(target=lambda: took.append(partition_owner_wait(stack.db, part, owner, 30)[1]),
                         daemon=True).start()

    fig = flip(stack, kill)
    wait_until(lambda: took, 30, "the takeover")
    fig["takeover_s"] = round(took[0], 3)
    stack.figures["replica_kill"] = fig
    victim.start()
    wait_until(lambda: victim.name in set(stack.db.owners().values()), 30, "the restarted replica to hold partitions")


def test_kill9_of_a_replica_just_after_it_cleared_an_alarm(stack: Stack) -> None:
    """The owner raises and clears a short flip and is killed at once, before it acknowledged the flip's
    messages: the survivor gets them again from the stream, past the replay check (saved later still),
    and must not raise the flip a second time (it did, pushed, cleared 0.1 s later by the "off"
    delivered again: cloud/alarms/engine.py `_restore_transitions`). Timing-dependent: the kill does
    not always beat the acknowledgements (it did in 1 of 2 runs without the fix)."""
    s = stack
    part = alarm_partition(SITE, PARTITIONS)
    # the replicas may still be balancing the partitions after the previous test's restart
    owner = wait_until(lambda: s.db.owner(part), 30, "an owner of the alarm partition")
    assert owner in s.replicas
    victim = s.replicas[owner]
    before = len(s.db.alarms(ALARM_DEV, "waterflow"))
    pushes_before = len(s.receiver.alarms())
    s.dev.set(waterflow=True)
    # Held until the owner raised it, and not longer: a fixed short flip (0.6 s, one edge poll) was
    # missed by an edge whose poll slipped on a loaded machine (CI: no alarm row in 30 s).
    wait_until(lambda: s.db.alarms(ALARM_DEV, "waterflow")[before:], 30, "the alarm row", every=0.005)
    s.dev.set(waterflow=False)
    wait_until(lambda: s.receiver.alarms()[pushes_before:], 30, "the push", every=0.005)  # none left to re-send
    wait_until(lambda: not s.db.alarms(ALARM_DEV, "waterflow")[-1]["active"], 30, "the alarm cleared", every=0.005)
    victim.kill()
    partition_owner_wait(s.db, part, owner, 30)
    time.sleep(3.0)  # what the stream delivers again comes at once, safety lanes first
    rows = s.db.alarms(ALARM_DEV, "waterflow")[before:]
    pushes = len(s.receiver.alarms()) - pushes_before
    victim.start()
    wait_until(lambda: victim.name in set(s.db.owners().values()), 30, "the restarted replica to hold partitions")
    assert len(rows) == 1, f"raised {len(rows)} times: {_alarm_trail(s, rows)}"
    assert pushes == 1, f"pushed {pushes} times"


def test_sigstop_of_a_nats_node_for_30_s(stack: Stack) -> None:
    victim = edge_node(stack)
    stack.cluster.pause(victim)
    try:
        t0 = time.monotonic()
        stack.figures["nats_sigstop"] = flip(stack)
        time.sleep(max(0.0, 30 - (time.monotonic() - t0)))
    finally:
        stack.cluster.resume(victim)
    stack.cluster.wait_healthy([victim])


def test_stop_and_start_of_the_whole_cluster(stack: Stack) -> None:
    stack.cluster.stop_all()
    stack.cluster.start_all()
    stack.figures["nats_restart"] = flip(stack)


def test_kill9_of_the_edge_while_its_node_fails_over(stack: Stack) -> None:
    victim = edge_node(stack)

    def both() -> None:
        stack.cluster.kill(victim)
        time.sleep(0.3)  # the edge is reconnecting elsewhere
        stack.edge.kill9()
        stack.edge.start()

    stack.figures["edge_kill_during_failover"] = flip(stack, both)
    stack.cluster.start(victim)


def test_every_reading_stored_once(stack: Stack) -> None:
    """Stop the fleet, wait until the replicas acknowledged everything, then compare the store with
    what the fleet published and the broker acknowledged, per device and sequence number."""
    res = stack.fleet.stop()
    assert res.unacked == 0, f"{res.unacked} messages never acknowledged by the cluster"
    stack.figures["fleet"] = {"published": res.published, "seconds": round(res.seconds, 1),
                              "msg_per_s": round(res.rate)}
    site = load_site(stack.site_file)
    expected = _expected_by_device(res.sent, site)
    deadline = time.monotonic() + 120
    while True:
        stored, samples = _stored(stack)
        lost = {d: sorted(expected[d] - stored.get(d, set())) for d in expected if expected[d] - stored.get(d, set())}
        if not lost or time.monotonic() > deadline:
            break
        time.sleep(2.0)
    if lost:
        # Lost: everything a loss investigation needs, named in the failure (issue 13: a loss of this
        # kind, readings under the consumer's ack floor, came from consumer resets; they are gone).
        seq_of = _seq_by_ts(res.sent)
        gw_of = _gateway_by_device(res.sent)
        detail = {d: (len(v), [seq_of.get((d, t)) for t in v[:8]]) for d, v in list(lost.items())[:10]}
        raise AssertionError(
            f"readings lost on {len(lost)} devices, {sum(len(v) for v in lost.values())} in all; "
            f"(device: count, first missing seqs): {detail}; still in the stream, unacknowledged: "
            f"{_unacked(stack)}; dead letters {_dead_letters(stack)}; replicas "
            f"{_replica_counts(stack)}; consumers of their partitions "
            f"{_consumers_of(stack, {gw_of[d] for d in lost})}; where the stream has the "
            f"lost ones: {_lost_in_stream(stack, lost, gw_of)}; logs in {stack.root}")
    assert not _dead_letters(stack), "valid messages were refused"
    assert samples["duplicates"] == 0, samples
    # the edge: everything it committed to its outbox was acknowledged by the cluster (nothing pending,
    # nothing dropped), and the cluster holds nothing unacknowledged: every message reached a replica
    # behind its durability point. (Its replay state in the registry is no witness: after a takeover it
    # can miss numbers the dead owner stored and acknowledged but had not checkpointed yet.)
    st = edge_status(stack.edge_state)
    assert st["outbox"]["pending"] == 0 and st["outbox"]["dropped"] == 0, st["outbox"]
    wait_until(lambda: _unacked(stack) == 0, 60, "every message acknowledged by a replica")
    stack.figures["readings"] = {"devices": len(expected), "messages": sum(len(v) for v in expected.values())}


def test_no_client_was_refused_anything(stack: Stack) -> None:
    """After every scenario: the nodes refused the replicas (the cloud's account), the edge (its own)
    and the fleet nothing, so no path above needed a permission production's accounts lack."""
    assert stack.cluster.refusals() == []


def _expected_by_device(sent: list[tuple[str, bytes]], site: Any) -> dict[str, set[int]]:
    """device → edge timestamps (ms) of the telemetry messages the fleet had acknowledged."""
    from device_profiles import wire

    out: dict[str, set[int]] = {}
    for topic, payload in sent:
        t = wire.parse_topic(topic)
        if t.kind in wire.TELEMETRY_KINDS and t.device:
            msg = wire.decode(t.kind, payload)
            out.setdefault(t.device, set()).add(round(msg.ts.timestamp() * 1000))
    return out


def _dead_letters(stack: Stack) -> dict[str, int]:
    """Reasons of the messages the replicas set aside (each keeps its own dead-letter file)."""
    import sqlite3

    out: dict[str, int] = {}
    for r in stack.replicas.values():
        db = r.dir / "dead-letters.db"
        if not db.exists():
            continue
        con = sqlite3.connect(db)
        try:
            for reason, n in con.execute("SELECT reason, count(*) FROM dead_letters GROUP BY reason"):
                out[f"{r.name}:{reason}"] = out.get(f"{r.name}:{reason}", 0) + n
        finally:
            con.close()
    return out


def _unacked(stack: Stack) -> int:
    from tests.integration.test_nats_cluster import _unacked as count

    return count(stack.cluster)


def _replica_counts(stack: Stack) -> dict[str, dict[str, float]]:
    """What each replica says it received, dropped as replays, stored and had refused (since its last start)."""
    names = ("received_total", "duplicates_total", "points_stored_total", "points_rejected_total")
    return {n: {k: r.metric(k) for k in names} for n, r in stack.replicas.items()}


def _on_cluster(stack: Stack, fn: Callable[[Any, Any], Any]) -> Any:
    """`await fn(nc, js)` on a connection of its own to the cluster; an error is returned, not raised (a
    diagnostic must not hide the assertion it explains)."""
    import asyncio

    import nats

    from cloud.ingest.jetstream import parse_servers

    async def run() -> Any:
        nc = await nats.connect(parse_servers(stack.cluster.urls), **stack.cluster.connect_kwargs)
        try:
            return await fn(nc, nc.jetstream(timeout=10))
        finally:
            await nc.close()

    try:
        return asyncio.run(run())
    except Exception as e:
        return {"error": f"{e!r} {getattr(e, 'description', '')}"}


def _consumers_of(stack: Stack, gateways: set[str]) -> dict[str, Any]:
    """Delivery state of the consumers of these gateways' partitions (ack floor, redeliveries)."""
    from cloud.cluster import partition as P

    parts = {P.partition_of(SITE, g, PARTITIONS) for g in gateways}

    async def run(nc: Any, js: Any) -> dict[str, Any]:
        out = {}
        for part in sorted(parts):
            for lane in (P.SAFETY, P.BULK):
                ci = await js.consumer_info(P.MQTT_STREAM, P.consumer_name(part, lane))
                out[ci.name] = {"delivered": ci.delivered.stream_seq, "ack_floor": ci.ack_floor.stream_seq,
                                "redelivered": ci.num_redelivered, "pending": ci.num_pending}
        return out

    return dict(_on_cluster(stack, run))


def _gateway_by_device(sent: list[tuple[str, bytes]]) -> dict[str, str]:
    from device_profiles import wire

    out = {}
    for topic, _ in sent:
        t = wire.parse_topic(topic)
        if t.device:
            out[t.device] = t.gateway
    return out


def _lost_in_stream(stack: Stack, lost: dict[str, list[int]], gw_of: dict[str, str], devices: int = 4
                    ) -> dict[str, Any]:
    """Where the lost readings of a few devices are in `$MQTT_msgs` (limits retention keeps them): under
    which subject and stream sequence, and what their partition's consumer says of those sequences
    (acknowledged: at or under its ack floor; delivered: at or under its delivered sequence). Also the
    stream subjects outside the partitioned uplink (a message stored there is read by no consumer)."""
    import json

    import nats
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    from cloud.cluster import partition as P
    from device_profiles import wire

    async def run(nc: Any, js: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        r = await nc.request(f"$JS.API.STREAM.INFO.{P.MQTT_STREAM}",
                             json.dumps({"subjects_filter": f"{P.MQTT_STREAM_PREFIX}>"}).encode(), timeout=10)
        info = json.loads(r.data)
        st = info.get("state", {})
        out["stream"] = {"retention": info.get("config", {}).get("retention"), "first": st.get("first_seq"),
                         "last": st.get("last_seq"), "messages": st.get("messages")}
        out["unpartitioned_subjects"] = {k: v for k, v in (st.get("subjects") or {}).items()
                                         if not k.startswith(f"{P.MQTT_STREAM_PREFIX}{P.PREFIX}.")}
        for dev in list(lost)[:devices]:
            gw = gw_of[dev]
            part = P.partition_of(SITE, gw, PARTITIONS)
            want = set(lost[dev])
            ci = await js.add_consumer(P.MQTT_STREAM, ConsumerConfig(
                filter_subjects=[f"{P.MQTT_STREAM_PREFIX}*.*.sw.v1.{SITE}.{gw}.{dev}.telemetry",
                                 f"{P.MQTT_STREAM_PREFIX}sw.v1.{SITE}.{gw}.{dev}.telemetry"],
                name=f"diag-{dev}", ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL, inactive_threshold=60))
            sub = await js.pull_subscribe_bind(ci.name, stream=P.MQTT_STREAM)
            found: list[tuple[int, str]] = []
            total = 0
            while True:
                try:
                    msgs = await sub.fetch(500, timeout=2)
                except (TimeoutError, nats.errors.TimeoutError):
                    break
                for m in msgs:
                    total += 1
                    up = P.parse_subject(m.subject)
                    t = wire.parse_topic(up.topic if up is not None
                                         else m.subject.removeprefix(P.MQTT_STREAM_PREFIX).replace(".", "/"))
                    ts = round(wire.decode(t.kind, m.data).ts.timestamp() * 1000)
                    if ts in want:
                        found.append((m.metadata.sequence.stream, m.subject))
            await sub.unsubscribe()
            bulk = await js.consumer_info(P.MQTT_STREAM, P.consumer_name(part, P.BULK))
            seqs = sorted(q for q, _ in found)
            out[dev] = {
                "lost": len(want), "in_stream": len(found), "of_device_in_stream": total,
                "subjects": sorted({sub_ for _, sub_ in found}),
                "stream_seqs": (seqs[0], seqs[-1]) if seqs else None,
                "consumer": {"name": bulk.name, "ack_floor": bulk.ack_floor.stream_seq,
                             "delivered": bulk.delivered.stream_seq, "ack_pending": bulk.num_ack_pending,
                             "redelivered": bulk.num_redelivered},
                "lost_at_or_under_ack_floor": sum(q <= (bulk.ack_floor.stream_seq or 0) for q in seqs),
            }
        return out

    return dict(_on_cluster(stack, run))


def _seq_by_ts(sent: list[tuple[str, bytes]]) -> dict[tuple[str, int], int]:
    from device_profiles import wire

    out = {}
    for topic, payload in sent:
        t = wire.parse_topic(topic)
        if t.kind in wire.TELEMETRY_KINDS and t.device:
            msg = wire.decode(t.kind, payload)
            out[(t.device, round(msg.ts.timestamp() * 1000))] = msg.seq
    return out


def _stored(stack: Stack) -> tuple[dict[str, set[int]], dict[str, int]]:
    stored: dict[str, set[int]] = {}
    dup = 0
    for series in stack.vm.export(f'{{site="{SITE}",gateway!="{ALARM_GW}"}}'):
        dev = series["metric"].get("device")
        if not dev or series["metric"]["__name__"].startswith(("device_health", "gateway_health")):
            continue
        ts = series["timestamps"]
        dup += len(ts) - len(set(ts))
        stored.setdefault(dev, set()).update(ts)
    return stored, {"duplicates": dup}



