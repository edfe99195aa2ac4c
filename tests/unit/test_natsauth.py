"""NATS accounts (cloud/cluster/natsauth.py, natsusers.py, `cloud nats-config` / `cloud nats-users`):
the permissions are the mosquitto ACL's topics as the server checks them, the file holds hashes only.
The real server's behaviour is tested in tests/integration/test_nats_auth.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cloud import enrol
from cloud.cluster import natsauth
from cloud.cluster.natsconf import NodeConfig, render
from cloud.cluster.partition import partition_of
from cloud.enrol import DeviceSpec


def test_gateway_permissions_are_its_acl_topics_publish_subjects_after_the_partition_mapping() -> None:
    n = partition_of("estate-a", "gw-1", 16)
    p = natsauth.gateway_permissions("estate-a", "gw-1", 16)
    # written by hand from docs/web.md's ACL block and docs/operations.md's mapping
    assert set(p.publish) == {
        f"swp.{n}.sw.v1.estate-a.gw-1.status", f"swp.{n}.sw.v1.estate-a.gw-1.*.event",
        f"swp.{n}.sw.v1.estate-a.gw-1.*.health", f"swp.{n}.sw.v1.estate-a.gw-1.*.telemetry",
        f"swp.{n}.sw.v1.estate-a.gw-1.*.urgent",
        f"swp.{n}.sw.v1.estate-a.gw-1.health", f"swp.{n}.sw.v1.estate-a.gw-1.*.cmd-result",
        f"swp.{n}.sw.v1.estate-a.gw-1.config-result", f"swp.{n}.sw.v1.estate-a.gw-1.config-running"}
    assert set(p.subscribe) == {"sw.v1.estate-a.gw-1.*.cmd", "sw.v1.estate-a.gw-1.config",
                                "sw.v1.estate-a.gw-1.config-confirm", "sw.v1.estate-a.gw-1.limits", "sw.v1.time"}
    writes, reads = enrol.gateway_topics("estate-a", "gw-1")
    assert len(writes) == len(p.publish) and len(reads) == len(p.subscribe)


def test_the_file_holds_bcrypt_hashes_never_a_password() -> None:
    e = enrol.enrol("estate-a", "gw-1", [DeviceSpec("chg1", "voltpile-cp10")], "nats://n1:4222")
    assert e.nats_hash.startswith("$2a$") and natsauth.check_bcrypt(e.nats_hash, e.password)
    text = natsauth.render_authorization([natsauth.gateway_user("estate-a", "gw-1", e.nats_hash),
                                          natsauth.cloud_user("cloud", natsauth.bcrypt_hash("cloud-pw", 4))])
    assert e.password not in text and "cloud-pw" not in text
    assert '"allowed_connection_types": ' not in text and 'allowed_connection_types: ["MQTT"]' in text
    with pytest.raises(ValueError, match="bcrypt"):
        natsauth.render_user(natsauth.gateway_user("estate-a", "gw-1", "plain-text"))
    assert "password" not in repr(natsauth.gateway_user("estate-a", "gw-1", e.nats_hash))
    assert e.nats_hash not in repr(e)


def test_node_config_includes_the_accounts_file_relative_to_itself() -> None:
    cfg = NodeConfig(name="n1", store_dir="/var/lib/nats", routes=["nats://h1:6222"], users_file="sw-users.conf")
    assert 'include "sw-users.conf"' in render(cfg)
    assert "include" not in render(NodeConfig(name="n1", store_dir="/x"))
    with pytest.raises(ValueError, match="relative"):
        render(NodeConfig(name="n1", store_dir="/x", users_file="/etc/nats/sw-users.conf"))


def test_cli_writes_the_accounts_of_web_enrolments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Enrol as the API does (`enrol_and_store`: registry, web database), then `cloud nats-users` writes
    the file from the web database; the cloud's password comes from the environment and is hashed;
    without the cloud's account nothing is written."""
    from types import SimpleNamespace

    from cloud.api.enrolment import enrol_and_store
    from cloud.api.estate import RegistrySource
    from cloud.api.settings import WebSettings
    from cloud.auth.models import make_engine, make_sessionmaker
    from cloud.state.registry import Registry
    from shelterwatch.cli import app
    from tests.fixtures.web import two_estates

    reg = Registry(f"sqlite:///{tmp_path}/state.db")
    for site in two_estates():
        reg.register_site(site)
    db = f"sqlite:///{tmp_path / 'web.db'}"
    web = SimpleNamespace(state=SimpleNamespace(estate=RegistrySource(reg), settings=WebSettings(),
                                                db=make_sessionmaker(make_engine(db))))
    e = enrol_and_store(web, "estate-a", "gw-x", "", [DeviceSpec("chgx", "voltpile-cp10")], "inst-a")
    reg.close()
    out = tmp_path / "users.conf"
    monkeypatch.delenv("SHELTERWATCH_BROKER_PASSWORD", raising=False)
    monkeypatch.delenv("SHELTERWATCH_BROKER_PASSWORD_FILE", raising=False)
    r2 = CliRunner().invoke(app, ["cloud", "nats-users", "--web-db", db, "--out", str(out)])
    assert r2.exit_code == 2 and "account" in r2.output and not out.exists()
    monkeypatch.setenv("SHELTERWATCH_BROKER_USER", "cloud")
    monkeypatch.setenv("SHELTERWATCH_BROKER_PASSWORD", "cloud-secret-4711")
    r3 = CliRunner().invoke(app, ["cloud", "nats-users", "--web-db", db, "--out", str(out)])
    assert r3.exit_code == 0, r3.output
    text = out.read_text()
    assert '"gw.estate-a.gw-x"' in text and '"cloud"' in text and e.nats_hash in text
    assert e.password not in text and "cloud-secret-4711" not in text
    assert oct(out.stat().st_mode & 0o777) == "0o640"
