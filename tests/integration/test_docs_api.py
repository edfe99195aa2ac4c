"""What the docs promise, against what a running `shelterwatch cloud serve` serves.

- The endpoint tables of docs/alarms.md and docs/web.md against the served OpenAPI, both ways
  (nothing documented is missing, nothing served is undocumented), and each row's "who" against
  the role policy (cloud/auth/roles.py, through the route → permission table of
  test_web_security).
- A site file carrying every alarm key docs/alarms.md lists (no separate alarm file): the keys take
  effect (the push's acknowledge link has the file's `public_url` and `ack_link_ttl`).
- An inspection window added over the API is kept across a restart of `cloud serve` and holds back
  the push of a sprinkler alarm; ending it wakes people.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest

from cloud.auth.roles import POLICY, Role
from device_profiles import wire
from tests.fixtures.receivers import HttpReceiver
from tests.fixtures.servers import free_port, wait_port
from tests.integration.test_web_security import PUBLIC, TABLE
from tests.polling import wait_until

pytestmark = pytest.mark.integration
ROOT = Path(__file__).parents[2]
DOCS = [ROOT / "docs" / "alarms.md", ROOT / "docs" / "web.md"]
SECRET = "d" * 40
ROW = re.compile(r"^\|\s*(GET|POST|PUT|PATCH|DELETE)\s*\|\s*`([^`]+)`\s*\|\s*([^|]+?)\s*\|")
LINK_WHO = "anyone with the link"


def documented() -> dict[tuple[str, str], tuple[str, str]]:
    """(method, path) → (who, file:line) from every `| method | path | who | … |` table."""
    out: dict[tuple[str, str], tuple[str, str]] = {}
    for doc in DOCS:
        in_table = False
        for n, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
            if re.match(r"^\|\s*method\s*\|\s*path\s*\|\s*who\s*\|", line):
                in_table = True
                continue
            if not line.startswith("|"):
                in_table = False
            m = ROW.match(line) if in_table else None
            if m:
                key = (m.group(1), m.group(2).split("?", 1)[0])
                assert key not in out, f"{doc.name}:{n} documents {key} twice (also {out[key][1]})"
                out[key] = (m.group(3), f"{doc.name}:{n}")
    return out


def test_the_docs_tables_parse() -> None:
    rows = documented()
    assert ("POST", "/api/v1/inspection-windows") in rows and ("GET", "/api/v1/me") in rows
    assert len(rows) >= 20


@dataclass
class Serve:
    """`shelterwatch cloud serve` as its own process (stopped by PID with SIGTERM)."""

    args: list[str]
    port: int
    data: Path
    proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Serve:
        env = {**os.environ, "SHELTERWATCH_SECRET": SECRET}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "shelterwatch.cli", "cloud", "serve", *self.args, "--data-dir", str(self.data),
             "--port", str(self.port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True)
        try:
            wait_port(self.port, timeout=60, proc=self.proc)  # type: ignore[arg-type]
        except RuntimeError:
            self.proc.kill()
            raise RuntimeError(f"cloud serve did not start: {self.proc.communicate(timeout=30)[0]}") from None
        return self

    def stop(self) -> str:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=60)
        assert self.proc.returncode == 0, out
        self.proc = None
        return out


def site_file(tmp: Path, rec: HttpReceiver) -> Path:
    """demo-estate.yaml plus every alarm key docs/alarms.md lists, in the one site file."""
    text = (ROOT / "cloud" / "sites" / "demo-estate.yaml").read_text(encoding="utf-8")
    text += f"""
public_url: http://alarms.example.test:8443
ack_link_ttl: 600
gateway_offline: {{silence: 120, severity: minor}}
comm_errors: {{raise: 0.3, clear: 0.1, min_polls: 10, severity: minor}}
people:
  - {{id: li, name: Li Wei, role: volunteer, tier: 1, channels: [{{url: "{rec.url('/li/Secret-Hook-99')}"}}]}}
escalation: {{tiers: [{{tier: 1, after: 0}}], repeat: 300, min_severity: minor, retries: 1, retry_delay: 0}}
alarm_overrides:
  - {{rule: waterflow, for: 0}}
inspection_windows:
  - {{start: "2030-01-01T09:00:00+08:00", end: "2030-01-01T11:00:00+08:00", reason: quarterly test}}
