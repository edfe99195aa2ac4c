"""Enrolment texts: password lines verified against the real mosquitto_passwd, ACL, edge config."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from cloud import enrol
from cloud.enrol import DeviceSpec, EnrolError


def test_our_password_line_verifies_and_matches_mosquitto_format(tmp_path: Path) -> None:
    line = enrol.passwd_line("gw.a.b", "s3cret-pass", salt=b"0123456789ab")
    assert line.startswith("gw.a.b:$7$1000$MDEyMzQ1Njc4OWFi$")
    assert enrol.check_passwd_line(line, "s3cret-pass")
    assert not enrol.check_passwd_line(line, "s3cret-pasS")
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        pytest.fail("mosquitto_passwd missing: run scripts/setup.sh --test")
    f = tmp_path / "pw"
    subprocess.run([tool, "-c", "-b", str(f), "gw.a.b", "s3cret-pass"], check=True)
    real = f.read_text().strip()
    assert enrol.check_passwd_line(real, "s3cret-pass"), "our checker reads the real tool's lines"
    assert real.split("$")[1] == line.split("$")[1] == "7"


def test_acl_block() -> None:
    # Written by hand from docs/web.md ("Enrolling a gateway"): exactly what a gateway sends, and
    # its own commands and config topics to read; never its own desired config to write.
    assert enrol.gateway_acl("estate-a", "gw1") == (
        "user gw.estate-a.gw1\n"
        "topic write sw/v1/estate-a/gw1/status\n"
        "topic write sw/v1/estate-a/gw1/+/event\n"
        "topic write sw/v1/estate-a/gw1/+/urgent\n"
        "topic write sw/v1/estate-a/gw1/+/health\n"
        "topic write sw/v1/estate-a/gw1/+/telemetry\n"
        "topic write sw/v1/estate-a/gw1/health\n"
        "topic write sw/v1/estate-a/gw1/+/cmd-result\n"
        "topic write sw/v1/estate-a/gw1/config-result\n"
        "topic write sw/v1/estate-a/gw1/config-running\n"
        "topic read sw/v1/estate-a/gw1/+/cmd\n"
        "topic read sw/v1/estate-a/gw1/config\n"
        "topic read sw/v1/estate-a/gw1/config-confirm\n"
        "topic read sw/v1/estate-a/gw1/limits\n"
        "topic read sw/v1/time\n")
    assert enrol.cloud_acl("cloud") == (
        "user cloud\ntopic read sw/v1/#\ntopic write sw/v1/+/+/+/cmd\n"
        "topic write sw/v1/+/+/config\ntopic write sw/v1/+/+/config-confirm\ntopic write sw/v1/+/+/limits\n"
        "topic write sw/v1/time\n")
    with pytest.raises(Exception, match="bad_id"):
        enrol.gateway_acl("estate-a", "gw/#")


def test_enrol_request_checks() -> None:
    with pytest.raises(EnrolError, match="at least one device"):
        enrol.enrol("a", "gw1", [], "mqtt://h:1883")
    with pytest.raises(EnrolError, match="unknown profile"):
        enrol.enrol("a", "gw1", [DeviceSpec("d1", "nope")], "mqtt://h:1883")
    with pytest.raises(EnrolError, match="twice"):
        enrol.enrol("a", "gw1", [DeviceSpec("d1", "voltpile-cp10"), DeviceSpec("d1", "parkhub-ph48")],
                    "mqtt://h:1883")
    with pytest.raises(EnrolError, match="must match"):
        enrol.enrol("a", "GW 1", [DeviceSpec("d1", "voltpile-cp10")], "mqtt://h:1883")


def test_edge_config_carries_credentials_and_devices() -> None:
    e = enrol.enrol("estate-a", "gw1", [DeviceSpec("chg1", "voltpile-cp10"), DeviceSpec("hub", "parkhub-ph48", 7),
                                        DeviceSpec("rx", "geomag-rx200")], "mqtt://broker:1883")
    doc = yaml.safe_load(e.edge_config)
    assert doc["site"] == "estate-a" and doc["gateway"] == "gw1"
    assert doc["uplink"] == {"url": "mqtt://broker:1883", "client_id": "estate-a:gw1",
                             "username": "gw.estate-a.gw1", "password": e.password}
    by_id = {d["id"]: d for d in doc["devices"]}
    assert by_id["hub"]["address"] == 7 and by_id["chg1"]["address"] == 1
    ports = [b["serial_port"] for b in doc["buses"] if "serial_port" in b]
    assert len(ports) == len(set(ports)), "every serial bus on its own port"
    assert enrol.check_passwd_line(e.passwd_line, e.password)
    assert e.password not in e.passwd_line


def test_parse_devices() -> None:
    assert enrol.parse_devices("chg1 voltpile-cp10\n# comment\n\nhub parkhub-ph48 3  # garage\n") == [
        DeviceSpec("chg1", "voltpile-cp10"), DeviceSpec("hub", "parkhub-ph48", 3)]
    with pytest.raises(EnrolError, match="line 1"):
        enrol.parse_devices("just-one-word")
    with pytest.raises(EnrolError, match=r"1\.\.247"):
        enrol.parse_devices("a b 999")


def test_edge_config_is_accepted_by_the_edge_agent(tmp_path: Path) -> None:
    """The downloaded starting config passes the agent's own validation (`edge-agent check`)."""
    from edge_agent.config import load_config

    e = enrol.enrol("estate-a", "gw1", [DeviceSpec("chg1", "voltpile-cp10"), DeviceSpec("chg2", "hengtong-ebc12"),
                                        DeviceSpec("hub", "parkhub-ph48"), DeviceSpec("rx", "geomag-rx200"),
                                        DeviceSpec("rx2", "geomag-rx200"), DeviceSpec("spk", "nanfang-fsm8")],
                    "mqtt://broker.example:1883")
    path = tmp_path / "edge.yaml"
    path.write_text(e.edge_config)
    cfg, profiles = load_config(path)
    assert cfg.uplink.username == e.mqtt_user and cfg.uplink.password == e.password
    assert {d.id for d in cfg.devices} == {"chg1", "chg2", "hub", "rx", "rx2", "spk"}
    assert set(profiles) == {"voltpile-cp10", "hengtong-ebc12", "parkhub-ph48", "geomag-rx200", "nanfang-fsm8"}


def test_the_clouds_credentials_never_reach_an_enrolled_config(tmp_path: Path) -> None:
    """A broker URL with the cloud's account in it (as `cloud serve --broker` once took) gives the
    gateway the address only, and the config passes `edge-agent check` as returned."""
    from typer.testing import CliRunner

    from edge_agent.cli import app

    e = enrol.enrol("estate-a", "gw1", [DeviceSpec("chg1", "voltpile-cp10")], "mqtt://cloud:topsecret@broker:1883")
    assert "topsecret" not in e.edge_config and "cloud" not in yaml.safe_load(e.edge_config)["uplink"]["url"]
    path = tmp_path / "edge.yaml"
    path.write_text(e.edge_config)
    r = CliRunner().invoke(app, ["check", str(path)])
    assert r.exit_code == 0, r.output
    assert "OK" in r.output
