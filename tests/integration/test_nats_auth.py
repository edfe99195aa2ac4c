"""Per-gateway accounts on a REAL 3-node NATS cluster (cloud/cluster/natsauth.py): the nodes include the
accounts file `shelterwatch cloud nats-users` writes; each gateway connects with the credentials of the
edge config enrolment returned, as it is.

What the MQTT client sees, measured here: a publish outside its own topics is acknowledged (PUBACK) and
silently dropped (not stored, not delivered, the connection stays); a refused subscription gets SUBACK
0x80; a wrong password or an unknown user gets CONNACK "not authorised".
"""

from __future__ import annotations

import asyncio
import queue
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from cloud import enrol
from cloud.auth.models import make_engine, make_sessionmaker
from cloud.broker_account import BrokerAccount
from cloud.cluster import partition as P
from cloud.cluster.natsusers import UsersSync, users_text
from cloud.enrol import DeviceSpec
from cloud.ingest.jetstream import parse_servers
from device_profiles import wire
from tests.fixtures.nats_cluster import NatsCluster, make_nats_cluster
from tests.integration.ingest_support import running_ingester
from tests.integration.test_ingest_kill import stored_keys
from tests.polling import wait_until

pytestmark = [pytest.mark.integration]

SITE = "auth-site"
CLOUD = BrokerAccount("cloud", "cloud-pw-never-in-a-file-0815")


class Env:
    """The web side of enrolment (`enrol_and_store`, `rotate_password` with a real registry and web
    database; no HTTP in front) and a cluster whose nodes include the accounts it writes."""

    def __init__(self, root: Path) -> None:
        from types import SimpleNamespace

        from cloud.api.estate import RegistrySource
        from cloud.api.settings import WebSettings
        from cloud.site_config import load_site
        from cloud.state.registry import Registry

        self.registry = Registry(f"sqlite:///{root / 'state.db'}")
        self.registry.register_site(load_site(_site_file(root, {"gw-from-file": "dev0"})))
        self.db = make_sessionmaker(make_engine(f"sqlite:///{root / 'web.db'}"))
        self.app = SimpleNamespace(state=SimpleNamespace(
            estate=RegistrySource(self.registry), db=self.db,
            settings=WebSettings(gateway_broker_url="mqtt://127.0.0.1:1883")))
        self.gw: dict[str, enrol.Enrolment] = {}
        self.cluster: NatsCluster

    def enrol(self, gateway: str, device: str) -> enrol.Enrolment:
        from cloud.api.enrolment import enrol_and_store

        self.gw[gateway] = enrol_and_store(self.app, SITE, gateway, "", [DeviceSpec(device, "voltpile-cp10")], "inst")
        return self.gw[gateway]

    def rotate(self, gateway: str) -> enrol.Enrolment:
        from cloud.api.enrolment import rotate_password

        self.gw[gateway] = rotate_password(self.app, SITE, gateway)
        return self.gw[gateway]

    def users(self) -> str:
        return users_text(self.db, CLOUD, partitions=16)

    def sync(self) -> UsersSync:
        """What `cloud serve --nats-users-file F --nats-reload-pid P…` runs beside the nodes."""
        assert self.cluster.users_file is not None
        return UsersSync(self.db, CLOUD, self.cluster.users_file,
                         [n.proc.pid for n in self.cluster.nodes if n.proc is not None], partitions=16)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("natsauth")
    e = Env(root)
    e.enrol("gw-a", "chg1")
    e.enrol("gw-b", "chg2")
    e.cluster = make_nats_cluster(root / "nats", partitions=16, users=e.users())
    try:
        yield e
    finally:
        e.cluster.stop_all()
        e.registry.close()


