"""History across a takeover (issue 13 item 4): a parking stay or a charge session open when its
replica dies is recorded once, by the survivor, with its true start; one whose end the dead replica
had already saved is written again with the same series and timestamp (the store overwrites it),
never as a second, different stay. Rows that no longer fit the site file are ignored.

Replicas A and B: each a HistoryService attached to its own AlarmEngine, both on one store (an
SQLite file and a real PostgreSQL, `db_url`), a list as time-series storage; A is dropped without
saving anything beyond what it saved as it went."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert

from cloud.alarms.config import AlarmSiteConfig
from cloud.alarms.directory import StaticDirectory
from cloud.alarms.engine import AlarmEngine
from cloud.alarms.resume_store import resume_state
from cloud.alarms.store import AlarmStore
from cloud.history.service import HistoryService
from cloud.safety import SafetyMessage
from cloud.state.registry import DeviceEntry, Directory
from device_profiles import wire
from tests.unit.test_history_service import Clock, Points

T0 = 1_800_000_000.0
SITE = "demo"
DEVICES: list[dict[str, Any]] = [
    {"id": "bays", "profile": "parkhub-ph48", "gateway": "gw-2"},
    {"id": "chg1", "profile": "voltpile-cp10", "gateway": "gw-1"},
]
DIRECTORY = Directory(
    sites={SITE: False},
    gateways=frozenset({(SITE, "gw-1"), (SITE, "gw-2")}),
    devices={(SITE, d["id"]): DeviceEntry(SITE, d["id"], d["gateway"], d["profile"], {}, {}) for d in DEVICES},
    gateway_labels={},
)
ALL = lambda site, gw: True  # noqa: E731


def of(points: Points, measurement: str) -> list[tuple[tuple[tuple[str, str], ...], dict[str, Any], int]]:
    return [(p.series.tags, p.fields, p.ts_ms) for p in points.got if p.series.measurement == measurement]


class Replica:
    def __init__(self, url: str, clock: Clock) -> None:
        cfg = AlarmSiteConfig.model_validate({"site": SITE, "name": "D", "people": [],
                                              "gateway_offline": {"silence": 100_000}, "devices": DEVICES})
        self.store = AlarmStore(url)
        self.engine = AlarmEngine(self.store, StaticDirectory([cfg]), [cfg], clock=clock)
        self.clock = clock
        self.points = Points()
        self.history = HistoryService(period_s=300, clock=clock).attach(self.engine)
        self.history.bind(self.points, lambda: DIRECTORY).step()
        self.sink = self.history.fan_out(_Null())

    def tel(self, device: str, values: dict[str, Any], ts: float, seq: int) -> None:
        gw = "gw-2" if device == "bays" else "gw-1"
        self.clock.t = max(self.clock.t, ts)
        msg = wire.Telemetry(ts=datetime.fromtimestamp(ts, UTC), seq=seq, values=values)
        self.sink.put(SafetyMessage(SITE, gw, device, wire.Kind.TELEMETRY, msg, ts))
        self.history.step()

    def adopt(self, defer: bool = False) -> None:
        self.history.adopt(ALL, [], [], defer_resume=defer)

    def close(self) -> None:
        self.store.close()


class _Null:
    def put(self, msg: SafetyMessage) -> None:
        pass


def test_a_deferred_resume_goes_before_the_first_message_after_the_takeover(db_url: str) -> None:
    """A cluster's takeover leaves the stays to the history thread (`adopt(defer_resume=True)`); the
    bay's departure, the first message after the takeover, must find its stay resumed."""
    clock = Clock()
    a, b = Replica(db_url, clock), Replica(db_url, clock)
    a.tel("bays", {"bay.1.occupied": False, "bay.2.occupied": False}, T0, 1)
    a.tel("bays", {"bay.1.occupied": True}, T0 + 10, 2)  # arrival at +10; then a dies
    clock.t = T0 + 60
    b.adopt(defer=True)
    assert b.history.resumed["stays"] == 0  # not yet
    b.tel("bays", {"bay.1.occupied": False}, T0 + 100, 3)  # queued after the adopt; its step resumes first
    assert [(dict(tags)["bay"], f["dwell_s"], ts / 1000 - T0) for tags, f, ts in of(b.points, "parking_stay")] == [
        ("1", 90.0, 100.0)]
    assert b.history.resumed["stays"] == 1


