"""`dashboards push` against a stand-in for Grafana's HTTP API (Grafana cannot be installed here)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from dashboards.build import build_all, to_json
from dashboards.push import FOLDER_UID, PushError, push
from shelterwatch.cli import app

pytestmark = pytest.mark.integration


def test_push_creates_folder_then_updates_in_place(grafana_standin) -> None:
    first = push(grafana_standin.url, grafana_standin.token)
    assert {p.uid for p in first} == {
        "sw-overview",
        "sw-chargers",
        "sw-parking",
        "sw-sprinklers",
        "sw-health",
    }
    assert all(p.version == 1 for p in first)
    second = push(grafana_standin.url, grafana_standin.token)
    assert all(p.version == 2 for p in second), "second push updates, not duplicates"
    assert grafana_standin.violations() == []

    reqs = grafana_standin.requests()
    folder_creates = [r for r in reqs if r["method"] == "POST" and r["path"] == "/api/folders"]
    assert len(folder_creates) == 1 and folder_creates[0]["body"]["uid"] == FOLDER_UID
    saves = [r["body"] for r in reqs if r["path"] == "/api/dashboards/db"]
    assert len(saves) == 10
    want = {name: json.loads(to_json(d)) for name, d in build_all().items()}
    by_uid = {w["uid"]: w for w in want.values()}
    for body in saves:
        assert body["folderUid"] == FOLDER_UID and body["overwrite"] is True
        sent = body["dashboard"]
        assert sent["id"] is None
        assert {k: v for k, v in sent.items() if k != "id"} == by_uid[sent["uid"]]


def test_wrong_token_is_a_clear_error(grafana_standin) -> None:
    with pytest.raises(PushError, match="401"):
        push(grafana_standin.url, "wrong-token")
    assert all(r.get("status") == 401 for r in grafana_standin.requests())


def test_cli_push_and_build_check(grafana_standin, tmp_path) -> None:
    r = CliRunner().invoke(
        app, ["dashboards", "push", "--url", grafana_standin.url, "--token", grafana_standin.token]
    )
    assert r.exit_code == 0, r.output
    assert "sw-overview" in r.output and "version 1" in r.output
    r = CliRunner().invoke(app, ["dashboards", "push", "--url", grafana_standin.url, "--token", "nope"])
    assert r.exit_code == 1
    r = CliRunner().invoke(app, ["dashboards", "build", "--out", str(tmp_path)])
    assert r.exit_code == 0 and len(list(tmp_path.glob("*.json"))) == 5
    (tmp_path / "parking.json").write_text("{}")
    r = CliRunner().invoke(app, ["dashboards", "build", "--check", "--out", str(tmp_path)])
    assert r.exit_code == 1 and "parking.json" in r.output