def _edge(env: Env, gateway: str, node: int = 0, password: str | None = None, user: str | None = None) -> tuple[
        mqtt.Client, queue.Queue[Any]]:
    """An MQTT 3.1.1 client with the uplink of the edge config enrolment returned (as the edge agent);
    raises ConnectionRefusedError with the CONNACK reason if refused."""
    up = yaml.safe_load(env.gw[gateway].edge_config)["uplink"]
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=up["client_id"], protocol=mqtt.MQTTv311,
                    clean_session=False)
    c.username_pw_set(user or up["username"], password or up["password"])
    c.will_set(wire.topic(SITE, gateway, wire.Kind.STATUS), b'{"state":"offline"}', qos=1, retain=True)
    events: queue.Queue[Any] = queue.Queue()
    connack: queue.Queue[Any] = queue.Queue()
    c.on_connect = lambda _c, _u, _f, rc, _p: connack.put(rc)
    c.on_subscribe = lambda _c, _u, _mid, rcs, _p: events.put(("suback", [r.value for r in rcs]))
    c.on_message = lambda _c, _u, m: events.put(("msg", m.topic, bytes(m.payload)))
    c.on_disconnect = lambda _c, _u, _f, rc, _p: events.put(("disconnect", str(rc)))
    c.connect("127.0.0.1", env.cluster.nodes[node].cfg.mqtt_port, keepalive=10)
    c.loop_start()
    rc = connack.get(timeout=10)
    if rc.is_failure:
        c.loop_stop()
        raise ConnectionRefusedError(str(rc))
    return c, events


def _connects(env: Env, gateway: str, node: int, password: str | None = None) -> bool:
    try:
        _close(_edge(env, gateway, node=node, password=password)[0])
        return True
    except ConnectionRefusedError:
        return False


def _close(*clients: mqtt.Client) -> None:
    for c in clients:
        c.disconnect()
        c.loop_stop()


def _telemetry(seq: int) -> bytes:
    return wire.encode(wire.Telemetry(ts=wire.now(), seq=seq, values={"ambient_temp": 21.5}, epoch="auth"))


def _stored_in_stream(env: Env, gateway: str) -> int:
    """Messages `$MQTT_msgs` holds under a gateway's (partitioned) uplink subjects."""
    import nats

    async def run() -> int:
        nc = await nats.connect(parse_servers(env.cluster.urls), user=CLOUD.username, password=CLOUD.password)
        try:
            si = await nc.jetstream().stream_info(
                P.MQTT_STREAM, subjects_filter=f"{P.MQTT_STREAM_PREFIX}{P.PREFIX}.*.sw.v1.{SITE}.{gateway}.>")
            return sum((si.state.subjects or {}).values())
        finally:
            await nc.close()

    return asyncio.run(run())


def _site_file(root: Path, gateways: dict[str, str]) -> Path:
    doc = {"site": SITE, "name": "auth", "auto_enrol": False,
           "gateways": [{"id": g, "devices": [{"id": d, "profile": "voltpile-cp10"}]} for g, d in gateways.items()]}
    p = root / "site.yaml"
    p.write_text(yaml.safe_dump(doc))
    return p


def test_a_gateway_publishes_and_reads_only_its_own_and_the_cloud_works_with_its_account(
        env: Env, tmp_path: Path) -> None:
    """Gateway A's telemetry is acknowledged and stored by a replica on the cloud's account; A
    publishing as B is acknowledged but neither stored nor delivered; A cannot subscribe to B's
    commands; a command the cloud sends reaches A."""
    from cloud.api.commands import Commander
    from cloud.api.estate import DeviceRec

    site_file = _site_file(tmp_path, {"gw-a": "chg1", "gw-b": "chg2"})
    ts_db = tmp_path / "ts.db"
    with running_ingester(tmp_path, env.cluster.urls, f"sqlite:///{ts_db}", site_file=site_file,
                          account=CLOUD) as (svc, _):
        a, a_events = _edge(env, "gw-a", node=1)
        try:
            a.publish(wire.topic(SITE, "gw-a", wire.Kind.TELEMETRY, "chg1"), _telemetry(1), qos=1).wait_for_publish(5)
            wait_until(lambda: len(stored_keys(ts_db)[0]) == 1, 20, "A's own reading stored")
            before_b = _stored_in_stream(env, "gw-b")
            spoof = a.publish(wire.topic(SITE, "gw-b", wire.Kind.TELEMETRY, "chg2"), _telemetry(7), qos=1)
            spoof.wait_for_publish(5)
            assert spoof.is_published(), "the server acknowledges a refused publish (PUBACK): a silent drop"
            fake_all_clear = a.publish(wire.topic(SITE, "gw-b", wire.Kind.STATUS), b'{"state":"online"}', qos=1)
            fake_all_clear.wait_for_publish(5)
            a.publish(wire.topic(SITE, "gw-a", wire.Kind.TELEMETRY, "chg1"), _telemetry(2), qos=1).wait_for_publish(5)
            wait_until(lambda: len(stored_keys(ts_db)[0]) >= 2, 20, "A's second reading stored")
            assert {dict(k[2])["gateway"] for k in stored_keys(ts_db)[0]} == {"gw-a"}, "only A's readings stored"
            assert a.is_connected(), "a refused publish does not disconnect"
            assert _stored_in_stream(env, "gw-b") == before_b == 0, "nothing stored under B's subjects"
            assert _stored_in_stream(env, "gw-a") >= 2, "(the count sees what is stored)"
            assert svc.stats()["received"] == 2, "the replica received only A's own messages"

            a.subscribe(wire.cmd_topic(SITE, "gw-b"), qos=1)
            assert a_events.get(timeout=5) == ("suback", [0x80]), "B's commands: SUBACK failure"
            a.subscribe(wire.cmd_topic(SITE, "gw-a"), qos=1)
            assert a_events.get(timeout=5) == ("suback", [1])
            db = make_sessionmaker(make_engine(f"sqlite:///{tmp_path / 'cmd-web.db'}"))
            cmd = Commander(db, env.cluster.urls, CLOUD.username, CLOUD.password, timeout_s=1).start()
            try:
                wait_until(cmd.link.connected, 10, "the commander connected with the cloud's account")
                for gw, dev in (("gw-b", "chg2"), ("gw-a", "chg1")):
                    cmd.send(DeviceRec(site=SITE, id=dev, gateway=gw, profile="voltpile-cp10"), SITE, gw,
                             "port_enable", 1, False, by="manager")
                kind, topic, _payload = a_events.get(timeout=10)
                assert (kind, topic) == ("msg", wire.cmd_topic(SITE, "gw-a", "chg1"))
                time.sleep(0.5)
                assert a_events.empty(), list(a_events.queue)
            finally:
                cmd.stop()
        finally:
            _close(a)


