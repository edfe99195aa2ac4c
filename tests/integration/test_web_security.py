"""Security of the API and pages: anonymous, wrong role, other estate, CSRF, login throttling.

The permission table below is checked against the app's routes, so a new route cannot be added
without deciding who may call it.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cloud.auth.roles import POLICY, Perm, Role
from tests.fixtures.web import USERS, make_web_env, password_of

pytestmark = pytest.mark.integration

PUBLIC = "public"
_NOW = datetime.now(UTC)
# (method, path) → permission. Paths use the app's templates.
TABLE: dict[tuple[str, str], Perm | str] = {
    ("GET", "/api/v1/me"): Perm.VIEW_PARKING,
    ("GET", "/api/v1/sites"): Perm.VIEW_PARKING,
    ("GET", "/api/v1/sites/{site}/gateways"): Perm.VIEW_ESTATE,
    ("GET", "/api/v1/sites/{site}/devices"): Perm.VIEW_ESTATE,
    ("GET", "/api/v1/sites/{site}/ports"): Perm.VIEW_ESTATE,
    ("GET", "/api/v1/sites/{site}/parking"): PUBLIC,
    ("GET", "/api/v1/sites/{site}/health"): Perm.VIEW_HEALTH,
    ("GET", "/api/v1/alarms"): Perm.VIEW_ALARMS,
    ("GET", "/api/v1/alarms/{alarm_id}"): Perm.VIEW_ALARMS,
    ("POST", "/api/v1/alarms/{alarm_id}/ack"): Perm.ACK_ALARMS,
    ("POST", "/api/v1/alarms/{alarm_id}/resolve"): Perm.RESOLVE_ALARMS,
    ("POST", "/api/v1/alarms/{alarm_id}/silence"): Perm.SILENCE_ALARMS,
    ("GET", "/api/v1/inspection-windows"): Perm.VIEW_WINDOWS,
    ("POST", "/api/v1/inspection-windows"): Perm.MANAGE_WINDOWS,
    ("POST", "/api/v1/inspection-windows/{window_id}/end"): Perm.MANAGE_WINDOWS,
    ("GET", "/api/v1/people"): Perm.VIEW_PEOPLE,
    ("GET", "/api/v1/escalation"): Perm.VIEW_PEOPLE,
    ("POST", "/api/v1/sites/{site}/gateways/{gateway}/devices/{device}/commands"): Perm.COMMAND,
    ("GET", "/api/v1/sites/{site}/commands"): Perm.COMMAND,
    ("GET", "/api/v1/commands/{command_id}"): Perm.COMMAND,
    ("POST", "/api/v1/sites/{site}/gateways"): Perm.ENROL,
    ("POST", "/api/v1/sites/{site}/gateways/{gateway}/password"): Perm.ENROL,
    ("GET", "/api/v1/sites/{site}/mosquitto/passwd"): Perm.ENROL,
    ("GET", "/api/v1/sites/{site}/mosquitto/acl"): Perm.ENROL,
    ("GET", "/api/v1/sites/{site}/configs"): Perm.CONFIGURE,
    ("GET", "/api/v1/sites/{site}/gateways/{gateway}/config"): Perm.CONFIGURE,
    ("PUT", "/api/v1/sites/{site}/gateways/{gateway}/config"): Perm.CONFIGURE,
    ("POST", "/api/v1/sites/{site}/gateways/{gateway}/config/check"): Perm.CONFIGURE,
    ("POST", "/api/v1/sites/{site}/gateways/{gateway}/config/rollback"): Perm.CONFIGURE,
    ("GET", "/api/v1/sites/{site}/gateways/{gateway}/config/versions"): Perm.CONFIGURE,
    ("GET", "/api/v1/sites/{site}/gateways/{gateway}/config/versions/{version}"): Perm.CONFIGURE,
    ("GET", "/api/v1/sites/{site}/gateways/{gateway}/config/diff"): Perm.CONFIGURE,
    ("GET", "/api/v1/sites/{site}/gateways/{gateway}/config/history"): Perm.CONFIGURE,
    ("POST", "/api/v1/sites/{site}/config-rollouts"): Perm.CONFIGURE,
    ("GET", "/api/v1/sites/{site}/config-rollouts"): Perm.CONFIGURE,
    ("GET", "/api/v1/sites/{site}/config-rollouts/{rollout_id}"): Perm.CONFIGURE,
}
BODIES = {
    "/api/v1/sites/{site}/gateways/{gateway}/devices/{device}/commands": {"command": "port_enable", "index": 1,
                                                                          "value": False},
    "/api/v1/sites/{site}/gateways": {"gateway": "gw-new", "devices": [{"id": "newdev", "profile": "voltpile-cp10"}]},
    "/api/v1/alarms/{alarm_id}/silence": {"reason": "test", "until": (_NOW + timedelta(hours=1)).isoformat()},
    "/api/v1/inspection-windows": {"site": "estate-a", "start": (_NOW + timedelta(days=1)).isoformat(),
                                   "end": (_NOW + timedelta(days=1, hours=1)).isoformat()},
    "/api/v1/sites/{site}/gateways/{gateway}/config": {"yaml": "site: estate-a\n"},
    "/api/v1/sites/{site}/gateways/{gateway}/config/check": {"yaml": "site: estate-a\n"},
    "/api/v1/sites/{site}/gateways/{gateway}/config/rollback": {"version": 1},
    "/api/v1/sites/{site}/config-rollouts": {"gateways": ["gw-a1"], "patch": "snapshot_s: 120"},
}


def fill(path: str, site: str) -> str:
    gw = {"estate-a": "gw-a1", "estate-b": "gw-b1"}[site]
    dev = {"estate-a": "chg1", "estate-b": "chg9"}[site]
    # Resolving estate-a's alarm here would change what later tests see: the role check comes
    # first (403), a permitted role then gets 404 for an alarm that does not exist.
    alarm = "999999" if path.endswith("/resolve") else "1"
    return (path.replace("{site}", site).replace("{gateway}", gw).replace("{device}", dev)
            .replace("{alarm_id}", alarm).replace("{command_id}", "0123456789abcdef").replace("{window_id}", "1")
            .replace("{version}", "1").replace("{rollout_id}", "1"))


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    e = make_web_env(tmp_path_factory.mktemp("websec"))
    assert e.alarm_ids["estate-a"] == 1, "TABLE's {alarm_id} is estate-a's alarm"
    yield e
    e.close()


@pytest.fixture(scope="module")
def client(env) -> TestClient:  # type: ignore[no-untyped-def]
    return TestClient(env.app)


def call(client: TestClient, method: str, path: str, headers: dict[str, str] | None = None) -> int:
    body = BODIES.get(path)
    return client.request(method, fill(path, "estate-a"), json=body, headers=headers or {}).status_code


def test_table_covers_every_api_route(env) -> None:  # type: ignore[no-untyped-def]
    paths = env.app.openapi()["paths"]
    routes = {(m.upper(), path) for path, ops in paths.items() if path.startswith("/api/") for m in ops}
    assert routes == set(TABLE)


@pytest.mark.parametrize(("method", "path"), sorted(TABLE))
def test_anonymous_is_refused(client: TestClient, method: str, path: str) -> None:
    code = call(client, method, path)
    if TABLE[(method, path)] == PUBLIC:
        assert code == 200
    else:
        assert code == 401


@pytest.mark.parametrize("user", sorted(USERS))
@pytest.mark.parametrize(("method", "path"), sorted(TABLE))
def test_roles(env, client: TestClient, user: str, method: str, path: str) -> None:  # type: ignore[no-untyped-def]
    role, sites = USERS[user]
    perm = TABLE[(method, path)]
    code = call(client, method, path, env.token_headers(user))
    allowed = perm == PUBLIC or perm in POLICY[Role(role)]
    if not allowed:
        assert code == 403
    elif "{site}" in path and "estate-a" not in sites:
        assert code == 404, "another estate's site answers like a site that does not exist"
    else:
        assert code not in (401, 403)


@pytest.mark.parametrize("path", ["/api/v1/sites/estate-b/ports", "/api/v1/sites/estate-b/devices",
                                  "/api/v1/sites/estate-b/gateways", "/api/v1/sites/nowhere/ports"])
def test_cross_estate_reads_refused(env, client: TestClient, path: str) -> None:  # type: ignore[no-untyped-def]
    assert client.get(path, headers=env.token_headers("mgr-a")).status_code == 404
    assert client.get(path.replace("estate-b", "estate-a").replace("nowhere", "estate-a"),
                      headers=env.token_headers("mgr-a")).status_code == 200


def test_sites_list_is_scoped(env, client: TestClient) -> None:  # type: ignore[no-untyped-def]
    assert [s["id"] for s in client.get("/api/v1/sites", headers=env.token_headers("vol-b")).json()] == ["estate-b"]
    assert [s["id"] for s in client.get("/api/v1/sites", headers=env.token_headers("res-a")).json()] == ["estate-a"]


def test_cross_estate_command_and_enrol_refused(env, client: TestClient) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/api/v1/sites/estate-b/gateways/gw-b1/devices/chg9/commands",
                    json={"command": "main_cut"}, headers=env.token_headers("mgr-a"))
    assert r.status_code == 404
    r = client.post("/api/v1/sites/estate-b/gateways", json=BODIES["/api/v1/sites/{site}/gateways"],
                    headers=env.token_headers("mgr-a"))
    assert r.status_code == 404


def test_alarms_of_another_estate_cannot_be_seen_or_acknowledged(env, client: TestClient) -> None:  # type: ignore[no-untyped-def]
    a, b = env.alarm_ids["estate-a"], env.alarm_ids["estate-b"]
    listed = client.get("/api/v1/alarms", headers=env.token_headers("vol-a")).json()
    assert {x["site"] for x in listed} == {"estate-a"} and a in {x["id"] for x in listed}
    assert client.get("/api/v1/alarms?site=estate-b", headers=env.token_headers("vol-a")).status_code == 404
    assert client.get(f"/api/v1/alarms/{b}", headers=env.token_headers("vol-a")).status_code == 404
    assert client.post(f"/api/v1/alarms/{b}/ack", headers=env.token_headers("vol-a")).status_code == 404
    assert not env.engine.store.get(b).acked
    r = client.post(f"/api/v1/alarms/{b}/ack", headers=env.token_headers("vol-b"))
    assert r.status_code == 200 and r.json() == {"alarm": b, "acknowledged": True, "by": "vol-b"}
    got = env.engine.store.get(b)
    assert got.acked and got.acked_by == "vol-b" and got.acked_via == "api", "who acked comes from the login"
    # The page form too: vol-a's session cannot ack estate-b's alarm.
    c = TestClient(env.app)
    assert _login(c, "vol-a") == 303
    csrf = re.search(r'name="csrf" value="([^"]+)"', c.get("/alarms").text)
    assert csrf
    assert c.post(f"/alarms/{b}/ack", data={"csrf": csrf.group(1)}).status_code == 404
    assert f'id="alarm-{a}"' in c.get("/frag/alarms").text and f'id="alarm-{b}"' not in c.get("/frag/alarms").text


def test_private_parking_needs_login(tmp_path: Path) -> None:
    env = make_web_env(tmp_path, public_parking=False, alarms=False)
    c = TestClient(env.app)
    assert c.get("/api/v1/sites/estate-a/parking").status_code == 401
    assert c.get("/api/v1/sites/estate-a/parking", headers=env.token_headers("res-a")).status_code == 200
    assert c.get("/api/v1/sites/estate-b/parking", headers=env.token_headers("res-a")).status_code == 404
    assert c.get("/parking/estate-a", follow_redirects=False).status_code == 303


def _login(c: TestClient, user: str, password: str | None = None) -> int:
    page = c.get("/login")
    token = re.search(r'name="login_csrf" value="([^"]+)"', page.text)
    assert token
    r = c.post("/login", data={"username": user, "password": password or password_of(user),
                               "login_csrf": token.group(1), "next": "/"}, follow_redirects=False)
    return r.status_code


def test_pages_anonymous_redirect_and_wrong_role_forbidden(env) -> None:  # type: ignore[no-untyped-def]
    anon = TestClient(env.app)
    for page in ("/alarms", "/estate", "/health", "/enrol", "/frag/alarms", "/frag/estate"):
        r = anon.get(page, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")
    assert anon.get("/parking/estate-a").status_code == 200

    res = TestClient(env.app)
    assert _login(res, "res-a") == 303
    for page in ("/alarms", "/estate", "/health", "/enrol", "/config", "/config/estate-a/gw-a1",
                 "/config/estate-a/gw-a1/diff?a=1", "/frag/config"):
        assert res.get(page).status_code == 403
    assert res.get("/parking/estate-a").status_code == 200
    assert res.get("/parking/estate-b").status_code == 404

    vol = TestClient(env.app)
    assert _login(vol, "vol-a") == 303
    assert vol.get("/estate").status_code == 200
    assert vol.get("/estate?site=estate-b").status_code == 404
    assert vol.get("/health").status_code == 403 and vol.get("/enrol").status_code == 403
    for page in ("/config", "/config/estate-a/gw-a1", "/frag/config/estate-a/gw-a1"):
        assert vol.get(page).status_code == 403, page
    for form in ("/config/estate-a/gw-a1", "/config/estate-a/gw-a1/rollback", "/config/estate-a/rollouts"):
        assert vol.post(form, data={"yaml": "x", "version": "1", "csrf": "x"}).status_code == 403, form
    r = vol.post("/commands", data={"site": "estate-a", "gateway": "gw-a1", "device": "chg1",
                                    "command": "main_cut", "csrf": "x"})
    assert r.status_code == 403


def test_forms_need_csrf(env) -> None:  # type: ignore[no-untyped-def]
    c = TestClient(env.app)
    assert _login(c, "inst-a") == 303
    form = {"site": "estate-a", "gateway": "gw-csrf", "devices": "dcsrf voltpile-cp10"}
    assert c.post("/enrol", data=form).status_code == 403
    assert c.post("/enrol", data={**form, "csrf": "wrong"}).status_code == 403
    # Cookie-authenticated JSON calls need the header too.
    assert c.post("/api/v1/sites/estate-a/gateways", json={"gateway": "gw-csrf", "devices": [
        {"id": "dcsrf", "profile": "voltpile-cp10"}]}).status_code == 403
    page = c.get("/enrol").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    assert csrf
    r = c.post("/enrol", data={**form, "csrf": csrf.group(1)})
    assert r.status_code == 200 and "gw.estate-a.gw-csrf" in r.text
    bad = c.post("/enrol", data={**form, "gateway": "gw-bad", "devices": "d9 no-such-profile", "csrf": csrf.group(1)})
    assert bad.status_code == 422 and "unknown profile" in bad.text and 'value="gw-bad"' in bad.text
    # The config forms and the cookie-authenticated config API too.
    assert c.post("/config/estate-a/gw-a1", data={"yaml": "site: estate-a"}).status_code == 403
    assert c.post("/config/estate-a/gw-a1/rollback", data={"version": "1", "csrf": "wrong"}).status_code == 403
    assert c.put("/api/v1/sites/estate-a/gateways/gw-a1/config", json={"yaml": "site: estate-a"}).status_code == 403
    r = c.post("/config/estate-a/gw-a1", data={"yaml": "site: estate-a\n", "csrf": csrf.group(1)})
    assert r.status_code == 422 and "required key is missing" in r.text, "checked, refused, shown"
    # Login itself is protected against login CSRF: no token from our login page, no session.
    other = TestClient(env.app)
    r = other.post("/login", data={"username": "inst-a", "password": password_of("inst-a")}, follow_redirects=False)
    assert r.status_code == 403


def test_logout_ends_the_session(env) -> None:  # type: ignore[no-untyped-def]
    c = TestClient(env.app)
    assert _login(c, "vol-a") == 303
    cookie = c.cookies.get("sw_session")
    csrf = re.search(r'name="csrf" value="([^"]+)"', c.get("/estate").text)
    assert csrf and cookie
    assert c.post("/logout", data={"csrf": csrf.group(1)}, follow_redirects=False).status_code == 303
    replay = TestClient(env.app, cookies={"sw_session": cookie})
    assert replay.get("/estate", follow_redirects=False).status_code == 303


def test_login_is_rate_limited(tmp_path: Path) -> None:
    env = make_web_env(tmp_path, login_max_failures=3, alarms=False)
    c = TestClient(env.app)
    for _ in range(3):
        assert _login(c, "vol-a", "wrong-password!") == 401
    assert _login(c, "vol-a") == 429, "even the right password waits once the limit is hit"
    assert _login(c, "mgr-a") == 303, "another user is not locked out by vol-a's failures"


def test_unknown_or_bad_token_refused(client: TestClient) -> None:
    for h in ({"Authorization": "Bearer swt_nope"}, {"Authorization": "Bearer "}, {"Authorization": "Basic eA=="}):
        assert client.get("/api/v1/me", headers=h).status_code == 401


def test_signed_ack_links_are_their_own_authorisation(env) -> None:  # type: ignore[no-untyped-def]
    """The push's one-tap link works without a login (that is its point); forged or odd ones do not."""
    import time

    anon = TestClient(env.app)
    a = env.alarm_ids["estate-a"]
    token = env.app.state.ack_signer.sign(a, "vol-a", time.time() + 60)
    assert anon.get(f"/ack/{token}").status_code == 200
    for bad in (token[:-2] + "xx", "0.%C2%80", "abc", "a.b.c"):
        assert anon.post(f"/ack/{bad}").status_code in (403, 404), bad
    r = anon.post(f"/ack/{token}")
    assert r.status_code == 200 and r.json()["by"] == "vol-a"


def test_pages_escape_what_users_typed(env) -> None:  # type: ignore[no-untyped-def]
    c = TestClient(env.app)
    r = c.post("/api/v1/sites/estate-a/gateways", headers=env.token_headers("inst-a"),
               json={"gateway": "gw-xss", "name": "<script>alert(1)</script>",
                     "devices": [{"id": "xss1", "profile": "voltpile-cp10"}]})
    assert r.status_code == 201
    assert _login(c, "mgr-a") == 303
    page = c.get("/estate").text
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
