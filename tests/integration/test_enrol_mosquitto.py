"""Enrolment output on a REAL mosquitto: a gateway's credentials publish only under its own topics."""

from __future__ import annotations

import queue
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from cloud import enrol
from cloud.enrol import DeviceSpec
from tests.fixtures.servers import make_mosquitto

pytestmark = pytest.mark.integration


def _client(port: int, user: str, password: str, name: str) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
    c.username_pw_set(user, password)
    result: queue.Queue[object] = queue.Queue()
    c.on_connect = lambda cl, ud, flags, rc, props: result.put(rc)
    c.connect("127.0.0.1", port)
    c.loop_start()
    rc = result.get(timeout=10)
    if getattr(rc, "is_failure", False):
        c.loop_stop()
        raise ConnectionRefusedError(str(rc))
    return c


@pytest.fixture
def broker(tmp_path: Path):  # type: ignore[no-untyped-def]
    a = enrol.enrol("estate-a", "gw-a", [DeviceSpec("chg1", "voltpile-cp10")], "mqtt://127.0.0.1:1883")
    b = enrol.enrol("estate-a", "gw-b", [DeviceSpec("chg2", "voltpile-cp10")], "mqtt://127.0.0.1:1883")
    cloud_pw = "cloud-service-password"
    (tmp_path / "passwd").write_text(enrol.render_password_file(
        [a.passwd_line, b.passwd_line, enrol.passwd_line("cloud", cloud_pw)]))
    (tmp_path / "acl").write_text(enrol.render_acl_file([a.acl, b.acl, enrol.cloud_acl("cloud")]))
    m = make_mosquitto(tmp_path, allow_anonymous=False,
                       extra_conf=f"password_file {tmp_path}/passwd\nacl_file {tmp_path}/acl\n").start()
    yield m, a, b, cloud_pw
    m.stop()


def test_gateway_publishes_only_under_its_own_topics(broker) -> None:  # type: ignore[no-untyped-def]
    m, a, _b, cloud_pw = broker
    seen: queue.Queue[str] = queue.Queue()
    watcher = _client(m.port, "cloud", cloud_pw, "watcher")
    watcher.on_message = lambda c, u, msg: seen.put(msg.topic)
    watcher.subscribe("sw/v1/#", qos=1)
    time.sleep(0.3)

    gw_a = _client(m.port, a.mqtt_user, a.password, "gw-a")
    gw_a.publish("sw/v1/estate-a/gw-b/chg2/event", b"{}", qos=1).wait_for_publish(5)
    gw_a.publish("sw/v1/estate-b/gw-a/chg1/event", b"{}", qos=1).wait_for_publish(5)
    gw_a.publish("sw/v1/estate-a/gw-a/chg1/telemetry", b"{}", qos=1).wait_for_publish(5)
    assert seen.get(timeout=5) == "sw/v1/estate-a/gw-a/chg1/telemetry"
    time.sleep(0.5)
    assert seen.empty(), "messages under another gateway's or site's topics must not arrive"

    # Gateway A receives its own commands and not B's.
    got: queue.Queue[str] = queue.Queue()
    gw_a.on_message = lambda c, u, msg: got.put(msg.topic)
    gw_a.subscribe("sw/v1/estate-a/gw-a/+/cmd", qos=1)
    gw_a.subscribe("sw/v1/estate-a/gw-b/+/cmd", qos=1)
    time.sleep(0.3)
    watcher.publish("sw/v1/estate-a/gw-b/chg2/cmd", b"{}", qos=1).wait_for_publish(5)
    watcher.publish("sw/v1/estate-a/gw-a/chg1/cmd", b"{}", qos=1).wait_for_publish(5)
    assert got.get(timeout=5) == "sw/v1/estate-a/gw-a/chg1/cmd"
    time.sleep(0.5)
    assert got.empty()
    for c in (gw_a, watcher):
        c.disconnect()
        c.loop_stop()


def test_wrong_password_and_unknown_user_refused(broker) -> None:  # type: ignore[no-untyped-def]
    m, a, b, _ = broker
    with pytest.raises(ConnectionRefusedError):
        _client(m.port, a.mqtt_user, b.password, "x1")
    with pytest.raises(ConnectionRefusedError):
        _client(m.port, "gw.estate-a.gw-c", a.password, "x2")


