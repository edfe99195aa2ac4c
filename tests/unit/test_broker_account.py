"""The cloud's broker account comes from the environment, never from a URL, and never shows."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cloud.broker_account import BrokerAccount, BrokerAccountError, check_address, from_env, redact


def test_account_from_a_password_file(tmp_path: Path) -> None:
    f = tmp_path / "pw"
    f.write_text("s3cret\n")
    a = from_env(env={"SHELTERWATCH_BROKER_USER": "cloud", "SHELTERWATCH_BROKER_PASSWORD_FILE": str(f)})
    assert a == BrokerAccount("cloud", "s3cret")
    assert "s3cret" not in repr(a) and "s3cret" not in str(a)
    assert from_env("other", env={"SHELTERWATCH_BROKER_PASSWORD": "x"}).username == "other"
    assert not from_env(env={})


def test_account_mistakes_are_explained(tmp_path: Path) -> None:
    with pytest.raises(BrokerAccountError, match="SHELTERWATCH_BROKER_USER"):
        from_env(env={"SHELTERWATCH_BROKER_PASSWORD": "x"})
    with pytest.raises(BrokerAccountError, match="cannot read"):
        from_env(env={"SHELTERWATCH_BROKER_USER": "u", "SHELTERWATCH_BROKER_PASSWORD_FILE": str(tmp_path / "no")})


def test_a_url_holds_an_address_only() -> None:
    assert check_address("mqtt://broker:1883") == "mqtt://broker:1883"
    with pytest.raises(BrokerAccountError) as e:
        check_address("mqtt://cloud:s3cret@broker:1883")
    assert "s3cret" not in str(e.value) and "SHELTERWATCH_BROKER_PASSWORD_FILE" in str(e.value)
    assert redact("mqtt://cloud:s3cret@broker:1883") == "mqtt://cloud:***@broker:1883"
    assert redact("mqtt://broker:1883") == "mqtt://broker:1883"


@pytest.mark.parametrize("command", ["serve", "ingest"])
def test_cloud_commands_refuse_credentials_in_the_broker_url(command: str, tmp_path: Path) -> None:
    from cloud.cli import app

    args = [command, "--broker", "mqtt://cloud:s3cret@127.0.0.1:1"]
    if command == "serve":
        args += ["--site", str(tmp_path / "s.yaml"), "--alarms", str(tmp_path / "a.yaml")]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 2
    assert "SHELTERWATCH_BROKER_USER" in r.output and "s3cret" not in r.output
