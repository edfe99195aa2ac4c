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


@pytest.mark.slow
def test_demo_shows_readings_then_the_scenario_alarm_and_stops_by_itself(tmp_path: Path) -> None:
    """The newcomer's two minutes: readings stream, a port overheats about a minute in, the edge cuts
    it, the critical alarm is pushed, and the demo stops cleanly (here after --duration)."""
    port = free_port()
    p = subprocess.run([sys.executable, "-m", "shelterwatch.cli", "demo", "--port", str(port), "--workdir",
                        str(tmp_path), "--duration", "100", "--every", "5"], capture_output=True, text=True,
                       timeout=240)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    counts = [int(m) for m in re.findall(r"\] messages (\d+) stored", out)]
    assert len(counts) >= 10 and counts[-1] > counts[0] > 0, out  # readings keep flowing
    assert re.search(r"chg1 port 3 \d+(\.\d+)? °C", out), out  # decoded values, with units
    assert "Edge cut power" in out and "CRITICAL" in out, out  # the interlock event became a critical push
    assert re.search(r"chg1 port 3 \d+(\.\d+)? °C 0\.0 A disabled", out), out  # the edge really cut the port
    assert out.rstrip().endswith("stopped."), out
