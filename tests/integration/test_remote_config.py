"""Remote configuration on real parts: a simulated shelter (real RTU bytes on a pty, Modbus TCP),
the edge agent as a process, a real mosquitto with the ACLs enrolment generates, and the cloud's
ConfigService on a real store.

One gateway goes through, in order: its running config imported; a valid change applied end to
end; an invalid one refused in the cloud (nothing stored, nothing sent); one whose device cannot
answer rolled back by the edge, while an interlock still cuts an overheating port; the broker
stopped in the middle of an apply; an uplink that cannot connect and one that connects to a
broker the cloud does not read, both rolled back by the edge; an uplink change the cloud confirms.
All along, the outbox stays intact: every device's sequence numbers arrive without a gap.
A second test: a gateway cannot read or change another gateway's config, nor its own desired one.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from sqlalchemy import create_engine

from cloud import enrol
from cloud.enrol import DeviceSpec
from cloud.remote_config.service import ConfigRejected, ConfigService
from cloud.remote_config.store import ConfigStore
from device_profiles import wire
from device_profiles.loader import catalog
from edge_agent.scan_config import render
from simulators.edge_config import edge_config
from simulators.site import SimSite
from tests.fixtures.servers import make_mosquitto
from tests.integration.edge.helpers import AgentProcess
from tests.polling import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.slow]
SITE = "shelter-a"
CLOUD_PW = "cloud-service-password"


class Broker:
    """mosquitto with enrolment's password file and ACLs for two gateways and the cloud."""

    def __init__(self, tmp: Path) -> None:
        self.a = enrol.enrol(SITE, "gw1", [DeviceSpec("chg1", "voltpile-cp10")], "mqtt://127.0.0.1:1883")
        self.b = enrol.enrol(SITE, "gw2", [DeviceSpec("chg9", "hengtong-ebc12")], "mqtt://127.0.0.1:1883")
        (tmp / "passwd").write_text(enrol.render_password_file(
            [self.a.passwd_line, self.b.passwd_line, enrol.passwd_line("cloud", CLOUD_PW)]))
        (tmp / "acl").write_text(enrol.render_acl_file([self.a.acl, self.b.acl, enrol.cloud_acl("cloud")]))
        self.m = make_mosquitto(tmp, allow_anonymous=False,
                                extra_conf=f"password_file {tmp}/passwd\nacl_file {tmp}/acl\n").start()
        self.port = self.m.port
        self.url = self.m.url


class Seqs:
    """Everything gw1 sends, seen with the cloud's credentials on a persistent session (QoS 1
    messages queued by the broker while we are away are delivered on reconnect)."""

    def __init__(self, port: int) -> None:
        self.lock = threading.Lock()
        self.seq: dict[str, set[int]] = {}
        self.events: list[Any] = []
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-seqs", clean_session=False)
        c.username_pw_set("cloud", CLOUD_PW)
        c.on_connect = lambda cl, u, f, rc, p=None: cl.subscribe(
            [(t, 1) for t in wire.subscriptions(SITE, "gw1")])
        c.on_message = self._msg
        c.reconnect_delay_set(1, 2)
        c.connect("127.0.0.1", port)
        c.loop_start()
        self.client = c

    def _msg(self, _c: Any, _u: Any, m: Any) -> None:
        t = wire.parse_topic(m.topic)
        p = wire.decode(t.kind, bytes(m.payload))
        with self.lock:
            if t.device is not None and hasattr(p, "seq"):
                self.seq.setdefault(t.device, set()).add(p.seq)
            if t.kind is wire.Kind.EVENT:
                self.events.append((t.device, p))

    def gaps(self) -> dict[str, list[int]]:
        with self.lock:
            return {d: sorted(set(range(1, max(s) + 1)) - s) for d, s in self.seq.items()
                    if set(range(1, max(s) + 1)) - s}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def start_agent(tmp: Path, broker: Broker, sim: SimSite, gw: str) -> tuple[AgentProcess, Path]:
    """An edge agent process for `gw` reading `sim`, with enrolment's credentials."""
    e = broker.a if gw == "gw1" else broker.b
    doc, _ = edge_config(SITE, sim.endpoints(), gw, broker.url, str(tmp / f"state-{gw}"),
                         extra={"health_s": 2, "snapshot_s": 30})
    doc["uplink"].update(client_id=f"edge-{gw}", username=e.mqtt_user, password=e.password,
                         reconnect_min_s=0.5, reconnect_max_s=1)
    for d in doc["devices"]:
        d["poll"] = {"safety": 0.5, "routine": 1, "slow": 5}
    cfg = tmp / f"edge-{gw}.yaml"
    cfg.write_text(render(doc, "test", []))
    return AgentProcess(cfg, tmp / f"agent-{gw}.log").start(), cfg


