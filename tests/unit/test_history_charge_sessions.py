"""cloud/history writes `charge_session` from charger telemetry (the same session bookkeeping the
edge runs) and takes the edge's `abnormal_charge` verdict: one point when a session is flagged, one
when it ends; the estate page reads the curves. HistoryService fed SafetyMessages through its
fan-out, a list as storage."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from cloud.history.service import HistoryService
from cloud.safety import SafetyMessage
from cloud.state.registry import DeviceEntry, Directory
from cloud.tsdb.lineproto import TsPoint
from device_profiles import wire

T0 = 1_800_000_000.0
SITE = "demo"
DIRECTORY = Directory(
    sites={SITE: False},
    gateways=frozenset({(SITE, "gw-1")}),
    devices={(SITE, "chg1"): DeviceEntry(SITE, "chg1", "gw-1", "voltpile-cp10", {"shelter": "a"}, {})},
    gateway_labels={(SITE, "gw-1"): {"estate_zone": "north"}},
)


class Points:
    def __init__(self) -> None:
        self.got: list[TsPoint] = []

    def put(self, points: list[TsPoint], received: float | None = None) -> None:
        self.got.extend(points)


class Sink:
    def put(self, msg: SafetyMessage) -> None:
        pass


def at(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def port3(t: float, amps: float, temp: float, state: str) -> dict[str, Any]:
    return {"ambient_temp": 20.0, "port.3.current": amps, "port.3.power": round(amps * 221), "port.3.state": state,
            "port.3.connector_temp": temp, "port.3.energy": round((t - T0) / 3600 * 0.35, 3), "port.3.enabled": True}


def test_sessions_become_points_and_the_edge_flags_them() -> None:
    h = HistoryService(clock=lambda: T0)
    pts = Points()
    h.bind(pts, lambda: DIRECTORY).step()
    sink = h.fan_out(Sink())
    seq = 0
    for minute in range(0, 100):  # 90 minutes charging, then unplugged
        t = T0 + minute * 60
        charging = minute < 90
        v = port3(t, 1.6 if charging else 0.0, 20 + (8 if charging else 0) + minute * 0.02, "charging" if charging
                  else "idle")
        seq += 1
        sink.put(SafetyMessage(SITE, "gw-1", "chg1", wire.Kind.TELEMETRY,
                               wire.Telemetry(ts=at(t), seq=seq, values=v), t))
        if minute == 40:
            seq += 1
            ev = wire.Event(ts=at(t), seq=seq, id="e" * 16, kind="abnormal_charge", severity="major",
                            point="port.3.connector_temp", value=29.0,
                            data={"reason": "no_taper", "severe": False, "index": 3})
            sink.put(SafetyMessage(SITE, "gw-1", "chg1", wire.Kind.EVENT, ev, t))
            h.step()
            views = h.sessions.view(SITE)
            assert [(v.device, v.port, v.flagged, v.end) for v in views] == [("chg1", 3, "no_taper", None)]
            assert len(views[0].curve) >= 39
    h.step()
    got = [(p.series.measurement, dict(p.series.tags), p.fields) for p in pts.got]
    assert [(m, f["ended"], f["flagged"]) for m, _, f in got] == [("charge_session", False, True),
                                                                  ("charge_session", True, True)]
    tags, fields = got[1][1], got[1][2]
    assert tags == {"site": SITE, "gateway": "gw-1", "device": "chg1", "port": "3", "shelter": "a",
                    "estate_zone": "north", "reason": "no_taper"}
    assert 88 * 60 <= fields["duration_s"] <= 92 * 60 and 0.45 < fields["energy_kwh"] < 0.6
    assert fields["peak_temp_c"] > 29 and fields["severe"] is False
    assert all(isinstance(v, float | bool) for v in fields.values()), "numbers as floats"
    views = h.sessions.view(SITE)
    assert views[0].end is not None, "the last session stays on the page after the bike left"
    assert h.snapshot()["errors"] == 0


def test_an_event_for_a_port_without_a_session_or_of_another_device_changes_nothing() -> None:
    h = HistoryService(clock=lambda: T0)
    pts = Points()
    h.bind(pts, lambda: DIRECTORY).step()
    sink = h.fan_out(Sink())
    for dev, data in (("chg1", {"reason": "no_taper", "index": 9}), ("spk1", {"reason": "x", "index": 1}),
                      ("chg1", {"index": "three"})):
        ev = wire.Event(ts=at(T0), seq=1, id="f" * 16, kind="abnormal_charge", data=data)
        sink.put(SafetyMessage(SITE, "gw-1", dev, wire.Kind.EVENT, ev, T0))
    h.step()
    assert pts.got == [] and h.snapshot()["errors"] == 0
