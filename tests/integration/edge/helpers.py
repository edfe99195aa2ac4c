"""Helpers for the edge agent's integration tests: write a config, run the agent as a real
process (stopped or killed by PID), and collect what reaches the broker, decoded by the wire contract."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from device_profiles import wire
from tests.polling import wait_until

SITE, GW = "shelter-a", "gw1"


def write_config(
    tmp: Path, broker_port: int, buses: list[dict[str, Any]], devices: list[dict[str, Any]], **extra: Any
) -> Path:
    cfg = {
        "site": SITE,
        "gateway": GW,
        "state_dir": str(tmp / "state"),
        "uplink": {
            "url": f"mqtt://127.0.0.1:{broker_port}",
            "client_id": f"edge-{tmp.name}",
            "reconnect_min_s": 0.5,
            "reconnect_max_s": 2,
        },
        "snapshot_s": 30,
        "health_s": 2,
        "buses": buses,
        "devices": devices,
    }
    cfg.update(extra)
    path = tmp / "agent.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


class AgentProcess:
    def __init__(self, config: Path, log: Path) -> None:
        self.config, self.log_path = config, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> AgentProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edge_agent", "run", str(self.config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        log.close()
        return self

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]


class Collector:
    """Subscribes to everything the gateway sends; every payload is decoded by the wire contract
    (a payload that does not validate fails the test)."""

    def __init__(self, port: int, client_id: str = "test-collector") -> None:
        self.msgs: list[tuple[float, wire.Topic, Any]] = []
        self.errors: list[str] = []
        self.lock = threading.Lock()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)

        def subscribe(cl: mqtt.Client, *_: Any) -> None:
            for t in wire.subscriptions():
                cl.subscribe(t, qos=1)

        c.on_connect = subscribe
        c.on_message = self._msg
        c.reconnect_delay_set(1, 2)
        c.connect("127.0.0.1", port)
        c.loop_start()
        self.client = c

    def _msg(self, client: mqtt.Client, userdata: Any, m: mqtt.MQTTMessage) -> None:
        try:
            t = wire.parse_topic(m.topic)
            payload = wire.decode(t.kind, bytes(m.payload))
        except wire.WireError as e:
            self.errors.append(f"{m.topic}: {e}")
            return
        with self.lock:
            self.msgs.append((time.monotonic(), t, payload))

    def of(self, kind: wire.Kind, device: str | None = None) -> list[Any]:
        """Messages of `kind`; TELEMETRY includes urgent telemetry (docs/wire.md: a receiver takes
        either topic as telemetry), URGENT alone only the urgent ones."""
        return [p for _, p in self.timed(kind, device)]

    def timed(self, kind: wire.Kind, device: str | None = None) -> list[tuple[float, Any]]:
        kinds = wire.TELEMETRY_KINDS if kind is wire.Kind.TELEMETRY else {kind}
        with self.lock:
            return [(ts, p) for ts, t, p in self.msgs if t.kind in kinds and (device is None or t.device == device)]

    def wait(self, cond: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
        return wait_until(cond, timeout, what)

    def latest_values(self, device: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for t in self.of(wire.Kind.TELEMETRY, device):
            out.update(t.values)
        return out

    def send_command(self, device: str, command: str, index: int | None = None, value: Any = None) -> str:
        cid = wire.new_id()
        cmd = wire.Command(ts=wire.now(), id=cid, command=command, index=index, value=value, by="test")
        self.client.publish(wire.cmd_topic(SITE, GW, device), wire.encode(cmd), qos=1)
        return cid

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
