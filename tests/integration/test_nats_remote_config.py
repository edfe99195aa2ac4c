"""Remote configuration on a NATS cluster, on real parts: 3 NATS nodes, two `cloud serve` replicas over
one PostgreSQL, a real edge agent (its own process, a list of the nodes' MQTT URLs) polling a simulated
device over a pseudo-terminal.

The gateway's partition is owned by replica A; every change goes in through replica B's API, so it only
reaches the gateway through the cluster (cloud/remote_config/service.py), and its answers only reach
the store through A. The changes touch the uplink (keepalive), so the edge asks the cloud to confirm
the new connection: `confirming` must be answered once, by the owner. Then A is killed (kill -9)
during a rollout, before the gateway's result: the survivor takes the partition over, gets the answers
A did not acknowledge, confirms, records the result and finishes the rollout.

The nodes have production's broker accounts (tests/integration/cluster_accounts.py): the replicas
connect as the cloud's user, the edges with their enrolled accounts, so a config, a confirmation or a
takeover that needs a permission the cloud's user lacks fails here.

One stack for the module (~20 s to start); the kill test comes last.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import create_engine

from cloud.cluster.partition import partition_of
from cloud.enrol import DeviceSpec
from cloud.remote_config.store import ConfigStore, State
from tests.fixtures.modbus_slave import RtuBus, SimDevice
from tests.fixtures.nats_cluster import NatsCluster
from tests.integration.cluster_accounts import CLOUD, ClusterAccounts
from tests.integration.cluster_support import ClusterDb, PushReceiver, Replica, alarm_file_text, edge_status
from tests.integration.edge.helpers import AgentProcess
from tests.polling import wait_until

pytestmark = [pytest.mark.integration]

SITE = "cfg-cluster"
PARTITIONS = 16
GATEWAYS = [f"gw-{i}" for i in range(12)]


@dataclass
class Stack:
    root: Path
    cluster: NatsCluster
    db: ClusterDb
    store: ConfigStore
    a: Replica  # owns the gateway's partition
    b: Replica  # takes the installer's changes
    gw: str
    edge: AgentProcess
    edge_cfg: Path
    token: str
    accounts: ClusterAccounts


def _site_file(root: Path) -> Path:
    doc = {"site": SITE, "name": "Remote config on a cluster", "auto_enrol": False,
           "gateways": [{"id": g, "devices": [{"id": f"spk-{g}", "profile": "nanfang-fsm8"}]} for g in GATEWAYS]}
    p = root / "site.yaml"
    p.write_text(yaml.safe_dump(doc, sort_keys=False))
    return p


def _edge_config(root: Path, cluster: NatsCluster, gw: str, port: str, login: dict[str, Any]) -> Path:
    """`login`: the uplink credentials of the edge config enrolment returned (user, password, client id)."""
    cfg = {
        "site": SITE, "gateway": gw, "state_dir": str(root / "edge-state"),
        "uplink": {"url": cluster.mqtt_urls, **login, "keepalive_s": 5, "reconnect_min_s": 0.5, "reconnect_max_s": 2},
        "snapshot_s": 30, "health_s": 5,
        "buses": [{"name": "rs485", "transport": "modbus_rtu", "port": port, "baud": 9600, "timeout_s": 0.2}],
        "devices": [{"id": f"spk-{gw}", "profile": "nanfang-fsm8", "bus": "rs485", "address": 3,
                     "poll": {"safety": 0.5, "routine": 5, "slow": 60}}],
    }
    p = root / "edge.yaml"
    p.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return p


def _balanced(db: ClusterDb) -> dict[int, str | None] | None:
    owners = db.owners()
    held = [o for o in owners.values() if o]
    if len(owners) == PARTITIONS and len(held) == PARTITIONS and held.count("r1") == held.count("r2"):
        return owners
    return None


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, postgres_server: Any) -> Iterator[Stack]:
    from cloud.auth.cli import _service
    from device_profiles.loader import get_profile

    root = tmp_path_factory.mktemp("cfgcluster")
    # every gateway enrolled: which one the edge plays is known only once the partitions are shared out
    accounts = ClusterAccounts(SITE, PARTITIONS, edges={g: [DeviceSpec(f"spk-{g}", "nanfang-fsm8")] for g in GATEWAYS})
    cluster = accounts.cluster(root / "nats")
    db_url = postgres_server.url(postgres_server.create_database())
    receiver = PushReceiver()
    alarm_file = root / "alarms.yaml"
    # the site's own low-pressure limit (profile: raise 1.5, clear 2.0 bar, below): sent to each gateway
    alarm = yaml.safe_load(alarm_file_text(SITE, receiver.url))
    alarm["alarm_overrides"].append({"rule": "low_pressure", "raise": 2.5, "clear": 3.0})
    alarm_file.write_text(yaml.safe_dump(alarm, sort_keys=False))
    site_file = _site_file(root)
    replicas = {n: Replica(n, root, cluster.urls, site_file, alarm_file, None, db_url, PARTITIONS, account=CLOUD)
                for n in ("r1", "r2")}
    bus = edge = None
    try:
        for r in replicas.values():
            r.start()
        db = ClusterDb(db_url)
        owners = wait_until(lambda: _balanced(db), 60, "the partitions shared between the replicas")
        assert owners is not None
        gw = next(g for g in GATEWAYS if owners[partition_of(SITE, g, PARTITIONS)] == "r1")
        auth = _service(db_url)
        auth.add_user("ines", "a-long-password-1", "installer", [SITE])
        token = auth.create_token("ines", "test")
        dev = SimDevice(get_profile("nanfang-fsm8"), 3)
        dev.set(pipe_pressure=4.2)
        (root / "bus").mkdir()
        bus = RtuBus(root / "bus", [dev])
        edge_cfg = _edge_config(root, cluster, gw, bus.port, accounts.uplink(gw))
        edge = AgentProcess(edge_cfg, root / "edge.log").start()
        wait_until(lambda: edge_status(root / "edge-state").get("uplink", {}).get("connected"), 30,
                   "the edge connected")
        store = ConfigStore(create_engine(db_url))
        yield Stack(root, cluster, db, store, replicas["r1"], replicas["r2"], gw, edge, edge_cfg, token, accounts)
    finally:
        if edge is not None:
            edge.stop()
        for r in replicas.values():
            r.stop()
        if bus is not None:
            bus.stop()
        receiver.stop()
        cluster.stop_all()


def api(s: Stack, replica: Replica, method: str, path: str, body: Any = None) -> Any:
    req = urllib.request.Request(f"http://127.0.0.1:{replica.port}/api/v1{path}", method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {s.token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            return json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        raise AssertionError(f"{method} {path} on {replica.name}: {e.code} {e.read()[:2000]!r}") from None


def answered(s: Stack, version: int, timeout: float) -> State:
    def done() -> State | None:
        st = s.store.state(SITE, s.gw)
        return st if st and st.last_version == version and st.last_status in ("applied", "rolled_back",
                                                                               "refused") else None

    st: State = wait_until(done, timeout, f"the gateway's answer to version {version}\n{s.a.tail()}\n{s.b.tail()}")
    return st


def events(s: Stack, version: int, what: str) -> int:
    return sum(1 for e in s.store.events(SITE, s.gw, limit=500) if e.version == version and e.what == what)


def test_a_config_accepted_by_any_replica_reaches_its_gateway_and_is_answered_once_by_its_owner(
    stack: Stack,
) -> None:
    s = stack
    # the gateway's running config, imported by its owner as version 1 (exactly once)
    wait_until(lambda: s.store.versions(SITE, s.gw), 30, "the running config imported")
    v1 = api(s, s.b, "GET", f"/sites/{SITE}/gateways/{s.gw}/config/versions/1")
    assert v1["source"] == "import" and len(s.store.versions(SITE, s.gw)) == 1
    doc = yaml.safe_load(v1["text"])
    doc["uplink"]["keepalive_s"] = 6  # an uplink change: the edge asks the cloud to confirm it
    doc["devices"][0]["poll"]["routine"] = 4
    t0 = time.monotonic()
    v = api(s, s.b, "PUT", f"/sites/{SITE}/gateways/{s.gw}/config",
            {"yaml": yaml.safe_dump(doc, sort_keys=False), "comment": "through the other replica", "confirm_s": 60})
    st = answered(s, v["version"], 90)
    took = time.monotonic() - t0
    assert st.last_status == "applied", (st.last_status, st.last_detail)
    assert "uplink confirmed" in st.last_detail
    assert st.running_version == v["version"]
    wait_until(lambda: (x := s.store.state(SITE, s.gw)) is not None and x.running_digest == v["digest"], 20,
               "the store shows the new config running")
    on_site = yaml.safe_load(s.edge_cfg.read_text())
    assert on_site["uplink"]["keepalive_s"] == 6 and on_site["devices"][0]["poll"]["routine"] == 4
    confirms = [e.who for e in s.store.events(SITE, s.gw, limit=500) if e.version == v["version"]
                and e.what == "confirmed"]
    assert confirms == ["cloud r1"]  # answered once, by the owner, not by every replica
    assert events(s, v["version"], "applied") == 1
    view = api(s, s.a, "GET", f"/sites/{SITE}/gateways/{s.gw}/config")  # both replicas show it
    assert view["drift"] == "in_sync" and view == api(s, s.b, "GET", f"/sites/{SITE}/gateways/{s.gw}/config")
    print(f"\nchange through the other replica applied in {took:.1f} s")


def test_a_config_accepted_before_the_gateway_ever_connected_reaches_it_at_its_birth(stack: Stack) -> None:
    """No retained message on a cluster, and no session to deliver to yet: the owner sends the desired
    config again when the gateway's birth shows it does not run it. Accepted by the replica that does
    not own this gateway (here the owner is B, the change goes through A)."""
    from device_profiles.loader import get_profile

    s = stack
    owners = s.db.owners()
    gw = next(g for g in GATEWAYS if g != s.gw and owners[partition_of(SITE, g, PARTITIONS)] == "r2")
    root = s.root / gw
    root.mkdir()
    dev = SimDevice(get_profile("nanfang-fsm8"), 3)
    dev.set(pipe_pressure=4.2)
    (root / "bus").mkdir()
    bus = RtuBus(root / "bus", [dev])
    edge: AgentProcess | None = None
    obs = None
    try:
        cfg_path = _edge_config(root, s.cluster, gw, bus.port, s.accounts.uplink(gw))
        desired = yaml.safe_load(cfg_path.read_text())
        desired["uplink"]["keepalive_s"] = 8
        del desired["uplink"]["password"]  # a remote config carries none: the gateway keeps its own
        v = api(s, s.a, "PUT", f"/sites/{SITE}/gateways/{gw}/config",
                {"yaml": yaml.safe_dump(desired, sort_keys=False), "comment": "before it came", "confirm_s": 60})
        # not retained by the cluster: a fresh subscriber on another node gets nothing (on the account of
        # the gateway itself, the only one allowed to read its config)
        obs = Observer(s.cluster.mqtt_urls[2], f"sw/v1/{SITE}/{gw}/config", s.accounts.uplink(gw))
        time.sleep(1.0)
        assert obs.got == []
        t0 = time.monotonic()
        edge = AgentProcess(cfg_path, root / "edge.log").start()
        st = wait_until(lambda: (x := s.store.state(SITE, gw)) is not None and x.last_version == v["version"]
                        and x.last_status in ("applied", "rolled_back", "refused") and x,
                        90, f"{gw}'s answer\n{s.b.tail()}")
        assert st.last_status == "applied", (st.last_status, st.last_detail)
        on_site = yaml.safe_load(cfg_path.read_text())["uplink"]
        assert on_site["keepalive_s"] == 8 and on_site["password"] == s.accounts.uplink(gw)["password"]
        confirms = [e.who for e in s.store.events(SITE, gw, limit=500) if e.what == "confirmed"]
        assert confirms == ["cloud r2"]
        print(f"\nconfig waiting for a new gateway applied {time.monotonic() - t0:.1f} s after the agent started")
    finally:
        if obs is not None:
            obs.close()
        if edge is not None:
            edge.stop()
        bus.stop()


class Observer:
    """A clean-session MQTT subscriber on one node, recording what it gets."""

    def __init__(self, url: str, topic: str, login: dict[str, Any]) -> None:
        import threading

        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.got: list[bytes] = []
        subscribed = threading.Event()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="cfg-observer", protocol=mqtt.MQTTv311)
        self.c.username_pw_set(login["username"], login["password"])
        self.c.on_message = lambda _c, _u, m: self.got.append(bytes(m.payload))
        self.c.on_connect = lambda cl, *_a: cl.subscribe(topic, qos=1)
        def on_subscribe(_c: Any, _u: Any, _mid: int, rcs: list[Any], _p: Any) -> None:
            assert rcs[0].value == 1, f"the gateway's account may read its config: SUBACK {rcs}"
            subscribed.set()

        self.c.on_subscribe = on_subscribe
        self.c.connect("127.0.0.1", int(url.rsplit(":", 1)[1]), keepalive=5)
        self.c.loop_start()
        assert subscribed.wait(10), "observer not subscribed"

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def test_the_sites_alarm_limits_reach_the_gateway_through_the_cluster(stack: Stack) -> None:
    """`limits` (docs/wire.md) is not retained on a cluster: the owner sends it again after the gateway's
    birth, into the gateway's session, through the cluster's stream and the cloud user's permission."""
    wait_until(lambda: "alarm limits from the cloud: 1 override(s) for 1 device(s)" in stack.edge.log(), 30,
               "the edge applying its site's limits")


