"""People's alarm actions over the authenticated API (docs/alarms.md): resolve, silence, inspection
windows, people and escalation, notification attempts — with roles, other estates answering 404,
and no channel secret in any answer. A real alarm engine on SQLite, real apprise sends to a local
HTTP receiver, the app as `cloud serve` builds it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cloud.notify.dispatch import AppriseSender
from cloud.safety import SafetyMessage
from device_profiles import wire
from tests.fixtures.receivers import HttpReceiver
from tests.fixtures.servers import free_port
from tests.fixtures.web import WebEnv, make_web_env
from tests.polling import wait_until

pytestmark = pytest.mark.integration

# Pieces of channel URLs that must never leave the server.
SECRETS = ["Tok3n-volunteer-77", "bob-user", "Pa55w0rd-xyz", "hook-tok-abcdef", "BOTKEY-4242", "DDSECRET-1",
           "DDTOKEN-2"]


@pytest.fixture(scope="module")
def rec(http_receiver_module: HttpReceiver) -> HttpReceiver:
    return http_receiver_module


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, rec: HttpReceiver) -> Iterator[WebEnv]:
    dead = free_port()  # nothing listens: every send there fails, and is logged
    people = [
        {"id": "li", "name": "Li Wei", "tier": 1,
         "channels": [{"url": f"json://127.0.0.1:{rec.port}/push/Tok3n-volunteer-77", "name": "app"}]},
        {"id": "bob", "name": "Bob", "tier": 1, "channels": [
            {"url": f"json://bob-user:Pa55w0rd-xyz@127.0.0.1:{dead}/hook-tok-abcdef"},
            {"url": f"json://127.0.0.1:{rec.port}/push/bob"}]},
        {"id": "wang", "name": "Wang", "role": "manager", "tier": 2, "channels": [
            {"url": "wecombot://BOTKEY-4242"}, {"url": "dingtalk://DDSECRET-1@DDTOKEN-2/"}]},
    ]
    settings = {"estate-a": {"people": people, "escalation": {
        "tiers": [{"tier": 1, "after": 0}, {"tier": 2, "after": 3600}], "retries": 0, "retry_delay": 0}}}
    e = make_web_env(tmp_path_factory.mktemp("alarmapi"), alarm_settings=settings, sender=AppriseSender(), poll_ms=1000)
    yield e
    e.close()


@pytest.fixture(scope="module")
def client(env: WebEnv) -> TestClient:
    return TestClient(env.app)


def put(env: WebEnv, site: str, gw: str, dev: str, payload: Any) -> None:
    kind = wire.Kind.EVENT if isinstance(payload, wire.Event) else wire.Kind.TELEMETRY
    env.engine.put(SafetyMessage(site, gw, dev, kind, payload, time.time()))
    env.engine.drain(5)


def interlock(env: WebEnv, trip: str) -> Any:
    ev = wire.Event(ts=wire.now(), seq=int(time.time() * 1000), id=wire.new_id(), kind="interlock",
                    point="port.3.connector_temp", value=76.0, text="port_enable on port.3 switched off",
                    data={"command": "port_enable", "ok": True, "trip": trip})
    put(env, "estate-a", "gw-a1", "chg1", ev)
    return wait_until(lambda: next((a for a in env.engine.store.list_alarms(site="estate-a", active=True)
                                    if a.rule == "interlock"), None), 10, "interlock alarm")


def wakes(push: Any, word: str) -> bool:
    """An alarm push about `word` (not the all-clear of an earlier alarm)."""
    return word in push.body["title"] and "RESOLVED" not in push.body["title"]


def no_secrets(*answers: Any) -> None:
    text = json.dumps(answers)
    leaked = [s for s in SECRETS if s in text]
    assert not leaked, f"channel secrets in an API answer: {leaked}"


def test_resolve_an_interlock_alarm_with_roles(env: WebEnv, client: TestClient) -> None:
    a = interlock(env, "trip-resolve")
    h = env.token_headers
    assert client.post(f"/api/v1/alarms/{a.id}/resolve", headers=h("inst-a")).status_code == 403
    assert client.post(f"/api/v1/alarms/{a.id}/resolve", headers=h("res-a")).status_code == 403
    assert client.post(f"/api/v1/alarms/{a.id}/resolve", headers=h("vol-b")).status_code == 404
    listed = client.get("/api/v1/alarms?active=true", headers=h("vol-a")).json()
    mine = next(x for x in listed if x["id"] == a.id)
    assert mine["kind"] == "event" and mine["detail"]["edge_action"].startswith("port_enable")
    r = client.post(f"/api/v1/alarms/{a.id}/resolve", json={"note": "bike removed"}, headers=h("vol-a"))
    assert r.status_code == 200 and r.json() == {"alarm": a.id, "resolved": True, "by": "vol-a"}
    got = env.engine.store.get(a.id)
    assert not got.active and got.resolved_by == "vol-a"
    last = env.engine.store.audit_of(a.id)[-1]
    assert (last["action"], last["who"], last["channel"]) == ("resolved", "vol-a", "api")
    assert got.acked and got.acked_by == "vol-a", "resolving acknowledges an alarm nobody had acknowledged"
    assert last["detail"] == "bike removed"
    assert client.post(f"/api/v1/alarms/{a.id}/resolve", headers=h("vol-a")).status_code == 409
    assert client.get(f"/api/v1/alarms/{a.id}", headers=h("vol-a")).json()["resolved_by"] == "vol-a"


def test_silence_needs_a_manager_a_reason_and_a_near_future(env: WebEnv, client: TestClient) -> None:
    a = interlock(env, "trip-silence")
    h, now = env.token_headers, datetime.now(UTC)
    body = {"reason": "electrician on site", "until": (now + timedelta(hours=2)).isoformat()}
    assert client.post(f"/api/v1/alarms/{a.id}/silence", json=body, headers=h("vol-a")).status_code == 403
    for bad in (now - timedelta(seconds=1), now + timedelta(days=8)):
        r = client.post(f"/api/v1/alarms/{a.id}/silence", json={**body, "until": bad.isoformat()}, headers=h("mgr-a"))
        assert r.status_code == 422, r.text
    naive = {**body, "until": (now + timedelta(hours=1)).replace(tzinfo=None).isoformat()}
    assert client.post(f"/api/v1/alarms/{a.id}/silence", json=naive, headers=h("mgr-a")).status_code == 422
    r = client.post(f"/api/v1/alarms/{a.id}/silence", json=body, headers=h("mgr-a"))
    assert r.status_code == 200 and r.json()["by"] == "mgr-a"
    got = next(x for x in client.get("/api/v1/alarms", headers=h("vol-a")).json() if x["id"] == a.id)
    assert got["silence_reason"] == "electrician on site" and got["silenced_until"] > time.time() + 3600
    assert client.post(f"/api/v1/alarms/{a.id}/resolve", headers=h("mgr-a")).status_code == 200


def test_inspection_window_suppresses_sprinkler_pushes_and_ending_it_wakes_people(
        env: WebEnv, client: TestClient, rec: HttpReceiver) -> None:
    h, now = env.token_headers, datetime.now(UTC)
    body = {"site": "estate-a", "start": now.isoformat(), "end": (now + timedelta(hours=1)).isoformat(),
            "reason": "NFPA 25 flow test"}
    assert client.post("/api/v1/inspection-windows", json=body, headers=h("vol-a")).status_code == 403
    assert client.post("/api/v1/inspection-windows", json=body, headers=h("mgr-b")).status_code == 404
    too_long = {**body, "end": (now + timedelta(hours=25)).isoformat()}
    assert client.post("/api/v1/inspection-windows", json=too_long, headers=h("mgr-a")).status_code == 422
    r = client.post("/api/v1/inspection-windows", json=body, headers=h("mgr-a"))
    assert r.status_code == 201, r.text
    w = r.json()
    assert w["open"] and w["by"] == "mgr-a" and w["source"] == "api" and w["id"] >= 1
    for who in ("vol-a", "inst-a", "mgr-a"):
        assert [x["id"] for x in client.get("/api/v1/inspection-windows", headers=h(who)).json()] == [w["id"]]
    assert client.get("/api/v1/inspection-windows", headers=h("mgr-b")).json() == []
    assert client.get("/api/v1/inspection-windows", headers=h("res-a")).status_code == 403
    assert client.post(f"/api/v1/inspection-windows/{w['id']}/end", headers=h("mgr-b")).status_code == 404

    # The seeded waterflow alarm is active: clear it, then the flow test trips the switch again.
    put(env, "estate-a", "gw-a1", "spk1", wire.Telemetry(ts=wire.now(), seq=10, values={"waterflow": False}))
    before = len(rec.got)
    put(env, "estate-a", "gw-a1", "spk1", wire.Telemetry(ts=wire.now(), seq=11, values={"waterflow": True}))
    alarm = wait_until(lambda: next((x for x in client.get("/api/v1/alarms?active=true", headers=h("vol-a")).json()
                                     if x["rule"] == "waterflow"), None), 10, "waterflow alarm")
    assert alarm["suppressed"] == "inspection window: NFPA 25 flow test"
    time.sleep(0.5)
    assert not [g for g in rec.got[before:] if wakes(g, "水流")], "nobody woken during the window"
    ended = client.post(f"/api/v1/inspection-windows/{w['id']}/end", headers=h("mgr-a"))
    assert ended.status_code == 200 and not ended.json()["open"]
    rec.wait_for(lambda g: any(wakes(x, "水流") for x in g[before:]))  # still flowing: pushed now
    audit = [e["action"] for e in client.get(f"/api/v1/alarms/{alarm['id']}", headers=h("vol-a")).json()["audit"]]
    assert audit == ["raised", "not-notified", "window-ended"]


def test_people_escalation_and_attempts_are_scoped_and_redacted(env: WebEnv, client: TestClient,
                                                                rec: HttpReceiver) -> None:
    h = env.token_headers
    a = interlock(env, "trip-people")
    rec.wait_for(lambda g: any(x.path == "/push/bob" and "Edge cut power" in x.body["title"] for x in g))
    detail = wait_until(lambda: (lambda d: d if len(d["notifications"]) >= 3 else None)(
        client.get(f"/api/v1/alarms/{a.id}", headers=h("vol-a")).json()), 10, "three attempts logged")
    by = {(n["person"], n["ok"]) for n in detail["notifications"]}
    assert {("li", True), ("bob", False), ("bob", True)} <= by, detail["notifications"]
    assert all(n["channel"].startswith("json://127.0.0.1") for n in detail["notifications"])
    people = client.get("/api/v1/people", headers=h("mgr-a")).json()
    assert [p["id"] for p in people] == ["li", "bob", "wang"] and {p["site"] for p in people} == {"estate-a"}
    assert [c["url"] for c in people[2]["channels"]] == ["wecombot://***", "dingtalk://***"]
    assert client.get("/api/v1/people", headers=h("mgr-b")).json() == []
    assert client.get("/api/v1/people?site=estate-a", headers=h("mgr-b")).status_code == 404
    for who in ("vol-a", "inst-a", "res-a"):
        assert client.get("/api/v1/people", headers=h(who)).status_code == 403
        assert client.get("/api/v1/escalation", headers=h(who)).status_code == 403
    esc = client.get("/api/v1/escalation?site=estate-a", headers=h("mgr-a")).json()
    assert esc[0]["site"] == "estate-a" and [t["after"] for t in esc[0]["tiers"]] == [0, 3600]
    no_secrets(people, esc, detail, client.get("/api/v1/alarms", headers=h("mgr-a")).json(),
               client.get("/api/v1/inspection-windows", headers=h("mgr-a")).json(),
               env.app.openapi())
    assert client.post(f"/api/v1/alarms/{a.id}/resolve", headers=h("mgr-a")).status_code == 200


def test_cookie_sessions_need_the_csrf_token_for_alarm_actions(env: WebEnv, tmp_path: Path) -> None:
    from tests.integration.test_web_security import _login

    a = interlock(env, "trip-csrf")
    c = TestClient(env.app)
    assert _login(c, "mgr-a") == 303
    now = datetime.now(UTC)
    assert c.post(f"/api/v1/alarms/{a.id}/resolve").status_code == 403
    assert c.post(f"/alarms/{a.id}/resolve", data={"note": "x"}).status_code == 403
    assert c.post("/api/v1/inspection-windows", json={"site": "estate-a", "start": now.isoformat(),
                                                      "end": (now + timedelta(hours=1)).isoformat()}).status_code == 403
    assert env.engine.store.get(a.id).active
    page = c.get("/alarms").text
    assert f'id="resolve-{a.id}"' in page
    csrf = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    r = c.post(f"/alarms/{a.id}/resolve", data={"csrf": csrf, "note": "checked"}, follow_redirects=False)
    assert r.status_code == 303
    got = env.engine.store.get(a.id)
    assert not got.active and got.resolved_by == "mgr-a" and env.engine.store.audit_of(a.id)[-1]["channel"] == "web"


def test_volunteer_resolves_an_interlock_from_the_alarm_page(env: WebEnv, phone: Any) -> None:
    """Headless Chromium on a phone-sized page: the interlock alarm shows what the edge did and a
    Resolve button (with a note); the live list keeps the note while it is typed."""
    from tests.fixtures.web import login, screenshot, serve

    a = interlock(env, "trip-page")
    with serve(env.app) as base:
        login(phone, base, "vol-a")
        phone.goto(f"{base}/alarms?site=estate-a")
        item = phone.locator(f"#alarm-{a.id}")
        assert "port_enable on port.3 switched off" in item.locator(".edge").inner_text()
        phone.fill(f"#note-{a.id}", "bike taken out, port left off")
        time.sleep(2.5)  # longer than the live refresh: the typed note must survive it
        assert phone.input_value(f"#note-{a.id}") == "bike taken out, port left off"
        screenshot(phone, "alarms-interlock-resolve")
        phone.click(f"#resolve-{a.id}")
        phone.wait_for_load_state("domcontentloaded")
        phone.locator(f"#alarm-{a.id}").wait_for(state="detached")
        assert "resolved by vol-a" in phone.locator(f"#hist-{a.id}").inner_text()
    got = env.engine.store.get(a.id)
    assert not got.active and got.resolved_by == "vol-a"
    last = env.engine.store.audit_of(a.id)[-1]
    assert (last["action"], last["channel"], last["detail"]) == ("resolved", "web", "bike taken out, port left off")
