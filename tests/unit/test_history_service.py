"""cloud/history/service.py with a real AlarmEngine (SQLite store in a temp dir, injected clock, run
synchronously), a list as storage, and the fan-out fed SafetyMessages directly."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cloud.alarms.config import AlarmSiteConfig
from cloud.alarms.directory import StaticDirectory
from cloud.alarms.engine import AlarmEngine
from cloud.alarms.store import AlarmStore
from cloud.history.service import HistoryService
from cloud.safety import SafetyMessage
from cloud.state.registry import DeviceEntry, Directory
from cloud.tsdb.lineproto import TsPoint
from device_profiles import wire

T0 = 1_800_000_000.0
SITE = "demo"
DEVICES: list[dict[str, Any]] = [
    {"id": "riser-1", "profile": "nanfang-fsm8", "gateway": "gw-1"},
    {"id": "bays", "profile": "parkhub-ph48", "gateway": "gw-2", "labels": {"shelter": "garage"},
     "instance_labels": {7: {"fire_lane": "true", "zone": "F"}}},
]
DIRECTORY = Directory(
    sites={SITE: False},
    gateways=frozenset({(SITE, "gw-1"), (SITE, "gw-2")}),
    devices={(SITE, d["id"]): DeviceEntry(SITE, d["id"], d["gateway"], d["profile"], d.get("labels", {}),
                                         d.get("instance_labels", {})) for d in DEVICES},
    gateway_labels={(SITE, "gw-2"): {"shelter": "garage", "floor": "B1"}},
)


class Clock:
    t = T0

    def __call__(self) -> float:
        return self.t


class Points:
    def __init__(self) -> None:
        self.got: list[TsPoint] = []

    def put(self, points: list[TsPoint], received: float | None = None) -> None:
        self.got.extend(points)

    def take(self, measurement: str | None = None) -> list[tuple[dict[str, str], dict[str, Any], float]]:
        out = [(dict(p.series.tags), p.fields, p.ts_ms / 1000) for p in self.got
               if measurement is None or p.series.measurement == measurement]
        self.got = [p for p in self.got if measurement is not None and p.series.measurement != measurement]
        return out


class Recorder:
    def __init__(self) -> None:
        self.msgs: list[SafetyMessage] = []

    def put(self, msg: SafetyMessage) -> None:
        self.msgs.append(msg)


def engine(tmp: Path, clock: Clock) -> AlarmEngine:
    cfg = AlarmSiteConfig.model_validate({
        "site": SITE, "name": "D", "people": [], "gateway_offline": {"silence": 100_000},
        "alarm_overrides": [{"rule": "fire_lane_blocked", "for": 0}], "devices": DEVICES,
    })
    return AlarmEngine(AlarmStore(f"sqlite:///{tmp / 'alarms.db'}"), StaticDirectory([cfg]), [cfg], clock=clock)


def tel(device: str, gw: str, values: dict[str, Any], ts: float, seq: int) -> SafetyMessage:
    at = datetime.fromtimestamp(ts, UTC)
    return SafetyMessage(SITE, gw, device, wire.Kind.TELEMETRY, wire.Telemetry(ts=at, seq=seq, values=values), ts)


def status(gw: str, state: str, received: float) -> SafetyMessage:
    st = wire.Status(ts=datetime.fromtimestamp(T0, UTC), state=state)  # type: ignore[arg-type]
    return SafetyMessage(SITE, gw, None, wire.Kind.STATUS, st, received)


@pytest.fixture
def rig(tmp_path):
    clock = Clock()
    clock.t = T0
    eng = engine(tmp_path, clock)
    pts = Points()
    h = HistoryService(period_s=300, clock=clock).attach(eng).bind(pts, lambda: DIRECTORY)
    h.step()
    yield clock, eng, h, pts
    eng.store.close()


def test_fan_out_passes_everything_on_and_queues_only_status_and_bay_telemetry(rig):
    _clock, _eng, h, _pts = rig
    rec = Recorder()
    sink = h.fan_out(rec)
    msgs = [
        status("gw-1", "online", T0),
        tel("riser-1", "gw-1", {"waterflow": False}, T0, 1),
        tel("bays", "gw-2", {"bay.1.occupied": True}, T0, 1),
        SafetyMessage(SITE, "gw-2", "bays", wire.Kind.HEALTH,
                      wire.DeviceHealth(ts=datetime.fromtimestamp(T0, UTC), seq=2, online=True), T0),
    ]
    for m in msgs:
        sink.put(m)
    assert rec.msgs == msgs, "the engine gets every message, first"
    assert [m.kind for m in h.queue] == [wire.Kind.STATUS, wire.Kind.TELEMETRY]


def test_a_full_queue_counts_what_it_drops(rig):
    h = HistoryService(maxlen=2)
    sink = h.fan_out(Recorder())
    for i in range(5):
        sink.put(status("gw-1", "online", T0 + i))
    assert len(h.queue) == 2 and h.stats.dropped == 3


def test_stays_carry_the_bays_series_tags_and_departure_time(rig):
    _clock, _eng, h, pts = rig
    sink = h.fan_out(Recorder())
    sink.put(tel("bays", "gw-2", {"bay.7.occupied": False, "bay.7.battery": 3.1}, T0, 1))
    sink.put(tel("bays", "gw-2", {"bay.7.occupied": True}, T0 + 60, 2))
    sink.put(tel("bays", "gw-2", {"bay.7.occupied": 0}, T0 + 200, 3))  # ints count as booleans
    sink.put(tel("bays", "gw-2", {"bay.7.occupied": "junk"}, T0 + 300, 4))  # ignored, never fatal
    h.step()
    (stay,) = pts.take("parking_stay")
    assert stay == ({"site": SITE, "gateway": "gw-2", "device": "bays", "bay": "7", "shelter": "garage",
                     "floor": "B1", "zone": "F", "fire_lane": "true"}, {"dwell_s": 140.0}, T0 + 200)
    assert h.stats.errors == 0


def test_gateway_status_from_messages_and_repeated(rig):
    clock, _eng, h, pts = rig
    sink = h.fan_out(Recorder())
    sink.put(status("gw-1", "online", T0 + 1))
    h.step()
    assert pts.take("gateway_status") == [({"site": SITE, "gateway": "gw-1"}, {"online": True}, T0 + 1)]
    clock.t = T0 + 302
    h._next_due = 0.0
    h.step()
    assert pts.take("gateway_status") == [({"site": SITE, "gateway": "gw-1"}, {"online": True}, T0 + 302)]
    sink.put(status("gw-1", "offline", T0 + 303))
    h.step()
    assert [f for _, f, _ in pts.take("gateway_status")] == [{"online": False}]


def test_alarm_transitions_through_the_engine_hook_and_repeats(rig):
    clock, eng, h, pts = rig
    eng.process(tel("bays", "gw-2", {"bay.7.occupied": True}, T0, 1))
    ((tags, f, t),) = pts.take("alarm")
    assert tags == {"site": SITE, "device": "bays", "rule": "fire_lane_blocked", "severity": "major",
                    "instance": "7"}
    assert (f, t) == ({"active": True, "acknowledged": False}, T0)
    (a,) = eng.active.values()
    clock.t = T0 + 10
    assert eng.acknowledge(a.id, "li", "web")
    assert [(f, t) for _, f, t in pts.take("alarm")] == [({"active": True, "acknowledged": True}, T0 + 10)]
    clock.t = T0 + 309  # a period after the last point (the acknowledgement)
    h.step()
    assert pts.take("alarm") == []
    clock.t = T0 + 311
    h._next_due = 0.0
    h.step()
    assert [(f, t) for _, f, t in pts.take("alarm")] == [({"active": True, "acknowledged": True}, T0 + 311)]
    clock.t = T0 + 320
    eng.process(tel("bays", "gw-2", {"bay.7.occupied": False}, T0 + 320, 2))
    assert [(f, t) for _, f, t in pts.take("alarm")] == [({"active": False, "acknowledged": True}, T0 + 320)]
    clock.t = T0 + 10_000
    h._next_due = 0.0
    h.step()
    assert pts.take("alarm") == [], "a cleared alarm is not repeated"


def test_alarms_active_before_a_restart_are_repeated_at_once(rig, tmp_path):
    clock, eng, _h, _pts = rig
    eng.process(tel("bays", "gw-2", {"bay.7.occupied": True}, T0, 1))
    eng.store.close()
    clock.t = T0 + 50
    eng2 = engine(tmp_path, clock)  # the restarted cloud
    pts2 = Points()
    h2 = HistoryService(period_s=300, clock=clock).attach(eng2).bind(pts2, lambda: DIRECTORY)
    h2.step()
    assert [(tags["rule"], f, t) for tags, f, t in pts2.take("alarm")] == [
        ("fire_lane_blocked", {"active": True, "acknowledged": False}, T0 + 50)
    ]
    eng2.store.close()


def test_inspection_windows_from_the_engine(rig):
    clock, eng, h, pts = rig
    eng.add_window(SITE, T0 + 10, T0 + 20, "flow test", "li")
    h.step()
    assert pts.take("inspection") == []
    clock.t = T0 + 15
    h.step()
    assert pts.take("inspection") == [({"site": SITE}, {"active": True}, T0 + 10)]
    clock.t = T0 + 25
    h._next_due = 0.0
    h.step()
    assert pts.take("inspection") == [({"site": SITE}, {"active": False}, T0 + 20)]


def test_a_failing_hook_never_breaks_the_engine(rig):
    _clock, eng, h, _pts = rig

    def boom(*_a: Any) -> None:
        raise RuntimeError("history is broken")

    eng.on_change = boom
    eng.process(tel("bays", "gw-2", {"bay.7.occupied": True}, T0, 1))
    assert [a.rule for a in eng.active.values()] == ["fire_lane_blocked"]
    h.stop()  # detaches only its own hook
    assert eng.on_change is boom
