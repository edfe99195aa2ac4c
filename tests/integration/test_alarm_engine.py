"""The alarm engine on a real SQLite file, real apprise sends to a local HTTP receiver, and an
injected clock so retard delays, 8-hour rules and escalation minutes take milliseconds."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cloud.alarms.config import AlarmSiteConfig
from cloud.alarms.directory import StaticDirectory
from cloud.alarms.engine import GATEWAY_RULE, AlarmEngine
from cloud.alarms.store import AlarmStore
from cloud.notify.dispatch import AppriseSender, Dispatcher
from cloud.notify.links import AckSigner
from cloud.safety import SafetyMessage
from device_profiles import wire
from tests.fixtures.receivers import HttpReceiver

SECRET = "test-secret-0123456789abcdef"
T0 = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


def site_cfg(rec: HttpReceiver | None, **extra: Any) -> AlarmSiteConfig:
    url = rec.url if rec else (lambda p: f"json://127.0.0.1:9/{p}")
    data: dict[str, Any] = {
        "site": "demo",
        "name": "Maple Court",
        "name_zh": "枫林苑",
        "people": [
            {"id": "v1", "name": "V1", "tier": 1, "channels": [{"url": url("/v1")}]},
            {"id": "v2", "name": "V2", "tier": 1, "channels": [{"url": url("/v2")}]},
            {"id": "boss", "name": "B", "role": "manager", "tier": 2, "channels": [{"url": url("/boss")}]},
        ],
        "escalation": {
            "tiers": [{"tier": 1, "after": 0}, {"tier": 2, "after": 120}],
            "repeat": 300,
            "min_severity": "minor",
            "retry_delay": 0.05,
        },
        "gateway_offline": {"silence": 100_000},  # tests jump the clock; the silence test sets 45 s
        "devices": [
            {"id": "riser-1", "profile": "nanfang-fsm8", "gateway": "gw-1", "labels": {"shelter": "North"}},
            {"id": "charger-a", "profile": "voltpile-cp10", "gateway": "gw-1"},
            {
                "id": "bays",
                "profile": "parkhub-ph48",
                "gateway": "gw-2",
                "instance_labels": {7: {"fire_lane": "true"}},
            },
        ],
    }
    data.update(extra)
    return AlarmSiteConfig.model_validate(data)


class Rig:
    def __init__(
        self, tmp: Path, rec: HttpReceiver | None, clock: Clock, url: str | None = None, **extra: Any
    ) -> None:
        self.tmp, self.rec, self.clock, self.extra = tmp, rec, clock, extra
        self.url = url or f"sqlite:///{tmp / 'alarms.db'}"
        self.seq = 0
        self.open()

    def open(self) -> None:
        self.store = AlarmStore(self.url)
        self.cfg = site_cfg(self.rec, **self.extra)
        self.disp = Dispatcher(AppriseSender(), self.store.log_attempt) if self.rec else None
        self.engine = AlarmEngine(
            self.store,
            StaticDirectory([self.cfg]),
            [self.cfg],
            self.disp,
            AckSigner(SECRET),
            clock=self.clock,
        )

    def restart(self) -> None:
        if self.disp:
            self.disp.close()
        self.store.close()
        self.open()

    def close(self) -> None:
        if self.disp:
            self.disp.close()
        self.store.close()

    def msg(self, device: str | None, payload: Any, gateway: str = "gw-1") -> SafetyMessage:
        kind = {
            wire.Telemetry: wire.Kind.TELEMETRY,
            wire.Event: wire.Kind.EVENT,
            wire.Status: wire.Kind.STATUS,
            wire.DeviceHealth: wire.Kind.HEALTH,
        }[type(payload)]
        return SafetyMessage("demo", gateway, device, kind, payload, self.clock.t)

    def ts(self) -> datetime:
        return datetime.fromtimestamp(self.clock.t, UTC)

    def tel(
        self,
        device: str,
        values: dict[str, Any],
        gateway: str = "gw-1",
        seq: int | None = None,
        ts: datetime | None = None,
    ) -> SafetyMessage:
        self.seq += 1
        return self.msg(
            device,
            wire.Telemetry(ts=ts or self.ts(), seq=self.seq if seq is None else seq, values=values),
            gateway,
        )

    def feed(self, m: SafetyMessage) -> None:
        self.engine.process(m)
        self.engine.tick()

    def at(self, t: float) -> None:
        self.clock.t = T0 + t
        self.engine.tick()

    def alarms(self, rule: str | None = None) -> list[Any]:
        return [a for a in self.store.list_alarms() if rule is None or a.rule == rule]


@pytest.fixture
def rig(tmp_path: Path, http_receiver: HttpReceiver, db_url: str) -> Any:
    """Every rig test runs on SQLite and on PostgreSQL (`db_url` is parametrized)."""
    r = Rig(tmp_path, http_receiver, Clock(), db_url)
    yield r
    r.close()


def test_waterflow_retard_one_critical_alarm_pushed_to_tier1(rig: Rig) -> None:
    rig.feed(rig.tel("riser-1", {"waterflow": True}))
    rig.at(19.0)
    assert rig.alarms("waterflow") == []
    rig.feed(rig.tel("riser-1", {"waterflow": True}))
    rig.at(20.0)
    [a] = rig.alarms("waterflow")
    assert a.severity == "critical" and a.active and not a.acked and a.labels["shelter"] == "North"
    got = rig.rec.wait_for(lambda g: {r.path for r in g} >= {"/v1", "/v2"})  # type: ignore[union-attr]
    assert {r.path for r in got} == {"/v1", "/v2"}
    text = got[0].body["title"] + got[0].body["message"]
    assert "喷淋水流报警" in text and "Sprinkler waterflow" in text and "/ack/" in text and "North" in text
    rig.feed(rig.tel("riser-1", {"waterflow": False}))
    [a] = rig.alarms("waterflow")
    assert not a.active
    rig.rec.wait_for(lambda g: sum("RESOLVED" in r.body["title"] for r in g) == 2)  # type: ignore[union-attr]


def test_escalates_to_tier2_then_ack_stops_it(rig: Rig) -> None:
    rig.feed(rig.tel("riser-1", {"waterflow": True}))
    rig.at(20)
    rig.rec.wait_for(lambda g: len(g) == 2)  # type: ignore[union-attr]
    rig.at(139)
    rig.at(140)  # raised at 20 s, tier 2 after 120 s
    got = rig.rec.wait_for(lambda g: any(r.path == "/boss" for r in g))  # type: ignore[union-attr]
    assert sum("水流" in r.body["title"] for r in got) == 3
    [a] = rig.alarms("waterflow")
    assert a.tier == 2 and set(a.notified) == {"v1", "v2", "boss"}
    assert rig.engine.acknowledge(a.id, "v1", "api")
    rig.at(2000)
    import time

    time.sleep(0.3)
    assert sum("水流" in r.body["title"] for r in rig.rec.got) == 3  # type: ignore[union-attr]
    audit = [e["action"] for e in rig.store.audit_of(a.id)]
    assert audit == ["raised", "acknowledged"]


def test_unacknowledged_alarm_is_repeated(rig: Rig) -> None:
    rig.feed(
        rig.msg(
            "charger-a",
            wire.Event(
                ts=rig.ts(),
                seq=1,
                id="e" * 16,
                kind="interlock",
                point="port.3.connector_temp",
                text="port 3 switched off at 76 °C",
                data={"command": "port_enable", "value": False},
            ),
        )
    )
    rig.rec.wait_for(lambda g: len(g) == 2)  # type: ignore[union-attr]
    for t in (120, 420, 720):
        rig.at(t)
    got = rig.rec.wait_for(lambda g: sum("REMINDER" in r.body["title"] for r in g) >= 3)  # type: ignore[union-attr]
    assert sum(r.path == "/boss" for r in got) >= 1


def test_interlock_event_is_one_critical_alarm_with_what_the_edge_did(rig: Rig) -> None:
    ev = wire.Event(
        ts=rig.ts(),
        seq=5,
        id="a1b2c3d4e5f6",
        kind="interlock",
        point="port.3.connector_temp",
        value=76.5,
        text="port 3 switched off: connector 76.5 °C",
        data={"command": "port_enable"},
    )
    rig.feed(rig.msg("charger-a", ev))
    rig.feed(rig.msg("charger-a", ev))  # replay of the same event
    [a] = rig.alarms("interlock")
    assert a.severity == "critical" and a.instance == "3"
    assert a.detail["edge_action"] == "port 3 switched off: connector 76.5 °C"
    got = rig.rec.wait_for(lambda g: len(g) >= 2)  # type: ignore[union-attr]
    assert (
        "Edge action: port 3 switched off" in got[0].body["message"] and "充电口 3" in got[0].body["message"]
    )
    assert rig.engine.counters["replayed_events"] == 1


def test_abnormal_charge_event_is_one_warning_push_saying_what_was_seen(rig: Rig) -> None:
    """The edge's charge-session finding (docs/wire.md `abnormal_charge`) raises the profiles' event
    rule once per session (its severe finding, same `trip`, updates it); the push says in plain words,
    Chinese and English, what was seen and when the cut-off would come, and does not pretend the edge
    did something."""
    data = {"reason": "no_taper", "reasons": "no_taper,unexplained_heat", "severe": False, "excess_c": 6.3,
            "slope_c_per_min": 0.41, "temp_c": 41.2, "energy_kwh": 0.71, "eta_s": 1380, "index": 3,
            "trip": "3-1795996380"}
    first = wire.Event(ts=rig.ts(), seq=7, id="c" * 16, kind="abnormal_charge", severity="major",
                       point="port.3.connector_temp", value=41.2, text="port 3: ...", data=data)
    rig.feed(rig.msg("charger-a", first))
    severe = wire.Event(ts=rig.ts(), seq=8, id="d" * 16, kind="abnormal_charge", severity="critical",
                        point="port.3.connector_temp", value=48.0, data={**data, "severe": True})
    rig.feed(rig.msg("charger-a", severe))
    [a] = rig.alarms("abnormal_charge")
    assert a.severity == "major" and a.instance == "3" and a.active and a.occurrences == 2
    got = rig.rec.wait_for(lambda g: len(g) >= 2)  # type: ignore[union-attr]
    text = got[0].body["title"] + "\n" + got[0].body["message"]
    assert "充电异常预警" in text and "Abnormal charge" in text and "充电口 3" in text
    assert "充电电流一直不下降" in text and "约 23 分钟后达到断电温度" in text
    assert "Seen: the charge never tapers" in text and "about 23 min to the cut-off" in text
    assert "Edge action" not in text


def _cut(rig: Rig, trip: str, temp: float, n: int) -> wire.Event:
    return wire.Event(ts=rig.ts(), seq=100 + n, id=f"cut{n:013d}", kind="interlock", point="port.3.connector_temp",
                      value=temp, text=f"port_enable on port.3 switched off: port.3.connector_temp = {temp}",
                      data={"rule": "port_overtemp", "command": "port_enable", "ok": True, "trip": trip})


def test_repeated_interlock_same_trip_is_one_alarm_new_trip_is_pushed_again(rig: Rig) -> None:
    """The user's case: port 3 cut at 76 °C; the edge re-asserts while it stays hot (same trip: no
    new push); a manager switches it back on, it overheats again (new trip): a new alarm is pushed
    although nobody had resolved the first. After a person resolves it, the next cut starts over."""
    rec = rig.rec
    assert rec is not None

    def pushes() -> list[str]:
        return [r.body["title"] for r in rec.got if r.path == "/v1" and "Edge cut power" in r.body["title"]
                and r.body["title"].startswith("[火警")]  # the alarm pushes, not reminders or all-clears

    rig.feed(rig.msg("charger-a", _cut(rig, "trip-a", 76.0, 1)))
    rec.wait_for(lambda g: len(pushes()) == 1)
    rig.at(30)
    rig.feed(rig.msg("charger-a", _cut(rig, "trip-a", 75.5, 2)))  # re-assert: still hot
    [first] = rig.alarms("interlock")
    assert first.active and first.occurrences == 2 and "75.5" in first.detail["last_action"]
    assert rig.engine.acknowledge(first.id, "v1", "api")
    rig.at(600)  # cooled, switched back on by a manager, overheated again
    rig.feed(rig.msg("charger-a", _cut(rig, "trip-b", 77.0, 3)))
    rec.wait_for(lambda g: len(pushes()) == 2)
    old, new = sorted(rig.alarms("interlock"), key=lambda a: a.id)
    assert not old.active and old.id == first.id and new.active and not new.acked
    assert new.detail["previous_alarm"] == old.id and new.detail["occurrence"] == 2
    assert [e["action"] for e in rig.store.audit_of(old.id)] == ["raised", "repeated", "acknowledged", "superseded"]
    assert "×2" in pushes()[1]
    import time

    time.sleep(0.3)
    def all_clear(g: list[Any]) -> bool:
        return any("RESOLVED" in r.body["title"] and "Edge cut power" in r.body["title"] for r in g)

    assert not all_clear(rec.got), "superseded is not resolved: no all-clear push"
    assert rig.engine.resolve(new.id, "boss", "api", "connector replaced")
    rec.wait_for(all_clear)
    rig.at(900)
    rig.feed(rig.msg("charger-a", _cut(rig, "trip-c", 76.0, 4)))
    rec.wait_for(lambda g: len(pushes()) == 3)
    latest = max(rig.alarms("interlock"), key=lambda a: a.id)
    assert latest.active and "occurrence" not in latest.detail and "previous_alarm" not in latest.detail
    assert rig.store.get(new.id).resolved_by == "boss"  # type: ignore[union-attr]


def test_oscillating_temperature_one_alarm(rig: Rig) -> None:
    for i in range(200):
        rig.clock.t = T0 + i
        rig.feed(rig.tel("charger-a", {"port.2.connector_temp": 69.0 if i % 2 else 71.0}))
    assert rig.alarms("connector_overtemp") == []  # never held 5 s above 70
    for i in range(200, 400):
        rig.clock.t = T0 + i
        rig.feed(rig.tel("charger-a", {"port.2.connector_temp": 70.5 if i % 3 else 64.0}))
    alarms = rig.alarms("connector_overtemp")
    assert len(alarms) <= 1
    for i in range(400, 420):
        rig.clock.t = T0 + i
        rig.feed(rig.tel("charger-a", {"port.2.connector_temp": 72.0 + (i % 2)}))
    assert len(rig.alarms("connector_overtemp")) == 1


def test_200_concurrent_and_replayed_backlog_one_alarm(rig: Rig) -> None:
    rig.engine.start()
    try:
        msgs = [rig.tel("charger-a", {"smoke": True}) for _ in range(200)]
        threads = [threading.Thread(target=rig.engine.put, args=(m,)) for m in msgs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        rig.engine.drain()
        for m in msgs:  # the whole backlog again, as after a reconnect
            rig.engine.put(m)
        rig.engine.drain()
    finally:
        rig.engine.stop()
    assert len(rig.alarms("smoke")) == 1
    # a second engine on the same database (another replica) cannot add a second active one
    other = AlarmEngine(rig.store, StaticDirectory([rig.cfg]), [rig.cfg], None, None, clock=rig.clock)
    other.active.clear()
    other.process(rig.tel("charger-a", {"smoke": True}))
    assert len(rig.alarms("smoke")) == 1 and rig.alarms("smoke")[0].occurrences >= 2


def test_stale_backlog_does_not_drive_state(rig: Rig) -> None:
    """A backfilled backlog arrives after live data with lower seq numbers (docs/wire.md)."""
    rig.feed(rig.tel("riser-1", {"waterflow": False}, seq=100))
    old = rig.ts() - timedelta(minutes=30)
    rig.feed(rig.tel("riser-1", {"waterflow": True}, seq=40, ts=old))
    rig.at(100)
    assert rig.alarms("waterflow") == [] and rig.engine.counters["stale"] == 1


def test_composite_smoke_and_hot_cabinet(rig: Rig) -> None:
    rig.feed(rig.tel("charger-a", {"ambient_temp": 55.0}))
    rig.at(30)
    rig.feed(rig.tel("charger-a", {"ambient_temp": 55.0}))
    assert len(rig.alarms("cabinet_hot")) == 1 and rig.alarms("fire") == []
    rig.feed(rig.tel("charger-a", {"smoke": True}))
    [fire] = rig.alarms("fire")
    assert fire.active and fire.severity == "critical"
    rig.feed(rig.tel("charger-a", {"smoke": False}))
    assert not rig.alarms("fire")[0].active


def test_a_device_level_composite_is_not_copied_to_every_port(rig: Rig) -> None:
    """Fire (smoke + cabinet hot, both of the cabinet) is one alarm: port alarms raised while it is
    active (a hot cabinet heats every connector) must not raise a "fire" per port."""
    rig.feed(rig.tel("charger-a", {"ambient_temp": 55.0}))
    rig.at(30)
    rig.feed(rig.tel("charger-a", {"ambient_temp": 55.0, "smoke": True}))
    for t in (31, 37, 43):  # every port's connector heats fast: rate-of-rise alarms on ports 1..3
        rig.at(t)
        rig.feed(rig.tel("charger-a", {f"port.{p}.connector_temp": 30.0 + (t - 31) * 2 for p in (1, 2, 3)}))
    assert {a.instance for a in rig.alarms("connector_temp_rise")} == {"1", "2", "3"}
    assert [(a.instance, a.active) for a in rig.alarms("fire")] == [("", True)]


def test_gateway_offline_by_last_will_and_by_silence(tmp_path: Path, http_receiver: HttpReceiver) -> None:
    rig = Rig(tmp_path, http_receiver, Clock(), gateway_offline={"silence": 45})
    rig.feed(rig.msg(None, wire.last_will(rig.ts()), gateway="gw-2"))
    [a] = rig.alarms(GATEWAY_RULE)
    assert a.active and a.gateway == "gw-2" and "last will" in a.detail["reason"]
    rig.feed(rig.msg(None, wire.Status(ts=rig.ts(), state="online"), gateway="gw-2"))
    assert rig.alarms(GATEWAY_RULE)[0].active  # the dead connection's own birth, late (docs/wire.md)
    rig.clock.t += 2  # the gateway connects again: its birth names the new connection
    rig.feed(rig.msg(None, wire.Status(ts=rig.ts(), state="online"), gateway="gw-2"))
    assert not rig.alarms(GATEWAY_RULE)[0].active
    # silence: gw-1 keeps talking, gw-2 goes quiet → alarm after 45 s (< 60 s), not device storms
    for t in range(0, 61, 5):
        rig.clock.t = T0 + t
        rig.feed(rig.tel("riser-1", {"pipe_pressure": 3.0}))
    active = [a for a in rig.alarms(GATEWAY_RULE) if a.active]
    assert [a.gateway for a in active] == ["gw-2"]
    assert active[0].raised_at - T0 <= 60
    assert [a for a in rig.alarms("offline") if a.device == "bays"] == []
    rig.feed(rig.tel("bays", {"bay.7.occupied": False}, gateway="gw-2"))
    assert not any(a.active for a in rig.alarms(GATEWAY_RULE))
    rig.close()


def test_device_offline_from_health_and_silence(rig: Rig) -> None:
    rig.seq += 1  # one counter per device across telemetry, events and health
    rig.feed(rig.msg("riser-1", wire.DeviceHealth(ts=rig.ts(), seq=rig.seq, online=False, breaker="open")))
    assert [a.device for a in rig.alarms("offline") if a.active] == ["riser-1"]
    rig.feed(rig.tel("riser-1", {"pipe_pressure": 3.0}))
    assert not any(a.active for a in rig.alarms("offline"))
    for t in range(0, 70, 5):  # gateway alive (status), charger silent for > 60 s
        rig.clock.t = T0 + t
        rig.feed(rig.tel("riser-1", {"pipe_pressure": 3.0}))
    assert [a.device for a in rig.alarms("offline") if a.active and a.gateway == "gw-1"] == ["charger-a"]


def test_inspection_window_records_but_wakes_nobody(tmp_path: Path, http_receiver: HttpReceiver) -> None:
    start = datetime.fromtimestamp(T0 - 60, UTC)
    r = Rig(
        tmp_path,
        http_receiver,
        Clock(),
        inspection_windows=[
            {
                "start": start.isoformat(),
                "end": (start + timedelta(hours=1)).isoformat(),
                "reason": "NFPA 25 test",
            }
        ],
    )
    try:
        r.feed(r.tel("riser-1", {"waterflow": True}))
        r.at(25)
        [a] = r.alarms("waterflow")
        assert a.suppressed and "NFPA 25" in a.suppressed
        r.feed(r.tel("charger-a", {"smoke": True}))  # not a sprinkler alarm: still pushed
        got = http_receiver.wait_for(lambda g: len(g) >= 2)
        assert all("烟感" in g.body["title"] for g in got)
        r.at(1000)
        import time

        time.sleep(0.3)
        assert not any("水流" in g.body["title"] for g in http_receiver.got)
        assert "not-notified" in [e["action"] for e in r.store.audit_of(a.id)]
        r.at(3600)  # the window closed while water still flows: now people are woken
        http_receiver.wait_for(lambda g: any("水流" in x.body["title"] for x in g))
        assert "window-ended" in [e["action"] for e in r.store.audit_of(a.id)]
    finally:
        r.close()


def test_restart_in_the_middle_of_the_retard_fires_on_time(rig: Rig) -> None:
    rig.feed(rig.tel("riser-1", {"waterflow": True}))
    rig.at(12)  # 12 of 20 s elapsed
    rig.restart()
    rig.at(19.5)
    assert rig.alarms("waterflow") == []
    rig.at(20.0)  # no new message needed
    [a] = rig.alarms("waterflow")
    assert a.raised_at == T0 + 20


def test_restart_keeps_active_alarm_and_escalation(rig: Rig) -> None:
    rig.feed(rig.tel("charger-a", {"smoke": True}))
    rig.rec.wait_for(lambda g: len(g) == 2)  # type: ignore[union-attr]
    rig.restart()
    rig.feed(rig.tel("charger-a", {"smoke": True}))
    assert len(rig.alarms("smoke")) == 1
    rig.at(120)
    rig.rec.wait_for(lambda g: any(r.path == "/boss" for r in g))  # type: ignore[union-attr]


def test_long_charge_8h_and_site_override(tmp_path: Path) -> None:
    r = Rig(
        tmp_path,
        None,
        Clock(),
        alarm_overrides=[{"rule": "overcurrent", "device": "charger-a", "raise": 6.0, "clear": 5.0}],
    )
    try:
        r.feed(r.tel("charger-a", {"port.4.state": "charging"}))
        r.at(8 * 3600 - 1)
        assert r.alarms("long_charge") == []
        r.at(8 * 3600)
        [a] = r.alarms("long_charge")
        assert a.severity == "warning" and a.instance == "4"
        r.feed(r.tel("charger-a", {"port.1.current": 5.5}))
        r.at(8 * 3600 + 10)
        assert r.alarms("overcurrent") == []  # raised to 6.0 A for this device
    finally:
        r.close()


def test_fire_lane_only_for_tagged_bays(tmp_path: Path) -> None:
    r = Rig(tmp_path, None, Clock())
    try:
        r.feed(r.tel("bays", {"bay.7.occupied": True, "bay.8.occupied": True}, gateway="gw-2"))
        r.at(300)
        assert [(a.instance, a.severity) for a in r.alarms("fire_lane_blocked")] == [("7", "major")]
    finally:
        r.close()


def test_failed_channel_retries_then_falls_back(tmp_path: Path, http_receiver: HttpReceiver) -> None:
    http_receiver.fail_paths.add("/v1-primary")
    r = Rig(
        tmp_path,
        http_receiver,
        Clock(),
        people=[
            {
                "id": "v1",
                "name": "V1",
                "channels": [
                    {"url": http_receiver.url("/v1-primary")},
                    {"url": http_receiver.url("/v1-backup")},
                ],
            }
        ],
    )
    try:
        r.feed(r.tel("charger-a", {"smoke": True}))
        http_receiver.wait_for(lambda g: any(x.path == "/v1-backup" for x in g))
        [a] = r.alarms("smoke")
        import time

        time.sleep(0.1)
        log = [(x["attempt"], x["ok"]) for x in r.store.attempts(a.id)]
        assert log == [(1, False), (2, False), (3, False), (1, True)]
    finally:
        r.close()


def test_bad_input_never_kills_the_engine(rig: Rig) -> None:
    rig.feed(rig.tel("nope", {"x": 1}))
    rig.feed(rig.tel("charger-a", {"port.99.connector_temp": "hot", "smoke": "maybe", "unknown.point": 1}))
    assert rig.engine.counters["unknown_device"] == 1 and rig.alarms() == []


def test_rate_limited_channel_groups_a_burst(tmp_path: Path, http_receiver: HttpReceiver) -> None:
    """WeCom/DingTalk bots allow 20 messages a minute: a burst of alarms becomes few grouped
    messages instead of being dropped or delayed one by one (limit 3/min here, same mechanism)."""
    r = Rig(
        tmp_path,
        http_receiver,
        Clock(),
        people=[
            {"id": "v1", "name": "V1", "channels": [{"url": http_receiver.url("/bot"), "limit_per_min": 3}]}
        ],
    )
    try:
        for port in range(1, 11):
            r.feed(
                r.msg(
                    "charger-a",
                    wire.Event(
                        ts=r.ts(),
                        seq=port,
                        id=f"ev-{port:08d}",
                        kind="interlock",
                        point=f"port.{port}.connector_temp",
                        text=f"port {port} off",
                    ),
                )
            )
        got = http_receiver.wait_for(lambda g: sum(x.body["message"].count("Edge action") for x in g) == 10)
        assert len(got) <= 3
        assert any("条报警 alarms" in x.body["title"] for x in got)
        assert len(r.alarms("interlock")) == 10
    finally:
        r.close()


def test_comm_errors_from_device_health(rig: Rig) -> None:
    def health(polls: int, timeouts: int, crc: int) -> None:
        rig.seq += 1
        rig.feed(
            rig.msg(
                "riser-1",
                wire.DeviceHealth(
                    ts=rig.ts(),
                    seq=rig.seq,
                    online=True,
                    polls=polls,
                    ok=polls - timeouts - crc,
                    timeouts=timeouts,
                    crc_errors=crc,
                ),
            )
        )

    health(100, 0, 0)
    health(200, 10, 5)  # 15 % failed: below 20 %
    assert rig.alarms("comm_errors") == []
    health(300, 30, 10)  # 25 % of the last 100 polls failed
    [a] = rig.alarms("comm_errors")
    assert a.severity == "minor" and a.detail["crc_errors"] == 10
    health(400, 31, 11)
    assert not rig.alarms("comm_errors")[0].active


def test_sequence_gap_filled_by_backfill_is_not_a_loss(rig: Rig) -> None:
    for s in (1, 2, 3, 10, 11):
        rig.feed(rig.tel("riser-1", {"pipe_pressure": 3.0}, seq=s))
    assert rig.engine.seq_missing("demo", "gw-1", "riser-1") == 6
    old = rig.ts() - timedelta(minutes=5)
    for s in range(4, 9):  # the backlog arrives behind live data
        rig.feed(rig.tel("riser-1", {"pipe_pressure": 3.0}, seq=s, ts=old))
    assert rig.engine.seq_missing("demo", "gw-1", "riser-1") == 1  # seq 9 never came


def test_bad_override_keeps_the_profile_rule(tmp_path: Path) -> None:
    """A site file built without checks (load_site_alarms refuses it) still never loses the rule."""
    r = Rig(tmp_path, None, Clock(), alarm_overrides=[{"rule": "connector_overtemp", "clear": 90}])
    try:
        r.feed(r.tel("charger-a", {"port.1.connector_temp": 75.0}))
        r.at(5)
        assert len(r.alarms("connector_overtemp")) == 1 and r.engine.counters["errors"] == 1
    finally:
        r.close()
