"""`shelterwatch cloud serve`: the production wiring of ingest → alarm engine → push, and the web,
as a separate process against a real mosquitto (what the demo runs, without simulators)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest

from device_profiles import wire
from tests.fixtures.servers import free_port, wait_port

pytestmark = pytest.mark.integration
SITE_FILE = Path(__file__).parents[2] / "cloud" / "sites" / "demo-estate.yaml"


@pytest.mark.parametrize("state", ["sqlite", "postgresql"])
def test_serve_turns_a_gateways_waterflow_into_a_push_and_serves_pages(tmp_path, mosquitto, http_receiver, state,
                                                                       request):
    """On SQLite files (the default) and with registry and alarm state in PostgreSQL (replicas)."""
    alarms = tmp_path / "alarms.yaml"
    alarms.write_text(
        "site: demo-estate\nname: Demo Estate\n"
        "people:\n"
        f"  - {{id: li, name: Li, role: volunteer, tier: 1, channels: [{{url: '{http_receiver.url('li')}'}}]}}\n"
        "alarm_overrides:\n  - {rule: waterflow, for: 0}\n"
    )
    port = free_port()
    env = {**os.environ, "SHELTERWATCH_SECRET": "s" * 40}
    state_args: list[str] = []
    if state == "postgresql":
        url = request.getfixturevalue("postgres_url")
        state_args = ["--state-db", url, "--alarm-db", url]
    proc = subprocess.Popen(
        [sys.executable, "-m", "shelterwatch.cli", "cloud", "serve", "--site", str(SITE_FILE), "--alarms",
         str(alarms), "--broker", mosquitto.url, "--data-dir", str(tmp_path / "data"), "--port", str(port),
         *state_args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        wait_port(port, timeout=60, proc=proc)  # type: ignore[arg-type]
        assert httpx.get(f"http://127.0.0.1:{port}/parking/demo-estate").status_code == 200
        gw = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="gw-shelter-a")
        gw.connect("127.0.0.1", mosquitto.port)
        gw.loop_start()
        time.sleep(1.5)  # the ingester subscribes after start; QoS 1 without a session would drop earlier ones
        st = wire.topic("demo-estate", "gw-shelter-a", wire.Kind.STATUS)
        gw.publish(st, wire.encode(wire.Status(ts=wire.now(), state="online")), qos=1, retain=True).wait_for_publish(5)
        t = wire.topic("demo-estate", "gw-shelter-a", wire.Kind.TELEMETRY, "spk1")
        for seq, flow in enumerate([False, True], start=1):
            msg = wire.Telemetry(ts=wire.now(), seq=seq, values={"waterflow": flow, "pipe_pressure": 3.9})
            gw.publish(t, wire.encode(msg), qos=1).wait_for_publish(5)
        got = http_receiver.wait_for(lambda g: any(r.path == "/li" for r in g), timeout=30)
        push = next(r for r in got if r.path == "/li")
        assert "waterflow" in str(push.body).lower() or "喷淋" in str(push.body), push.body
        assert re.search(r"/ack/[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+", str(push.body)), "push carries a signed ack link"
        gw.loop_stop()
        gw.disconnect()
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    if state == "postgresql":  # the alarm and the registry live in PostgreSQL, not in data-dir files
        from cloud.alarms.store import AlarmStore
        from cloud.state.registry import Registry

        store = AlarmStore(url)
        assert [a.rule for a in store.list_alarms(site="demo-estate")] == ["waterflow"]
        store.close()
        reg = Registry(url)
        assert reg.device("demo-estate", "spk1") is not None
        reg.close()
        assert not (tmp_path / "data" / "alarms.db").exists() and not (tmp_path / "data" / "state.db").exists()


def test_serve_refuses_a_missing_secret_and_a_broken_file(tmp_path):
    bad = tmp_path / "alarms.yaml"
    bad.write_text("site: demo-estate\npeople:\n  - {id: li, tier: one}\n")
    base = [sys.executable, "-m", "shelterwatch.cli", "cloud", "serve", "--site", str(SITE_FILE), "--alarms",
            str(bad), "--data-dir", str(tmp_path / "d")]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHELTERWATCH_SECRET")}
    r = subprocess.run(base, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "SHELTERWATCH_SECRET" in r.stderr, r.stderr
    r = subprocess.run(base, env={**env, "SHELTERWATCH_SECRET": "s" * 40}, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and f"{bad}:3" in r.stderr, r.stderr
