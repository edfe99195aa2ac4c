"""A live edge's output against docs/wire.md, checked by rules written from the doc — not by the
contract's own decoders (device_profiles/wire.py), which the edge shares and could share a mistake.

Shelter A's simulators (two charger models on RTU and Modbus TCP, a sprinkler monitor) → the edge
agent as a real process → a real mosquitto → a raw MQTT 5 subscriber that sees each message's QoS
and retain flag as published. The cloud's time beacon runs beside it. During the capture a state
changes (waterflow), a command is carried out and one refused. Every captured message must follow
the documented topic table (QoS, retained), payload rules (JSON, `v`, times as
`YYYY-MM-DDTHH:MM:SS.mmmZ`, nulls only where allowed), the sequence rule (from 1, one counter per
device, no gap, one epoch), the value types of docs/profiles.md, the event severities, and the
deadband rule (a non-snapshot value moved by at least its deadband since last sent).
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.subscribeoptions import SubscribeOptions

from cloud.timebeacon import TimeBeacon
from simulators.site import SimSite
from tests.integration.edge.helpers import GW, SITE, AgentProcess
from tests.integration.edge.test_with_simulators import agent_config
from tests.polling import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

CATALOG = Path(__file__).parents[3] / "device_profiles" / "catalog"
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
# docs/wire.md, "Topics": kind → (QoS, retained)
TABLE = {"status": (1, True), "health": (1, False), "telemetry": (1, False), "urgent": (1, False), "event": (1, False),
         "cmd-result": (1, False), "config-result": (1, False), "config-running": (1, True)}
GATEWAY_KINDS = {"status", "config-result", "config-running"}  # topics without a device level
# docs/wire.md, "Urgent telemetry": the site's overrides the cloud sends (`limits`, down, QoS 1, retained).
# chg1's ports alarm at 55 °C here (profile: 70); a device the gateway lacks is ignored.
LIMITS = (b'{"v": 1, "ts": "2026-11-25T04:00:00.000Z", "devices": {'
          b'"chg1": [{"rule": "connector_overtemp", "raise": 55.0, "clear": 50.0}],'
          b' "chg404": [{"rule": "connector_overtemp", "raise": 20.0, "clear": 10.0}]}}')
LIMITS_RULES = {"chg1": {"connector_temp": [{"kind": "threshold", "raise": 55.0, "clear": 50.0}]}}
SEVERITIES = {"critical", "major", "minor", "warning", "info"}
EVENT_KINDS = {"state", "interlock", "command", "fault", "agent"}
NULLABLE = {"last_ok", "latency_ms", "poll_rate_hz", "backlog_oldest", "clock_skew_s", "point", "value", "previous"}


class Capture:
    """Raw messages as the broker delivers them to an MQTT 5 subscriber asking for QoS 2 and
    retain-as-published: the QoS and retain flag seen are the publisher's."""

    def __init__(self, port: int) -> None:
        self.msgs: list[tuple[str, bytes, int, bool]] = []
        self.lock = threading.Lock()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="contract-capture", protocol=mqtt.MQTTv5)
        opts = SubscribeOptions(qos=2, retainAsPublished=True)
        c.on_connect = lambda cl, u, f, rc, p=None: cl.subscribe([(f"sw/v1/{SITE}/{GW}/#", opts)])
        c.on_message = lambda cl, u, m: self._add(m)
        c.connect("127.0.0.1", port)
        c.loop_start()
        self.client = c

    def _add(self, m: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.msgs.append((m.topic, bytes(m.payload), m.qos, bool(m.retain)))

    def all(self) -> list[tuple[str, bytes, int, bool]]:
        with self.lock:
            return list(self.msgs)

    def payloads(self, kind: str, device: str | None = None) -> list[dict[str, Any]]:
        out = []
        for topic, payload, _, _ in self.all():
            parts = topic.split("/")
            k = parts[-1]
            dev = parts[4] if len(parts) == 6 else None
            same_level = kind != "health" or (dev is None) == (device is None)  # gateway vs device health
            if k == kind and (device is None or dev == device) and same_level:
                out.append(json.loads(payload))
        return out

    def command(self, device: str, body: dict[str, Any]) -> None:
        self.client.publish(f"sw/v1/{SITE}/{GW}/{device}/cmd", json.dumps(body), qos=1)


def doc_value_kind(point: dict[str, Any], table_default: str | None = None) -> type:
    """docs/profiles.md "Register layout", last paragraph, read from the profile YAML itself."""
    t, table = point["type"], point.get("table", table_default)
    if table in ("coil", "discrete_input") or t in ("bool", "bit"):
        return bool
    if t in ("enum", "string"):
        return str
    if t == "float32" or point.get("scale", 1) != 1 or point.get("offset", 0) != 0:
        return float
    return int


def doc_points(profile: str) -> dict[str, tuple[type, float]]:
    """Wire point id → (JSON type, deadband), straight from the catalog YAML (docs/profiles.md)."""
    y = yaml.safe_load((CATALOG / f"{profile}.yaml").read_text())
    out = {p["key"]: (doc_value_kind(p), float(p.get("deadband", 0))) for p in y.get("points", [])}
    for b in y.get("blocks", []):
        for n in range(b.get("first", 1), b.get("first", 1) + b["count"]):
            for p in b["points"]:
                out[f"{b['key']}.{n}.{p['key']}"] = (doc_value_kind(p), float(p.get("deadband", 0)))
    return out


def doc_limits(profile: str, site: dict[str, list[dict[str, Any]]] | None = None) -> dict[str, list[dict[str, Any]]]:
    """docs/wire.md, "Urgent telemetry": the threshold and state rules of the catalog YAML whose
    point has no `event:`, by wire point id (a rule with `block:` applies to every instance), and
    beside them the site's limits (`site`: by point key) the cloud sent."""
    y = yaml.safe_load((CATALOG / f"{profile}.yaml").read_text())
    has_event = {(None, p["key"]) for p in y.get("points", []) if "event" in p}
    has_event |= {(b["key"], p["key"]) for b in y.get("blocks", []) for p in b["points"] if "event" in p}
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for pid in doc_points(profile):
        parts = pid.split(".")
        block, key = (parts[0], parts[2]) if len(parts) == 3 else (None, pid)
        for r in y.get("alarms", []):
            if r["kind"] in ("threshold", "state") and (r.get("block"), r["point"]) == (block, key) \
                    and (block, key) not in has_event:
                out[pid].append(r)
        if out.get(pid):
            out[pid] += (site or {}).get(key, [])
    return out


def calls(r: dict[str, Any], v: Any) -> bool:
    if r["kind"] == "state":
        return bool(v == r["value"])
    return bool(v >= r["raise"] if r.get("direction", "above") == "above" else v <= r["raise"])


def clears(r: dict[str, Any], v: Any) -> bool:
    if r["kind"] == "state":
        return not calls(r, v)
    return bool(v <= r["clear"] if r.get("direction", "above") == "above" else v >= r["clear"])


def crossed(rules: list[dict[str, Any]], last: Any, v: Any) -> bool:
    """Against the value last sent: starts or stops calling for the alarm, or reaches the clear
    level; a first value only when it calls for the alarm."""
    if last is None:
        return any(calls(r, v) for r in rules)
    return any(calls(r, v) != calls(r, last) or (clears(r, v) and not clears(r, last)) for r in rules)


def check_times(body: dict[str, Any], where: str) -> None:
    for k, v in body.items():
        if k in ("ts", "last_ok", "backlog_oldest", "expires"):
            assert (v is None and k in NULLABLE) or (isinstance(v, str) and TIME.match(v)), f"{where}: {k}={v!r}"


def test_a_live_edge_speaks_exactly_docs_wire_md(tmp_path: Path, mosquitto) -> None:  # type: ignore[no-untyped-def]
    site = SimSite.from_file("simulators/sites/shelter-a.yaml").start()
    cap = Capture(mosquitto.port)
    beacon = TimeBeacon(mosquitto.url, "contract-cloud", interval_s=0.5).start()
    cfg = agent_config(tmp_path, mosquitto.port, {"shelter-a": site})
    doc = yaml.safe_load(cfg.read_text())
    doc.update(health_s=1, snapshot_s=4)
    cfg.write_text(yaml.safe_dump(doc))
    profiles = {d["id"]: d["profile"] for d in doc["devices"]}
    agent = AgentProcess(cfg, tmp_path / "agent.log")
    try:
        time.sleep(0.3)  # the capture is subscribed before the gateway says a word
        cap.client.publish(f"sw/v1/{SITE}/{GW}/limits", LIMITS, qos=1, retain=True)  # as the cloud does
        agent.start()
        wait_until(lambda: cap.payloads("telemetry", "spk1") and cap.payloads("telemetry", "chg2"), 30, "telemetry")
        site.device("spk1").model.set_waterflow(True)  # a state event
        cap.command("chg1", {"v": 1, "ts": "2026-11-25T03:20:00.000Z", "id": "c0ffee0012345678",
                             "command": "port_enable", "index": 2, "value": False, "by": "test"})
        cap.command("chg1", {"v": 1, "ts": "2026-11-25T03:20:00.000Z", "id": "c0ffee0087654321",
                             "command": "self_destruct"})
        wait_until(lambda: len(cap.payloads("cmd-result", "chg1")) >= 2, 20, "two command results")
        wait_until(lambda: any(e.get("kind") == "state" for e in cap.payloads("event", "spk1")), 20, "state event")
        wait_until(lambda: any(h.get("clock_skew_s") is not None for h in cap.payloads("health")), 20,
                   "a gateway health with its clock skew")
        # chg1's port 1 sensor reads 72 °C for 3 s (its rule: raise 70, clear 60; cut-off 75): urgent twice
        site.device("chg1").model.sensor_spike(1, 72.0, 3.0)
        wait_until(lambda: len([u for u in cap.payloads("urgent", "chg1") if "port.1.connector_temp" in u["values"]])
                   >= 2, 20, "urgent telemetry of chg1 port 1 going over 70 °C and back")
        # port 2 reads 60 °C: past only the site's limit (55, clear 50), urgent too, up and back
        site.device("chg1").model.sensor_spike(2, 60.0, 3.0)
        wait_until(lambda: len([u for u in cap.payloads("urgent", "chg1") if "port.2.connector_temp" in u["values"]])
                   >= 2, 20, "urgent telemetry of chg1 port 2 going over the site's 55 °C and back")
        time.sleep(6)  # past a snapshot period, with moving readings
    finally:
        agent.stop()
        beacon.stop()
        site.stop()
    msgs = cap.all()
    cap.client.disconnect()
    cap.client.loop_stop()
    assert len(msgs) > 50, agent.log()

    seqs: dict[str, list[int]] = defaultdict(list)
    epochs: set[str] = set()
    sent: dict[str, dict[str, Any]] = defaultdict(dict)  # device → point → last value sent
    kinds_seen: set[str] = set()
    for topic, raw, qos, retain in msgs:
        parts = topic.split("/")
        assert parts[:4] == ["sw", "v1", SITE, GW], topic
        assert len(parts) in (5, 6) and all(ID.match(p) for p in parts[2:-1]), topic
        kind = parts[-1]
        device = parts[4] if len(parts) == 6 else None
        if kind in ("cmd", "limits"):
            continue  # the downlink: what this test sent
        assert kind in TABLE and (device is None) == (kind in GATEWAY_KINDS or (kind == "health" and len(parts) == 5))
        kinds_seen.add(kind if device else f"gateway-{kind}")
        assert (qos, retain) == TABLE[kind], f"{topic}: published with QoS {qos}, retained {retain}"
        assert len(raw) <= 64 * 1024
        body = json.loads(raw.decode("utf-8"))
        assert body["v"] == 1, topic
        check_times(body, topic)
        for k, v in body.items():
            assert v is not None or k in NULLABLE, f"{topic}: {k} is null"
        if device is not None and kind != "cmd-result":
            assert isinstance(body["seq"], int) and body["seq"] >= 1, topic
            assert isinstance(body["epoch"], str) and body["epoch"], topic
            seqs[device].append(body["seq"])
            epochs.add(body["epoch"])
        if kind in ("telemetry", "urgent"):
            points = doc_points(profiles[device])  # type: ignore[index]
            limits = doc_limits(profiles[device], LIMITS_RULES.get(device))  # type: ignore[index,arg-type]
            assert isinstance(body["snapshot"], bool) and isinstance(body["values"], dict)
            across = [pid for pid, v in body["values"].items()
                      if limits.get(pid) and crossed(limits[pid], sent[device].get(pid), v)]  # type: ignore[index]
            assert (kind == "urgent") == bool(across), f"{topic}: {body['values']} crossed {across}"
            for pid, v in body["values"].items():
                assert pid in points, f"{device}: {pid} is not a point of {profiles[device]}"  # type: ignore[index]
                want, deadband = points[pid]
                assert type(v) is want, f"{device}.{pid} = {v!r}: docs/profiles.md says {want.__name__}"
                last = sent[device].get(pid)  # type: ignore[index]
                if not body["snapshot"] and want in (int, float) and deadband > 0 and last is not None:
                    moved = abs(v - last)
                    assert moved >= deadband or math.isclose(moved, deadband, rel_tol=1e-9), (
                        f"{device}.{pid}: {last} → {v} moved less than its deadband {deadband}")
                sent[device][pid] = v  # type: ignore[index]
        elif kind == "event":
            assert body["kind"] in EVENT_KINDS and body["severity"] in SEVERITIES, body
            assert isinstance(body["id"], str) and 8 <= len(body["id"]) <= 64
        elif kind == "health" and device is not None:
            assert isinstance(body["online"], bool) and body["breaker"] in ("closed", "open", "half_open")
            assert all(isinstance(body[k], int) and body[k] >= 0 for k in ("polls", "ok", "timeouts", "crc_errors"))
        elif kind == "health":
            assert isinstance(body["uptime_s"], int | float) and isinstance(body["buses"], list)
            assert body["clock_skew_s"] is None or isinstance(body["clock_skew_s"], float)
        elif kind == "status":
            assert body["state"] in ("online", "offline")
        elif kind == "config-running":  # docs/wire.md, "Remote configuration"
            assert isinstance(body["version"], int) and re.fullmatch(r"[0-9a-f]{64}", body["digest"]), body
            assert isinstance(body["config"], str) and "password" not in body["config"], topic
        elif kind == "cmd-result":
            assert body["status"] in ("done", "refused", "failed", "expired") and isinstance(body["id"], str)

    assert kinds_seen >= {"telemetry", "urgent", "event", "health", "cmd-result", "gateway-status", "gateway-health"}
    assert len(epochs) == 1, f"one outbox, one epoch: {epochs}"
    for device, s in seqs.items():
        s.sort()
        assert s == list(range(1, len(s) + 1)), f"{device}: seq must start at 1 with no gap or repeat"
    skews = [h["clock_skew_s"] for h in cap.payloads("health") if h["clock_skew_s"] is not None]
    assert skews and all(abs(x) < 1.0 for x in skews), f"same machine, same clock: {skews}"
    results = {r["id"]: r["status"] for r in cap.payloads("cmd-result", "chg1")}
    assert results == {"c0ffee0012345678": "done", "c0ffee0087654321": "refused"}
    births = [b for b in cap.payloads("status") if b["state"] == "online"]
    assert births and {d["id"] for d in births[0]["devices"]} == set(profiles)