@pytest.mark.parametrize("defer", [False, True], ids=["at-adopt", "deferred"])
def test_a_stay_open_at_the_takeover_is_recorded_once_with_its_true_arrival(db_url: str, defer: bool) -> None:
    """`defer`: as a cluster's takeover does it, the history thread resumes the stays at its next step,
    before the messages queued since."""
    clock = Clock()
    a, b = Replica(db_url, clock), Replica(db_url, clock)  # b started before a died: it knows nothing yet
    a.tel("bays", {"bay.1.occupied": False, "bay.2.occupied": False}, T0, 1)
    a.tel("bays", {"bay.1.occupied": True}, T0 + 10, 2)  # bay 1: arrival at +10
    a.tel("bays", {"bay.2.occupied": True}, T0 + 20, 3)
    a.tel("bays", {"bay.2.occupied": False}, T0 + 50, 4)  # bay 2: a stay a wrote itself
    assert [(f["dwell_s"], ts) for _, f, ts in of(a.points, "parking_stay")] == [(30.0, (T0 + 50) * 1000)]
    # a dies; b takes the gateway over
    clock.t = T0 + 60
    b.adopt(defer)
    if defer:
        assert b.history.resumed["stays"] == 0  # not yet: at the next step, before this message
        b.tel("bays", {"bay.2.occupied": False}, T0 + 50, 4)
    # bay 2's stay is given again: same series and timestamp as a's, so the store keeps one
    assert of(b.points, "parking_stay") == of(a.points, "parking_stay")
    # what a handled last comes again (not acknowledged), then the snapshot, then news
    b.tel("bays", {"bay.2.occupied": False}, T0 + 50, 4)
    b.tel("bays", {"bay.1.occupied": True, "bay.2.occupied": False}, T0 + 80, 5)
    b.tel("bays", {"bay.1.occupied": False}, T0 + 100, 6)  # bay 1 departs: 90 s since its arrival on a
    b.tel("bays", {"bay.1.occupied": False, "bay.2.occupied": False}, T0 + 120, 7)
    stays = sorted({(tags, f["dwell_s"], ts) for tags, f, ts in of(b.points, "parking_stay")})
    assert [(dict(tags)["bay"], dwell, ts / 1000 - T0) for tags, dwell, ts in stays] == [("1", 90.0, 100.0),
                                                                                         ("2", 30.0, 50.0)]
    assert b.history.resumed["stays"] == 1 and b.history.resumed["ignored"] == 0
    # and a restart of b (one machine) still knows bay 1 is free: its next arrival opens a stay
    clock.t = T0 + 200
    c = Replica(db_url, clock)
    c.tel("bays", {"bay.1.occupied": True}, T0 + 200, 8)
    c.tel("bays", {"bay.1.occupied": False}, T0 + 260, 9)
    # (its last departures, 10 min back at most, are written again at the start: the same points)
    assert [(f["dwell_s"], ts / 1000 - T0) for _, f, ts in of(c.points, "parking_stay")] == [(90.0, 100.0),
                                                                                           (30.0, 50.0),
                                                                                           (60.0, 260.0)]
    for r in (a, b, c):
        r.close()


def port3(t: float, amps: float, temp: float, state: str | None) -> dict[str, Any]:
    v: dict[str, Any] = {"ambient_temp": 20.0, "port.3.current": amps, "port.3.power": round(amps * 221),
                         "port.3.connector_temp": temp, "port.3.energy": round((t - T0) / 3600 * 0.35, 3),
                         "port.3.enabled": True}
    if state is not None:
        v["port.3.state"] = state
    return v