def test_broker_configured_from_the_web_enrolment_output(tmp_path: Path) -> None:
    """Installer enrols two gateways through the API; the broker's files come from the API; the
    credentials used are the ones in each downloaded edge config."""
    import yaml
    from fastapi.testclient import TestClient

    from tests.fixtures.web import make_web_env

    (tmp_path / "web").mkdir()
    env = make_web_env(tmp_path / "web", alarms=False)
    c = TestClient(env.app, headers=env.token_headers("inst-a"))
    configs = {}
    for gw, dev in (("gw-x", "chgx"), ("gw-y", "chgy")):
        r = c.post("/api/v1/sites/estate-a/gateways", json={"gateway": gw, "devices": [
            {"id": dev, "profile": "voltpile-cp10"}]})
        assert r.status_code == 201, r.text
        configs[gw] = yaml.safe_load(r.json()["edge_config"])["uplink"]
    assert c.post("/api/v1/sites/estate-a/gateways", json={"gateway": "gw-x", "devices": [
        {"id": "other", "profile": "voltpile-cp10"}]}).status_code == 409
    passwd = c.get("/api/v1/sites/estate-a/mosquitto/passwd").text
    acl = c.get("/api/v1/sites/estate-a/mosquitto/acl").text
    assert configs["gw-x"]["password"] not in passwd
    (tmp_path / "passwd").write_text(passwd + enrol.passwd_line("cloud", "cloud-service-password") + "\n")
    (tmp_path / "acl").write_text(acl + "\n" + enrol.cloud_acl("cloud"))
    m = make_mosquitto(tmp_path, allow_anonymous=False,
                       extra_conf=f"password_file {tmp_path}/passwd\nacl_file {tmp_path}/acl\n").start()
    try:
        seen: queue.Queue[str] = queue.Queue()
        watcher = _client(m.port, "cloud", "cloud-service-password", "watcher")
        watcher.on_message = lambda cl, u, msg: seen.put(msg.topic)
        watcher.subscribe("sw/v1/#", qos=1)
        time.sleep(0.3)
        x = configs["gw-x"]
        gw_x = _client(m.port, x["username"], x["password"], x["client_id"])
        gw_x.publish("sw/v1/estate-a/gw-y/chgy/telemetry", b"{}", qos=1).wait_for_publish(5)
        gw_x.publish("sw/v1/estate-a/gw-x/chgx/telemetry", b"{}", qos=1).wait_for_publish(5)
        assert seen.get(timeout=5) == "sw/v1/estate-a/gw-x/chgx/telemetry"
        time.sleep(0.5)
        assert seen.empty()
        with pytest.raises(ConnectionRefusedError):
            _client(m.port, configs["gw-y"]["username"], x["password"], "mixed")
        for cl in (gw_x, watcher):
            cl.disconnect()
            cl.loop_stop()
    finally:
        m.stop()
        env.close()


def test_an_enrolled_config_cannot_command_or_publish_outside_its_gateway(tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    """The config enrolment returns, loaded by the edge agent's own loader as it is, with the
    broker's generated password file and ACLs: its account commands and publishes only its own
    gateway, hears the cloud's time beacon; the cloud's ingester runs on its own account and its
    password shows in no log line."""
    import logging

    from cloud.broker_account import BrokerAccount
    from cloud.ingest.service import IngestConfig, IngestService
    from device_profiles import wire
    from edge_agent.config import load_config

    a = enrol.enrol("estate-a", "gw-a", [DeviceSpec("chg1", "voltpile-cp10")], "mqtt://127.0.0.1:1883")
    b = enrol.enrol("estate-a", "gw-b", [DeviceSpec("chg2", "voltpile-cp10")], "mqtt://127.0.0.1:1883")
    cloud_pw = "cloud-pw-never-logged-4711"
    (tmp_path / "passwd").write_text(enrol.render_password_file([a.passwd_line, b.passwd_line,
                                                                 enrol.passwd_line("cloud", cloud_pw)]))
    (tmp_path / "acl").write_text(enrol.render_acl_file([a.acl, b.acl, enrol.cloud_acl("cloud")]))
    (tmp_path / "edge-a.yaml").write_text(a.edge_config)
    cfg_a, _ = load_config(tmp_path / "edge-a.yaml")  # as returned: no edit
    m = make_mosquitto(tmp_path, allow_anonymous=False,
                       extra_conf=f"password_file {tmp_path}/passwd\nacl_file {tmp_path}/acl\n").start()
    caplog.set_level(logging.DEBUG)
    svc = IngestService(IngestConfig(
        broker=m.url, tsdb=f"sqlite:///{tmp_path}/ts.db", state_db=f"sqlite:///{tmp_path}/state.db",
        spool_dir=str(tmp_path / "spool"), client_id="cloud-ingest", account=BrokerAccount("cloud", cloud_pw),
        time_beacon_s=0.3, tune_gc=False))
    clients: list[mqtt.Client] = []
    try:
        svc.start(wait=10)
        assert svc.client.connected.is_set(), "the ingester connects with its own account"
        gw_b = _client(m.port, b.mqtt_user, b.password, "gw-b")
        clients.append(gw_b)
        b_got: queue.Queue[str] = queue.Queue()
        gw_b.on_message = lambda c, u, msg: b_got.put(msg.topic)
        gw_b.subscribe(wire.cmd_topic("estate-a", "gw-b"), qos=1)
        gw_a = _client(m.port, cfg_a.uplink.username or "", cfg_a.uplink.password or "", cfg_a.uplink.client_id or "")
        clients.append(gw_a)
        a_got: queue.Queue[str] = queue.Queue()
        gw_a.on_message = lambda c, u, msg: a_got.put(msg.topic)
        gw_a.subscribe([(wire.TIME_TOPIC, 0), ("sw/v1/estate-a/gw-b/+/cmd", 1), ("sw/v1/estate-a/gw-b/+/telemetry", 1)])
        assert a_got.get(timeout=5) == wire.TIME_TOPIC, "the gateway hears the cloud's time beacon"
        cmd = wire.Command(ts=wire.now(), id="c0ffee0012345678", command="port_enable", index=1, value=False)
        gw_a.publish("sw/v1/estate-a/gw-b/chg2/cmd", wire.encode(cmd), qos=1).wait_for_publish(5)
        gw_a.publish("sw/v1/estate-a/gw-b/chg2/telemetry", b"{}", qos=1).wait_for_publish(5)
        gw_b.publish("sw/v1/estate-a/gw-b/chg2/telemetry", b"{}", qos=1).wait_for_publish(5)
        time.sleep(1.0)
        assert b_got.empty(), "gateway A's command never reaches gateway B"
        assert not [t for t in list(a_got.queue) if t != wire.TIME_TOPIC], "nor does A read B's topics"
        assert svc.stats()["received"] == 1, "only B's own telemetry reached the cloud"
    finally:
        for c in clients:
            c.disconnect()
            c.loop_stop()
        svc.stop()
        m.stop()
    assert cloud_pw not in caplog.text
    assert cloud_pw not in repr(svc.config)
