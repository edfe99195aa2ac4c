"""An agent started by another program with `--parent-pid` stops cleanly when that program dies
(the demo runs its gateways in their own sessions: a SIGKILL of the demo sends them nothing, and an
agent left behind kept reopening pseudo-terminal paths the next program was given)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.fixtures.servers import free_port
from tests.integration.edge.helpers import write_config
from tests.polling import wait_until

pytestmark = pytest.mark.integration


def gone(pid: int) -> bool:
    """Exited (or a zombie nobody reaped yet: it is not our child to reap)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith(("Z", "X"))
    except (FileNotFoundError, IndexError):
        return True


def test_an_agent_stops_when_the_program_that_started_it_is_killed(tmp_path: Path) -> None:
    # a broker and a charger nobody runs (no serial port: nothing of another test's to open)
    bus = {"name": "lan", "transport": "modbus_tcp", "host": "127.0.0.1", "tcp_port": free_port(), "timeout_s": 0.5}
    cfg = write_config(tmp_path, free_port(), [bus], [{"id": "chg", "profile": "hengtong-ebc12", "bus": "lan",
                                                       "address": 1}])
    log = tmp_path / "agent.log"
    starter = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import os, subprocess, sys, time
        log = open({str(log)!r}, "ab")
        p = subprocess.Popen([sys.executable, "-m", "edge_agent", "run", {str(cfg)!r},
                              "--parent-pid", str(os.getpid())], stdout=log, stderr=log, start_new_session=True)
        print(p.pid, flush=True)
        time.sleep(120)
    """)], stdout=subprocess.PIPE, text=True)
    assert starter.stdout is not None
    agent = int(starter.stdout.readline())
    try:
        wait_until(lambda: (tmp_path / "state" / "status.json").exists(), 30, "the agent running")
        assert not gone(agent)
        starter.send_signal(signal.SIGKILL)
        starter.wait(10)
        wait_until(lambda: gone(agent), 20, "the orphaned agent to stop")
        assert "is gone: stopping" in log.read_text()
    finally:
        if not gone(agent):
            os.kill(agent, signal.SIGKILL)
        starter.kill()
        starter.wait(10)