def charge(rep: Replica, minutes: range, with_state: bool = True) -> None:
    """A 90-minute charge on port 3 (one message a minute; flagged by the edge at minute 30)."""
    for minute in minutes:
        t = T0 + minute * 60
        charging = minute < 90
        v = port3(t, 1.6 if charging else 0.0, 20 + (8 if charging else 0) + minute * 0.02,
                  ("charging" if charging else "idle") if with_state or not charging else None)
        rep.tel("chg1", v, t, 2 * minute + 1)
        if minute == 30:
            ev = wire.Event(ts=datetime.fromtimestamp(t, UTC), seq=2 * minute + 2, id="e" * 16,
                            kind="abnormal_charge", severity="major", point="port.3.connector_temp", value=29.0,
                            data={"reason": "no_taper", "severe": False, "index": 3})
            rep.sink.put(SafetyMessage(SITE, "gw-1", "chg1", wire.Kind.EVENT, ev, t))
            rep.history.step()


def sessions(rep: Replica) -> list[tuple[dict[str, str], dict[str, Any], float]]:
    return [(dict(tags), f, ts / 1000) for tags, f, ts in of(rep.points, "charge_session")]


def test_a_charge_session_open_at_the_takeover_is_one_session_with_its_true_start(tmp_path: Path,
                                                                                   db_url: str) -> None:
    clock = Clock()
    ref = Replica(f"sqlite:///{tmp_path / 'ref.db'}", clock)
    charge(ref, range(0, 100))
    [flagged, ended] = sessions(ref)
    assert not flagged[1]["ended"] and ended[1]["ended"] and ended[0]["reason"] == "no_taper"
    clock.t = T0
    a, b = Replica(db_url, clock), Replica(db_url, clock)
    charge(a, range(0, 46))
    clock.t = T0 + 46 * 60 + 3
    b.adopt()
    assert b.history.resumed["sessions"] == 1
    # report by exception: the port's state is not sent again while it keeps charging
    charge(b, range(44, 100), with_state=False)  # a's last two minutes come again, then news
    [only] = sessions(b)
    assert only == ended, "the same session as without a takeover: start, energy, flag, end"
    assert 88 * 60 <= only[1]["duration_s"] <= 92 * 60
    for r in (ref, a, b):
        r.close()


def test_a_session_whose_end_the_dead_replica_saved_is_written_again_identically(db_url: str) -> None:
    clock = Clock()
    a, b = Replica(db_url, clock), Replica(db_url, clock)
    charge(a, range(0, 93))
    [_flagged, ended] = sessions(a)
    clock.t = T0 + 93 * 60
    b.adopt()
    assert sessions(b) == [ended]  # the same series and timestamp: the store overwrites, one session
    charge(b, range(92, 100))
    assert sessions(b) == [ended]
    for r in (a, b):
        r.close()


def test_saved_stays_and_sessions_that_no_longer_fit_the_site_file_are_ignored(db_url: str) -> None:
    clock = Clock()
    b = Replica(db_url, clock)
    rows = [
        ("stay", "gw-2", "gone/bay.1.occupied", '{"ts": 1, "occ": true, "since": 1}'),
        ("stay", "gw-1", "bays/bay.1.occupied", '{"ts": 1, "occ": true, "since": 1}'),  # moved gateway
        ("stay", "gw-2", "bays/bay.1.weight", '{"ts": 1, "occ": true, "since": 1}'),  # not a stay point
        ("stay", "gw-2", "bays/bay.2.occupied", '{"ts": "x", "occ": true}'),
        ("stay", "gw-2", "bays/bay.3.occupied", "[1, 2]"),
        ("session", "gw-1", "chg1/99", '{"start": 1}'),  # no such port
        ("session", "gw-1", "chg1/3", '{"start": "soon"}'),
        ("session", "gw-1", "chg1/x", "{}"),
        ("session", "gw-2", "bays/1", "{}"),  # not a charger
    ]
    with b.store.tx() as c:
        for kind, gw, key, data in rows:
            c.execute(insert(resume_state).values(kind=kind, site=SITE, gateway=gw, key=key, data=data))
    b.adopt()
    assert b.history.resumed == {"stays": 0, "sessions": 0, "reemitted": 0, "ignored": 8}
    assert b.history.stats.errors == 0
    b.tel("bays", {"bay.1.occupied": False}, T0 + 5, 1)
    b.tel("bays", {"bay.1.occupied": True}, T0 + 10, 2)
    b.tel("bays", {"bay.1.occupied": False}, T0 + 40, 3)
    assert [f["dwell_s"] for _, f, _ in of(b.points, "parking_stay")] == [30.0]
    b.close()