def cloud(tmp: Path, broker: Broker) -> ConfigService:
    store = ConfigStore(create_engine(f"sqlite:///{tmp}/state.db"))
    return ConfigService(store, broker.url, catalog(), lambda site: ["gw1", "gw2"] if site == SITE else [],
                         username="cloud", password=CLOUD_PW, rollout_tick_s=0.2).start()


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[dict[str, Any]]:
    (tmp_path / "mq").mkdir()
    broker = Broker(tmp_path / "mq")
    sim = SimSite.from_file("shelter-a").start()
    svc = cloud(tmp_path, broker)
    seqs = Seqs(broker.port)
    agent, cfg = start_agent(tmp_path, broker, sim, "gw1")
    yield {"broker": broker, "sim": sim, "svc": svc, "seqs": seqs, "agent": agent, "cfg": cfg, "tmp": tmp_path}
    agent.stop()
    seqs.close()
    svc.stop()
    sim.stop()
    broker.m.stop()


def finished(svc: ConfigService, version: int, timeout: float = 40.0, gw: str = "gw1") -> Any:
    def done() -> Any:
        st = svc.store.state(SITE, gw)
        return st if st and st.last_version == version and st.last_status in ("applied", "rolled_back",
                                                                               "refused") else None

    return wait_until(done, timeout, f"the gateway's answer to version {version}")


def edited(svc: ConfigService, change: Any, base: int | None = None) -> str:
    """The desired config (or version `base`) with `change` made to it."""
    v = svc.store.version(SITE, "gw1", base) if base else None
    data = yaml.safe_load(v.text if v else svc.base_text(SITE, "gw1"))
    change(data)
    return yaml.safe_dump(data, sort_keys=False)


