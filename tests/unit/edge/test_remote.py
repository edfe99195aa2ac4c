"""Remote configuration rules (edge_agent/remote.py), the change plan, the gateway's config state,
the config a scan writes (edge_agent/scan_config.py), and the cloud's drift and merge patch."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from cloud.remote_config.service import drift_of
from cloud.remote_config.store import State, Version
from cloud.remote_config.validate import merge_patch, validate
from device_profiles.loader import catalog
from device_profiles.located_yaml import ConfigError
from device_profiles.model import PollClass, TransportKind
from edge_agent.config import AgentConfig, parse_config
from edge_agent.config_state import ConfigState
from edge_agent.remote import check_remote, digest, merge_secrets, plan_change, redact
from edge_agent.scan_config import FoundDevice, build_config

BASE = textwrap.dedent("""\
    site: shelter-a
    gateway: gw1
    state_dir: /var/lib/sw
    uplink: {url: "mqtt://broker:1883", username: gw.shelter-a.gw1, password: s3cret}
    buses:
      - {name: rs485-1, transport: modbus_rtu, serial_port: /dev/ttyUSB0, baud: 9600}
      - {name: lan, transport: modbus_tcp, host: 10.0.0.5}
    devices:
      - {id: chg1, profile: voltpile-cp10, bus: rs485-1, address: 3}
      - {id: spk1, profile: nanfang-fsm8, bus: rs485-1, address: 5}
      - {id: chg2, profile: hengtong-ebc12, bus: lan, address: 1}
    """)


def cfg_of(text: str) -> tuple[AgentConfig, dict[str, Any]]:
    cfg, _, _ = parse_config(text, "t.yaml", Path("."), catalog())
    return cfg, yaml.safe_load(text)


def change(text: str, fn: Any) -> str:
    d = yaml.safe_load(text)
    fn(d)
    return yaml.safe_dump(d, sort_keys=False)


def test_digest_names_content_not_layout_or_password() -> None:
    d = yaml.safe_load(BASE)
    relaid = "# a comment\n" + yaml.safe_dump(dict(reversed(list(d.items()))))
    assert digest(yaml.safe_load(relaid)) == digest(d)
    assert digest({**d, "uplink": {**d["uplink"], "password": "other"}}) == digest(d)
    assert digest({**d, "snapshot_s": 61}) != digest(d)
    assert "password" not in redact(d)["uplink"] and d["uplink"]["password"] == "s3cret"


def test_remote_rules_are_located() -> None:
    running, _ = cfg_of(BASE)
    bad = change(BASE, lambda d: (d.update(gateway="gw9", state_dir="/tmp/x"), d["uplink"].pop("password")))
    with pytest.raises(ConfigError) as e:
        check_remote(bad, "v7", "shelter-a", "gw1", running, Path("."), catalog())
    got = {(i.line, i.key) for i in e.value.issues}
    assert got == {(2, "gateway"), (3, "state_dir")}, e.value.issues
    with pytest.raises(ConfigError, match=r"uplink\.password: a remote config carries no password"):
        check_remote(BASE, "v7", "shelter-a", "gw1", running, Path("."), catalog())
    ok = check_remote(change(BASE, lambda d: d["uplink"].pop("password")), "v7", "shelter-a", "gw1", running,
                      Path("."), catalog())
    assert merge_secrets(ok.data, running)["uplink"]["password"] == "s3cret"


def test_plan_rebuilds_only_what_changed_and_names_who_must_answer() -> None:
    old, od = cfg_of(BASE)
    new, nd = cfg_of(change(BASE, lambda d: d["devices"][1].update(address=9)))
    p = plan_change(old, new, od, nd)
    assert (p.stop, p.start) == ({"rs485-1"}, {"rs485-1"}) and not p.uplink_changed
    assert p.comm_changed == {"spk1"} and p.reattached == {"chg1"}
    assert p.judged({"chg1", "chg2"}) == {"spk1", "chg1"}
    assert p.judged({"chg2"}) == {"spk1"}, "a device dead before, settings unchanged, does not block a change"
    labels, ld = cfg_of(change(BASE, lambda d: d["devices"][2].update(labels={"zone": "n"})))
    q = plan_change(old, labels, od, ld)
    assert q.start == {"lan"} and q.comm_changed == set() and q.reattached == {"chg2"}
    up, ud = cfg_of(change(BASE, lambda d: d["uplink"].update(url="mqtts://b2:8883")))
    r = plan_change(old, up, od, ud)
    assert r.uplink_changed and not r.start and not r.same
    same, sd = cfg_of("# again\n" + BASE)
    assert plan_change(old, same, od, sd).same


def test_config_state_knows_a_local_edit(tmp_path: Path) -> None:
    f = tmp_path / "edge.yaml"
    f.write_text(BASE)
    st = ConfigState()
    from edge_agent.config_state import sha256_file

    st.commit(4, "d" * 64, sha256_file(f), "installer:wang")
    st.remember(4, {"status": "applied"})
    st.save(tmp_path / "s.json")
    back = ConfigState.load(tmp_path / "s.json")
    assert back.running_version(f) == 4 and back.last_seen == 4
    f.write_text(BASE + "snapshot_s: 30\n")
    assert back.running_version(f) == 0, "edited on site: a local config"
    (tmp_path / "broken.json").write_text("{not json")
    assert ConfigState.load(tmp_path / "broken.json").last_seen == 0


def test_scan_config_keeps_enrolment_ids_and_drops_placeholders() -> None:
    base = {"site": "s", "gateway": "g", "uplink": {"url": "mqtt://b:1883", "password": "p"},
            "buses": [{"name": "rs485-9600", "transport": "modbus_rtu", "port": "/dev/ttyUSB0", "baud": 9600}],
            "devices": [{"id": "chg1", "profile": "voltpile-cp10", "bus": "rs485-9600", "address": 1},
                        {"id": "gone", "profile": "nanfang-fsm8", "bus": "rs485-9600", "address": 2}]}
    found = [FoundDevice("voltpile-cp10", TransportKind.MODBUS_RTU, serial_port="/dev/ttyUSB1", baud=19200, unit=3),
             FoundDevice("parkhub-ph48", TransportKind.MODBUS_RTU, serial_port="/dev/ttyUSB1", baud=19200, unit=7)]
    doc, notes = build_config(found, catalog(), base)
    assert [(d["id"], d["address"], d["bus"]) for d in doc["devices"]] == [
        ("chg1", 3, "ttyusb1"), ("gone", 2, "rs485-9600"), ("ph48-u7", 7, "ttyusb1")]
    assert doc["uplink"]["password"] == "p"
    assert any("ph48-u7" in n for n in notes)
    again, notes2 = build_config(found[:1], catalog(), doc)
    assert [d["id"] for d in again["devices"]] == ["chg1", "gone"], "ph48-u7 not found again on ttyusb1: removed"
    assert any("ph48-u7" in n and "removed" in n for n in notes2)
    # what it wrote passes the checks (old `port:` key converted on the way)
    text = yaml.safe_dump(again)
    assert "serial_port: /dev/ttyUSB0" in text and "port: /dev" not in text.replace("serial_port", "")
    parse_config(text, "x", Path("."), catalog())


def test_old_port_key_still_read_and_explained() -> None:
    old = BASE.replace("serial_port: /dev/ttyUSB0", "port: /dev/ttyUSB0")
    cfg, _, warnings = parse_config(old, "t.yaml", Path("."), catalog())
    assert cfg.buses[0].serial_port == "/dev/ttyUSB0"
    assert [str(w) for w in warnings] == ["t.yaml:6 buses[0].port: `port:` is the old name of `serial_port:` "
                                          "(still read; rename it)"]
    tcp = BASE.replace("host: 10.0.0.5}", "host: 10.0.0.5, port: 502}")
    with pytest.raises(ConfigError) as e:
        parse_config(tcp, "t.yaml", Path("."), catalog())
    assert str(e.value) == ("t.yaml:7 buses[1].port: a modbus_tcp bus has no `port:`: its TCP port is `tcp_port:` "
                            "(`port:` was the serial device's old key, now `serial_port:`)")


def test_cloud_validation_and_merge_patch() -> None:
    v = validate("shelter-a", "gw1", change(BASE, lambda d: d["uplink"].pop("password")), "", catalog())
    assert v.ok and v.budgets == ["bus rs485-1: polls need 35% of the line at 9600 baud"], v
    bad = validate("shelter-a", "gw1", "site: shelter-a\ngateway: gw1\nbuses: []\n", "", catalog())
    assert not bad.ok and {i.key for i in bad.problems} >= {"uplink", "buses", "devices"}
    assert merge_patch({"a": 1, "u": {"url": "x", "k": 30}}, {"u": {"url": "y"}, "a": None, "n": [1]}) == {
        "u": {"url": "y", "k": 30}, "n": [1]}


def _st(**kw: Any) -> State:
    base = dict(site="s", gateway="g", desired=None, sent=None, running_version=None, running_digest="",
                running_text="", running_at=None, agent="", last_version=None, last_status="", last_detail="",
                last_devices={}, last_problems=[], last_at=None, last_ts=None)
    return State(**{**base, **kw})


def _v(n: int, d: str) -> Version:
    return Version(site="s", gateway="g", version=n, text="", digest=d, created_at=0.0, created_by="w", comment="",
                   source="edit", parent=None, probe_s=20.0, confirm_s=30.0)


def test_drift() -> None:
    assert drift_of(None, None)[0] == "unmanaged"
    assert drift_of(_v(2, "b"), _st(running_version=0, running_digest="a"))[0] == "pending"
    assert drift_of(_v(2, "b"), _st(running_version=2, running_digest="b"))[0:3:2] == ("in_sync", "v2")
    st = _st(running_version=1, running_digest="a", last_version=2, last_status="rolled_back", last_detail="spk1")
    assert drift_of(_v(2, "b"), st)[0:2] == ("rolled_back", "v2 rolled back: spk1")
    assert drift_of(_v(2, "b"), _st(running_version=0, running_digest="c", last_version=2, last_status="applied")
                    )[0] == "drift", "edited on site after v2"
    assert drift_of(None, _st(running_version=0, running_digest="a"), _v(1, "a"))[2] == "local (same as v1)"


def test_an_interlock_with_no_bus_for_a_moment_is_tried_again(tmp_path: Path) -> None:
    """While a bus is rebuilt for a new config its devices may have no scheduler for an instant; an
    interlock tripping then must not stay pending forever (it would never act again)."""
    import asyncio

    from edge_agent.agent import Agent

    cfg, profiles, _ = parse_config(change(BASE, lambda d: (d.update(state_dir=str(tmp_path)),
                                                            d["uplink"].pop("password"))), "t", Path("."), catalog())

    async def go() -> set[Any]:
        agent = Agent(cfg, {k: catalog()[k] for k in profiles})
        agent.loop = asyncio.get_running_loop()
        try:
            agent.on_values("chg1", {"port.3.connector_temp": 80.0}, PollClass.SAFETY)  # no buses built yet
            return set(agent.devices["chg1"].interlocks.pending)
        finally:
            agent.outbox.close()

    assert asyncio.run(go()) == set()