def test_a_wrong_password_or_an_unknown_user_is_refused(env: Env) -> None:
    with pytest.raises(ConnectionRefusedError, match=r"[Nn]ot authori"):
        _edge(env, "gw-a", password=env.gw["gw-b"].password)
    with pytest.raises(ConnectionRefusedError, match=r"[Nn]ot authori"):
        _edge(env, "gw-a", user="gw.auth-site.gw-zz")
    with pytest.raises(ConnectionRefusedError, match=r"[Nn]ot authori"):  # the cloud's user is NATS-only
        _edge(env, "gw-a", user=CLOUD.username, password=CLOUD.password)


def test_a_gateway_enrolled_on_a_running_cluster_connects_after_the_reload(env: Env) -> None:
    """Enrol gw-c: refused before the nodes reload the accounts file, accepted on every node after
    `cloud serve`'s account sync (cloud/cluster/natsusers.py) rewrote it and reloaded them; gateway A,
    connected meanwhile, stays connected and keeps publishing."""
    a, _ = _edge(env, "gw-a", node=0)
    try:
        env.enrol("gw-c", "chg3")
        with pytest.raises(ConnectionRefusedError):
            _edge(env, "gw-c", node=2)
        sync = env.sync()
        assert sync.sync_once() and not sync.sync_once(), "rewritten (and nodes reloaded) only on a change"

        wait_until(lambda: _connects(env, "gw-c", 2), 10, "gw-c accepted after the reload")
        for node in (0, 1):
            _close(_edge(env, "gw-c", node=node)[0])
        assert a.is_connected()
        a.publish(wire.topic(SITE, "gw-a", wire.Kind.TELEMETRY, "chg1"), _telemetry(3), qos=1).wait_for_publish(5)
    finally:
        _close(a)


def test_a_rotated_password_replaces_the_old_one_on_every_node(env: Env) -> None:
    """`POST …/gateways/<gw>/password` (rotate_password): after the sync the old password is refused
    on every node and the new one, from the fresh edge config, accepted."""
    env.enrol("gw-r", "chg-r")
    sync = env.sync()
    sync.sync_once()
    old = env.gw["gw-r"].password
    wait_until(lambda: _connects(env, "gw-r", 0), 10, "gw-r accepted")
    new = env.rotate("gw-r").password
    assert new != old and new in env.gw["gw-r"].edge_config
    assert sync.sync_once()

    def only_the_new_one_works() -> bool:
        return all(_connects(env, "gw-r", i) and not _connects(env, "gw-r", i, password=old) for i in range(3))

    wait_until(only_the_new_one_works, 10, "the old password refused, the new accepted on every node")