def test_remote_configuration_end_to_end(parts: dict[str, Any]) -> None:
    svc: ConfigService = parts["svc"]
    agent: AgentProcess = parts["agent"]
    seqs: Seqs = parts["seqs"]
    broker: Broker = parts["broker"]
    sim: SimSite = parts["sim"]
    try:
        # The running config is imported as version 1 (not desired: nothing is sent).
        v1 = wait_until(lambda: svc.store.version(SITE, "gw1", 1), 30, "the imported running config")
        assert v1.source == "import" and "password" not in v1.text
        assert svc.view(SITE, "gw1").drift == "unmanaged"
        wait_until(lambda: seqs.seq.get("spk1"), 20, "telemetry")

        # 1. A valid change, applied end to end: the gateway runs it, the file on disk holds it.
        text = edited(svc, lambda d: d.update(snapshot_s=45))
        v2 = svc.submit(SITE, "gw1", text, "installer:wang", "longer snapshots")
        st = finished(svc, v2.version)
        assert st.last_status == "applied", st.last_detail
        wait_until(lambda: svc.view(SITE, "gw1").drift == "in_sync", 10, "in sync")
        assert svc.store.state(SITE, "gw1").running_version == v2.version  # type: ignore[union-attr]
        on_disk = yaml.safe_load(parts["cfg"].read_text())
        assert on_disk["snapshot_s"] == 45 and on_disk["uplink"]["password"] == broker.a.password
        who = [(e.who, e.what) for e in svc.store.events(SITE, "gw1")]
        assert ("installer:wang", "edit") in who and ("gateway gw1", "applied") in who

        # 2. An invalid one is refused in the cloud: located problems, nothing stored or sent.
        bad = edited(svc, lambda d: (d.update(site="elsewhere"), d["devices"][0].update(profile="nope-9")))
        with pytest.raises(ConfigRejected) as ei:
            svc.submit(SITE, "gw1", bad, "installer:wang")
        msgs = " | ".join(f"{i.line} {i.key}: {i.message}" for i in ei.value.problems)
        assert "devices[0].profile" in msgs and "unknown profile" in msgs, msgs
        assert len(svc.store.versions(SITE, "gw1")) == 2
        bad_site = edited(svc, lambda d: d.update(site="elsewhere"))
        with pytest.raises(ConfigRejected, match="checks") as ei:
            svc.submit(SITE, "gw1", bad_site, "installer:wang")
        assert ei.value.problems[0].key == "site"
        assert svc.store.state(SITE, "gw1").desired == v2.version  # type: ignore[union-attr]

        # 3. A device that cannot answer: the edge rolls back by itself within probe_s, and an
        #    overheating port is still cut during the trial (interlocks keep running).
        chg = sim.device("chg1").model
        sim.call(lambda: (setattr(chg.ports[3], "connector_temp", 73.0), chg.start_runaway(3)))
        text = edited(svc, lambda d: next(x for x in d["devices"] if x["id"] == "spk1").update(address=9))
        v3 = svc.submit(SITE, "gw1", text, "installer:wang", probe_s=4)
        st = finished(svc, v3.version)
        assert st.last_status == "rolled_back" and "spk1" in st.last_detail, st.last_detail
        assert st.last_devices["spk1"].startswith("no answer (unit 9"), st.last_devices
        assert st.running_version == v2.version
        assert svc.view(SITE, "gw1").drift == "rolled_back"
        wait_until(lambda: [e for d, e in seqs.events if d == "chg1" and e.kind == "interlock"], 20,
                   "the interlock event")
        wait_until(lambda: chg.ports[3].enabled is False, 5, "port 3 cut")
        n = len(seqs.seq["spk1"])
        wait_until(lambda: len(seqs.seq["spk1"]) > n + 2, 15, "spk1 polled at its old address again")

        # 4. The broker goes away in the middle of an apply: the edge finishes it alone, the
        #    result waits in the outbox and arrives when the broker is back.
        # (v3 stays the desired config, shown as rolled back, until someone sends a fix: start from v2)
        text = edited(svc, lambda d: next(x for x in d["devices"] if x["id"] == "chg1").update(
            poll={"safety": 0.5, "routine": 2, "slow": 5}), v2.version)
        v4 = svc.submit(SITE, "gw1", text, "manager:li", probe_s=10)
        wait_until(lambda: svc.store.state(SITE, "gw1").last_version == v4.version, 20,  # type: ignore[union-attr]
                   "applying")
        broker.m.stop()
        time.sleep(3)
        broker.m.start()
        st = finished(svc, v4.version, 60)
        assert st.last_status == "applied", st.last_detail

        # 5. An uplink that cannot connect: rolled back after confirm_s, reported over the old one.
        text = edited(svc, lambda d: d["uplink"].update(url="mqtt://127.0.0.1:1"))
        v5 = svc.submit(SITE, "gw1", text, "installer:wang", confirm_s=5)
        st = finished(svc, v5.version, 40)
        assert st.last_status == "rolled_back" and "did not connect" in st.last_detail, st.last_detail

        # 6. An uplink that connects to a broker the cloud does not read (anonymous, no ACL): no
        #    confirmation, so rolled back; nothing was drained into it (the outbox was held).
        (parts["tmp"] / "mq2").mkdir()
        other = make_mosquitto(parts["tmp"] / "mq2").start()
        try:
            text = edited(svc, lambda d: d["uplink"].update(url=other.url))
            v6 = svc.submit(SITE, "gw1", text, "installer:wang", confirm_s=5)
            st = finished(svc, v6.version, 40)
            assert st.last_status == "rolled_back" and "did not confirm" in st.last_detail, st.last_detail
        finally:
            other.stop()

        # 7. An uplink change the cloud confirms (same broker, another address for it): kept.
        text = edited(svc, lambda d: d["uplink"].update(url=f"mqtt://localhost:{broker.port}"))
        v7 = svc.submit(SITE, "gw1", text, "installer:wang", confirm_s=20)
        st = finished(svc, v7.version, 40)
        assert st.last_status == "applied" and "uplink confirmed" in st.last_detail, st.last_detail
        assert any(e.what == "confirmed" for e in svc.store.events(SITE, "gw1"))
        assert yaml.safe_load(parts["cfg"].read_text())["uplink"]["url"] == f"mqtt://localhost:{broker.port}"

        # 8. Roll back from the cloud: a new version with v2's text, applied.
        v8 = svc.rollback(SITE, "gw1", v2.version, "manager:li")
        assert v8.parent == v2.version and v8.digest == v2.digest
        assert finished(svc, v8.version, 40).last_status == "applied"
        wait_until(lambda: svc.view(SITE, "gw1").drift == "in_sync", 10, "in sync after the rollback")

        # The outbox came through all of it: every device's sequence numbers without a gap.
        time.sleep(2)
        wait_until(lambda: not seqs.gaps(), 30, f"no gaps in sequence numbers ({seqs.gaps()})")
        assert {"chg1", "spk1", "chg2"} <= set(seqs.seq)
    except BaseException:
        print(agent.log())
        raise
    assert "Traceback" not in agent.log(), agent.log()


