"""`shelterwatch demo`'s stack on its embedded defaults (amqtt broker in process): live within a
minute, logins work, and the command prints the URL and the logins."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from shelterwatch.demo import SITE, DemoOptions, DemoStack
from tests.fixtures.servers import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_demo_stack_on_embedded_broker(tmp_path: Path) -> None:
    with DemoStack(DemoOptions(workdir=tmp_path, sims=("garage",))) as st:
        st.wait_live(60)
        with httpx.Client(base_url=st.url, follow_redirects=True) as c:
            zones = {z["zone"]: z for z in c.get(f"/api/v1/sites/{SITE}/parking").json()["zones"]}
            assert zones["g1"]["total"] == 46 and zones["g1"]["unknown"] == 0
            page = c.get("/login").text
            tok = re.search(r'name="login_csrf" value="([^"]+)"', page)
            assert tok
            r = c.post("/login", data={"username": "installer", "password": st.passwords["installer"],
                                       "login_csrf": tok.group(1)})
            assert r.status_code == 200 and 'id="dev-hub1"' in r.text


def test_demo_command_prints_url_and_logins(tmp_path: Path) -> None:
    port = free_port()
    p = subprocess.Popen([sys.executable, "-m", "shelterwatch.cli", "demo", "--port", str(port),
                          "--workdir", str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, start_new_session=True)
    out = ""
    try:
        deadline = time.monotonic() + 90
        assert p.stdout is not None
        while time.monotonic() < deadline and "Ctrl-C" not in out:
            line = p.stdout.readline()
            if not line:
                break
            out += line
        assert f"http://127.0.0.1:{port}" in out, out
        logins = dict(re.findall(r"^\s+(manager|volunteer|installer|resident)\s+(\S+)", out, re.M))
        assert set(logins) == {"manager", "volunteer", "installer", "resident"}, out
        assert httpx.get(f"http://127.0.0.1:{port}/parking/{SITE}").status_code == 200
    finally:
        p.send_signal(2)  # Ctrl-C: the demo stops what it started
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
    assert p.returncode == 0, out
