"""A failing battery, end to end: the simulator's BMS-failure scenario on cabinet chg2 (a Hengtong
EBC-12 on Modbus TCP) → the edge agent (charge-session analytics) → mosquitto → `cloud serve` →
pushes. The `abnormal_charge` warning must be pushed before the overheating threshold alarm (65 °C).

The site runs 60× faster than the wall clock (an hour of charging in a minute) and the edge's
analytics clock with it (`charge_analytics.time_scale: 60`). The cloud's rate-of-rise rule judges on
the engine's wall clock, so under this compression it would fire on every warm-up; it is switched off
for this site. Not timed: it checks the order of the pushes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.servers import free_port, wait_port
from tests.integration.edge.helpers import AgentProcess, write_config

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
SITE_FILE = Path(__file__).parents[2] / "cloud" / "sites" / "demo-estate.yaml"
SPEED = 60


def test_a_failed_bms_is_warned_of_before_the_port_overheats(tmp_path, mosquitto, http_receiver, sim_process):
    alarms = tmp_path / "alarms.yaml"
    alarms.write_text(
        "site: demo-estate\nname: Demo Estate\nname_zh: 示范小区\n"
        "people:\n"
        f"  - {{id: li, name: Li, role: volunteer, tier: 1, channels: [{{url: '{http_receiver.url('li')}'}}]}}\n"
        "escalation: {repeat: 3600}\n"
        "alarm_overrides:\n  - {rule: connector_temp_rise, enabled: false}\n"
    )
    port = free_port()
    cloud = subprocess.Popen(
        [sys.executable, "-m", "shelterwatch.cli", "cloud", "serve", "--site", str(SITE_FILE), "--alarms",
         str(alarms), "--broker", mosquitto.url, "--data-dir", str(tmp_path / "data"), "--port", str(port)],
        env={**os.environ, "SHELTERWATCH_SECRET": "s" * 40}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True)
    agent = None
    try:
        wait_port(port, timeout=60, proc=cloud)  # type: ignore[arg-type]
        sim = sim_process("bms-failure", "--speed", str(SPEED))
        ep = sim.endpoints["chg2"]
        bus = {"name": "lan", "transport": "modbus_tcp", "host": ep["host"], "tcp_port": ep["port"], "timeout_s": 1.0}
        dev = {"id": "chg2", "profile": "hengtong-ebc12", "bus": "lan", "address": ep["unit"],
               "poll": {"safety": 0.5, "routine": 1.0, "slow": 30.0},
               "charge_analytics": {"time_scale": SPEED}}
        cfg = write_config(tmp_path, mosquitto.port, [bus], [dev], site="demo-estate", gateway="gw-shelter-a")
        agent = AgentProcess(cfg, tmp_path / "agent.log").start()

        def titled(got, *words):  # type: ignore[no-untyped-def]
            return [r for r in got if r.path == "/li" and all(w in r.body.get("title", "") for w in words)]

        try:
            got = http_receiver.wait_for(lambda g: titled(g, "Charging port overheating"), timeout=240)
        except TimeoutError:
            titles = [r.body.get("title") for r in http_receiver.got]
            log = (tmp_path / "agent.log").read_text()[-3000:]
            raise AssertionError(f"no overheating push; pushes: {titles}; agent log: {log}") from None
        warned = titled(got, "Abnormal charge")
        hot = titled(got, "Charging port overheating")
        assert warned, [r.body.get("title") for r in got]
        first = warned[0]
        assert first.at < hot[0].at, "the warning comes before the threshold alarm"
        body = first.body["message"]
        assert "充电口 3" in body and "port 3" in body, body
        assert "Seen: " in body and "发现：" in body, body
        assert all("port 3" in r.body["message"] for r in warned), "no other port is warned of"
        lead_min = (hot[0].at - first.at) * SPEED / 60
        print(f"abnormal_charge pushed {lead_min:.1f} simulated minutes before the 65 °C alarm")
        assert lead_min >= 5
    finally:
        if agent is not None:
            agent.stop()
        cloud.send_signal(signal.SIGTERM)
        out, _ = cloud.communicate(timeout=30)
    assert cloud.returncode == 0, out