def _client(port: int, user: str, password: str, name: str, got: queue.Queue[tuple[str, bytes]]) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name)
    c.username_pw_set(user, password)
    ok = threading.Event()
    c.on_connect = lambda cl, u, f, rc, p=None: ok.set()
    c.on_message = lambda cl, u, m: got.put((m.topic, bytes(m.payload)))
    c.connect("127.0.0.1", port)
    c.loop_start()
    assert ok.wait(10)
    return c


def test_a_gateway_cannot_fetch_or_change_another_gateways_config(tmp_path: Path) -> None:
    (tmp_path / "mq").mkdir()
    broker = Broker(tmp_path / "mq")
    a, b = broker.a, broker.b
    cloud_q: queue.Queue[tuple[str, bytes]] = queue.Queue()
    a_q: queue.Queue[tuple[str, bytes]] = queue.Queue()
    b_q: queue.Queue[tuple[str, bytes]] = queue.Queue()
    cloud = _client(broker.port, "cloud", CLOUD_PW, "cloud", cloud_q)
    gw_a = _client(broker.port, a.mqtt_user, a.password, "gw-a", a_q)
    gw_b = _client(broker.port, b.mqtt_user, b.password, "gw-b", b_q)
    try:
        desired = wire.config_topic(SITE, "gw1", wire.ConfigKind.DESIRED)
        secret = b"the desired config of gw1"
        cloud.publish(desired, secret, qos=1, retain=True).wait_for_publish(5)
        cloud.subscribe([(t, 1) for t in wire.config_subscriptions(SITE, "+")] + [(desired, 1)])
        assert cloud_q.get(timeout=5) == (desired, secret)  # the retained one, once
        # gw1 reads its own (retained) desired config; gw2 cannot read gw1's.
        gw_a.subscribe(wire.gateway_config_subscriptions(SITE, "gw1")[0], qos=1)
        gw_b.subscribe(desired, qos=1)
        gw_b.subscribe(f"{wire.PREFIX}/{SITE}/+/config", qos=1)
        assert a_q.get(timeout=5) == (desired, secret)
        # the same for its site's alarm limits (docs/wire.md `limits`): the cloud writes them, gw1 reads its own
        limits = f"sw/v1/{SITE}/gw1/limits"
        mine = b'{"v": 1, "ts": "2026-11-25T04:00:00.000Z", "devices": {}}'
        cloud.publish(limits, mine, qos=1, retain=True).wait_for_publish(5)
        gw_b.subscribe(limits, qos=1)
        gw_b.subscribe(f"sw/v1/{SITE}/+/limits", qos=1)
        gw_b.publish(limits, b"forged by gw2", qos=1, retain=True).wait_for_publish(5)
        gw_a.publish(limits, b"forged by gw1", qos=1, retain=True).wait_for_publish(5)
        gw_a.subscribe(limits, qos=1)
        assert a_q.get(timeout=5) == (limits, mine)
        # gw2 cannot change gw1's desired config, confirm gw1's trial, or answer for gw1;
        # gw1 cannot change its own desired config either.
        gw_b.publish(desired, b"forged by gw2", qos=1, retain=True).wait_for_publish(5)
        gw_b.publish(wire.config_topic(SITE, "gw1", wire.ConfigKind.CONFIRM), b"{}", qos=1).wait_for_publish(5)
        gw_b.publish(wire.config_topic(SITE, "gw1", wire.ConfigKind.RESULT), b"forged", qos=1).wait_for_publish(5)
        gw_a.publish(desired, b"forged by gw1", qos=1, retain=True).wait_for_publish(5)
        # gw1 may answer for itself.
        gw_a.publish(wire.config_topic(SITE, "gw1", wire.ConfigKind.RESULT), b"mine", qos=1).wait_for_publish(5)
        assert cloud_q.get(timeout=5) == (wire.config_topic(SITE, "gw1", wire.ConfigKind.RESULT), b"mine")
        time.sleep(1.0)
        assert b_q.empty(), "gw2 saw gw1's config"
        assert a_q.empty(), "a forged message reached gw1"
        assert cloud_q.empty(), "a forged message reached the cloud"
        # The retained desired config is still the cloud's.
        fresh_q: queue.Queue[tuple[str, bytes]] = queue.Queue()
        fresh = _client(broker.port, "cloud", CLOUD_PW, "cloud-2", fresh_q)
        fresh.subscribe(desired, qos=1)
        assert fresh_q.get(timeout=5) == (desired, secret)
        fresh.disconnect()
        fresh.loop_stop()
    finally:
        for c in (cloud, gw_a, gw_b):
            c.disconnect()
            c.loop_stop()
        broker.m.stop()