"""
    path = tmp / "estate.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, mosquitto_session: Any,
           http_receiver_module: HttpReceiver) -> Iterator[Serve]:
    tmp = tmp_path_factory.mktemp("docsapi")
    sv = Serve(["--site", str(site_file(tmp, http_receiver_module)), "--broker", mosquitto_session.url],
               free_port(), tmp / "data").start()
    yield sv
    if sv.proc is not None:
        sv.stop()


def test_docs_tables_match_the_served_openapi_both_ways(served: Serve) -> None:
    spec = httpx.get(f"{served.url}/openapi.json").json()
    served_routes = {(m.upper(), path) for path, ops in spec["paths"].items() for m in ops}
    docs = documented()
    missing = sorted(set(docs) - served_routes)
    undocumented = sorted(served_routes - set(docs))
    assert not missing, f"documented but not served: {[(k, docs[k][1]) for k in missing]}"
    assert not undocumented, f"served but not in docs/alarms.md or docs/web.md: {undocumented}"
    for key, (who, where) in docs.items():
        if key[1].startswith("/ack/"):
            assert who == LINK_WHO, f"{where}: {who!r}"
            continue
        perm = TABLE[key]
        want = {"public"} if perm == PUBLIC else {r.value for r in Role if perm in POLICY[r]}
        got = {w.strip() for w in who.split(",")}
        assert got == want, f"{where}: {key} documented for {sorted(got)}, served for {sorted(want)}"


def _user(served: Serve, name: str, role: str) -> dict[str, str]:
    """A user and token in the running server's database (what `cloud user add/token` do)."""
    from cloud.auth.cli import _service

    svc = _service(f"sqlite:///{served.data / 'web.db'}")
    svc.add_user(name, "a-long-password-1", role, ["demo-estate"])
    return {"Authorization": f"Bearer {svc.create_token(name, 'test')}"}


def _publish(broker_port: int, values: dict[str, Any], seq: int) -> None:
    gw = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="gw-shelter-a")
    gw.connect("127.0.0.1", broker_port)
    gw.loop_start()
    st = wire.topic("demo-estate", "gw-shelter-a", wire.Kind.STATUS)
    gw.publish(st, wire.encode(wire.Status(ts=wire.now(), state="online")), qos=1, retain=True).wait_for_publish(5)
    t = wire.topic("demo-estate", "gw-shelter-a", wire.Kind.TELEMETRY, "spk1")
    gw.publish(t, wire.encode(wire.Telemetry(ts=wire.now(), seq=seq, values=values)), qos=1).wait_for_publish(5)
    gw.loop_stop()
    gw.disconnect()


def test_site_file_alarm_keys_and_an_api_window_kept_across_a_restart(
        served: Serve, mosquitto_session: Any, http_receiver_module: HttpReceiver) -> None:
    rec = http_receiver_module
    boss = _user(served, "boss", "manager")
    now = datetime.now(UTC)
    r = httpx.post(f"{served.url}/api/v1/inspection-windows", headers=boss, json={
        "site": "demo-estate", "start": now.isoformat(), "end": (now + timedelta(hours=1)).isoformat(),
        "reason": "NFPA 25 flow test"})
    assert r.status_code == 201, r.text
    wid = r.json()["id"]
    people = httpx.get(f"{served.url}/api/v1/people", headers=boss).json()
    assert [p["id"] for p in people] == ["li"] and "Secret-Hook-99" not in str(people)
    served.stop()
    served.start()  # same data dir: the window is a row of the alarm store

    windows = httpx.get(f"{served.url}/api/v1/inspection-windows", headers=boss).json()
    assert [(w["id"], w["source"], w["open"]) for w in windows] == [(wid, "api", True), (None, "site file", False)]
    time.sleep(1.5)  # the ingester subscribes after start; QoS 1 without a session would drop earlier ones
    _publish(mosquitto_session.port, {"waterflow": True, "pipe_pressure": 3.9}, 1)
    alarm = wait_until(lambda: next((a for a in httpx.get(f"{served.url}/api/v1/alarms?active=true",
                                                          headers=boss).json() if a["rule"] == "waterflow"), None),
                       30, "the waterflow alarm")
    assert alarm["suppressed"] == "inspection window: NFPA 25 flow test"
    time.sleep(1.0)
    assert not [g for g in rec.got if "水流" in g.body["title"]], "nobody woken while the window is open"
    assert httpx.post(f"{served.url}/api/v1/inspection-windows/{wid}/end", headers=boss).status_code == 200
    got = rec.wait_for(lambda g: any("水流" in x.body["title"] for x in g), timeout=30)
    push = next(x for x in got if "水流" in x.body["title"])
    assert push.path == "/li/Secret-Hook-99"
    link = re.search(r"(http://alarms\.example\.test:8443)/ack/([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)", push.body["message"])
    assert link, "the push's link has the site file's public_url"
    from cloud.notify.links import AckSigner

    claim = AckSigner(SECRET).verify(link.group(2), time.time())
    assert 0 < claim.expires - time.time() <= 601, "and its ack_link_ttl (rounded to a second)"