def test_the_survivor_finishes_a_rollout_whose_owner_was_killed_before_the_result(stack: Stack) -> None:
    s = stack
    base = len(s.store.versions(SITE, s.gw))
    r = api(s, s.b, "POST", f"/sites/{SITE}/config-rollouts",
            {"gateways": [s.gw], "patch": "uplink: {keepalive_s: 7}", "comment": "owner dies", "confirm_s": 90,
             "step_timeout_s": 120})

    def sent() -> dict[str, Any] | None:
        step = api(s, s.b, "GET", f"/sites/{SITE}/config-rollouts")[0]["steps"][0]
        return step if step["state"] != "pending" else None

    step = wait_until(sent, 30, "the owner to send the rollout's first step", every=0.05)
    assert step["state"] == "sent" and step["by"] == "r1", step  # stepped by the owner only
    s.a.kill()  # before the gateway's result reached it (the trial waits for a confirmation)
    t_kill = time.monotonic()
    assert events(s, step["version"], "applied") == 0
    st = answered(s, step["version"], 120)
    assert st.last_status == "applied", (st.last_status, st.last_detail)
    assert s.db.owner(partition_of(SITE, s.gw, PARTITIONS)) == "r2"

    def finished() -> dict[str, Any] | None:
        x = next(o for o in api(s, s.b, "GET", f"/sites/{SITE}/config-rollouts") if o["id"] == r["id"])
        return x if x["state"] != "running" else None

    done = wait_until(finished, 30, "the survivor to finish the rollout")
    assert done["state"] == "done" and done["steps"][0]["state"] == "applied", done
    assert done["steps"][0]["by"] == "r2"  # the survivor took the step over
    assert len(s.store.versions(SITE, s.gw)) == base + 1  # one version for the step, not one per replica
    assert events(s, step["version"], "confirmed") == 1
    assert yaml.safe_load(s.edge_cfg.read_text())["uplink"]["keepalive_s"] == 7
    print(f"\nrollout finished by the survivor {time.monotonic() - t_kill:.1f} s after the owner's kill -9")


def test_no_client_was_refused_anything(stack: Stack) -> None:
    """After the rollouts and the takeover: the nodes refused the replicas (the cloud's account) and the
    edges (their own) nothing, so no config path needs a permission production's accounts lack."""
    assert stack.cluster.refusals() == []