def test_rollout_goes_one_by_one_and_stops_at_the_first_rollback(tmp_path: Path) -> None:
    (tmp_path / "mq").mkdir()
    broker = Broker(tmp_path / "mq")
    sims = [SimSite.from_file("shelter-a").start(), SimSite.from_file("shelter-b").start()]
    svc = cloud(tmp_path, broker)
    agents = [start_agent(tmp_path, broker, sims[0], "gw1")[0], start_agent(tmp_path, broker, sims[1], "gw2")[0]]
    try:
        for gw in ("gw1", "gw2"):
            wait_until(lambda g=gw: svc.store.version(SITE, g, 1), 30, f"{gw}'s running config")
        # A change every gateway accepts: applied on gw1, then on gw2.
        r = svc.start_rollout(SITE, ["gw1", "gw2"], "snapshot_s: 50", "manager:li", "longer snapshots")
        done = wait_until(lambda: (x := svc.store.rollout(r.id)) and x.state != "running" and x, 60, "rollout 1")
        assert done.state == "done", done.detail
        assert [s["state"] for s in done.steps] == ["applied", "applied"]
        applied = [svc.store.state(SITE, g).last_at for g in ("gw1", "gw2")]  # type: ignore[union-attr]
        assert applied[0] < applied[1], "one after the other"
        # A change the first gateway rolls back: the rollout stops there; gw2 never gets it.
        gw2_versions = len(svc.store.versions(SITE, "gw2"))
        r2 = svc.start_rollout(SITE, ["gw1", "gw2"], "uplink: {url: 'mqtt://127.0.0.1:1'}", "manager:li",
                               "new broker", confirm_s=5)
        done = wait_until(lambda: (x := svc.store.rollout(r2.id)) and x.state != "running" and x, 60, "rollout 2")
        assert done.state == "stopped" and "gw1 rolled_back" in done.detail, done.detail
        assert [s["state"] for s in done.steps] == ["rolled_back", "skipped"]
        assert len(svc.store.versions(SITE, "gw2")) == gw2_versions
        # A change that does not pass the checks on one gateway starts nowhere.
        with pytest.raises(ConfigRejected, match="every gateway"):
            svc.start_rollout(SITE, ["gw1", "gw2"], "devices: []", "manager:li")
    finally:
        for a in agents:
            a.stop()
        svc.stop()
        for sim in sims:
            sim.stop()
        broker.m.stop()
    for a in agents:
        assert "Traceback" not in a.log(), a.log()
