"""Readings a dead owner had judged, delivered again to the survivor (issue: each alarm raised and
pushed exactly once across replicas; tests/integration/test_cluster_chaos.py `test_kill9_of_a_replica`
once had two waterflow rows in one flip).

A replica acknowledges a message only behind its durability point and saves its replay check a
second or two behind that (cloud/ingest/service.py), so a replica killed -9 leaves messages it had
already handed to its alarm engine unacknowledged and unknown to the replay check: the stream
delivers them to the survivor again, as news. The alarm rows they raised or cleared are committed;
the survivor must not judge them a second time (raise a cleared alarm again, clear the active
alarm a newer reading raised). An alarm the dead owner never raised is still raised.

Replica A judges until it "dies" (dropped, nothing saved); replica B, sharing the store, adopts its
gateway as cloud/cluster/replica.py does and gets A's last messages again. SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from cloud.alarms.directory import StaticDirectory
from cloud.alarms.engine import AlarmEngine
from cloud.alarms.store import AlarmStore
from cloud.safety import SafetyMessage
from device_profiles import wire
from tests.integration.test_alarm_engine import T0, Clock, site_cfg
from tests.integration.test_takeover_resume import ALL, MINE, NONE, wipe

SITE, GW, RISER = "demo", "gw-1", "riser-1"
KEY = f"{SITE}/{GW}/{RISER}/waterflow/"


class Replica:
    """An alarm engine on `url` owning `owns`; waterflow raised at once (as the chaos test's site)."""

    def __init__(self, url: str, clock: Clock, owns: Any) -> None:
        self.cfg = site_cfg(None, alarm_overrides=[{"rule": "waterflow", "for": 0}])
        self.store = AlarmStore(url)
        self.engine = AlarmEngine(self.store, StaticDirectory([self.cfg]), [self.cfg], clock=clock,
                                  restart_grace_s=0)
        self.engine.owns = owns
        self.clock = clock

    def feed(self, *msgs: SafetyMessage) -> None:
        for m in msgs:
            self.clock.t = max(self.clock.t, m.received)
            self.engine.process(m)
            self.engine.tick()

    def take_over(self) -> None:
        """What cloud/cluster/replica.py does at a takeover, in its order."""
        self.engine.adopt(MINE, rate_windows=False)
        self.engine.owns = ALL
        self.engine.adopt_rate_windows(MINE)

    def rows(self) -> list[Any]:
        return sorted((a for a in self.store.list_alarms() if a.rule == "waterflow"), key=lambda a: a.id)

    def close(self) -> None:
        self.store.close()


def event(seq: int, on: bool) -> SafetyMessage:
    """The edge's waterflow event (safety lane), as it sends one at each change of the input."""
    t = T0 + seq
    ev = wire.Event(ts=datetime.fromtimestamp(t, UTC), seq=seq, id=f"event-{seq:04d}", kind="state", point="waterflow",
                    value=on, text="water flowing" if on else "flow stopped", epoch="e1")
    return SafetyMessage(SITE, GW, RISER, wire.Kind.EVENT, ev, t)


def reading(seq: int, on: bool) -> SafetyMessage:
    """A telemetry sample of the same input (bulk lane)."""
    t = T0 + seq
    tel = wire.Telemetry(ts=datetime.fromtimestamp(t, UTC), seq=seq, values={"waterflow": on}, epoch="e1")
    return SafetyMessage(SITE, GW, RISER, wire.Kind.TELEMETRY, tel, t)


def pair(url: str) -> tuple[Clock, Replica, Replica]:
    wipe(url)
    clock = Clock()
    return clock, Replica(url, clock, MINE), Replica(url, clock, NONE)


def test_a_flip_the_dead_owner_raised_and_cleared_is_not_raised_again(db_url: str) -> None:
    """A raised and cleared the alarm of a flip and died before acknowledging it; B gets the flip's
    messages again, then a new flip: one row per flip."""
    _clock, a, b = pair(db_url)
    a.feed(reading(1, False), event(2, True), reading(3, True), event(4, False), reading(5, False))
    assert [r.active for r in a.rows()] == [False]
    b.take_over()
    b.feed(event(2, True), event(4, False))  # safety lane first (cloud/ingest/jetstream.py)
    b.feed(reading(1, False), reading(3, True), reading(5, False))
    assert [r.active for r in b.rows()] == [False], "the dead owner's flip was raised again"
    b.feed(event(6, True))
    rows = b.rows()
    assert [r.active for r in rows] == [False, True]
    assert rows[1].raised_at == b.clock.t
    a.close()
    b.close()


def test_an_alarm_the_dead_owner_raised_is_not_cleared_by_an_older_reading_again(db_url: str) -> None:
    """A judged a reading off, then the flip on (raised, pushed) and died: B gets A's unacknowledged
    messages again, the older "off" among them; the alarm stays the one row, active, and is cleared
    once by the flip's own end."""
    _clock, a, b = pair(db_url)
    a.feed(reading(1, False), event(2, True))
    assert [r.active for r in a.rows()] == [True]
    b.take_over()
    b.feed(reading(1, False), event(2, True), reading(3, True))
    rows = b.rows()
    assert [r.active for r in rows] == [True], "an older reading cleared the alarm, a replay raised it again"
    assert b.engine.active[KEY].id == rows[0].id
    b.feed(event(4, False))
    assert [r.active for r in b.rows()] == [False]
    a.close()
    b.close()


def test_an_alarm_the_dead_owner_never_raised_is_raised_by_the_survivor(db_url: str) -> None:
    """No loss: A had the "on" event in hand but died before judging it; B raises it from the copy."""
    _clock, a, b = pair(db_url)
    a.feed(reading(1, False))
    b.take_over()
    b.feed(event(2, True), reading(1, False))
    assert [r.active for r in b.rows()] == [True]
    a.close()
    b.close()


def test_a_restarted_engine_does_not_judge_its_own_last_messages_again(db_url: str) -> None:
    """One `cloud serve` killed and started again: the broker delivers what it had not acknowledged."""
    clock, a, _b = pair(db_url)
    a.engine.owns = ALL
    a.feed(event(2, True), event(4, False))
    a.close()
    again = Replica(db_url, clock, ALL)
    again.feed(event(2, True), reading(3, True), event(4, False))
    assert [r.active for r in again.rows()] == [False]
    again.close()
    _b.close()


def not_answering(seq: int) -> SafetyMessage:
    """The gateway's health report: the riser has not answered for 120 s (its offline rule: 60 s)."""
    t = T0 + seq
    h = wire.DeviceHealth(ts=datetime.fromtimestamp(t, UTC), seq=seq, online=False, polls=240, ok=0, timeouts=240,
                          last_ok=datetime.fromtimestamp(t - 120, UTC), detail="no answer", epoch="e1")
    return SafetyMessage(SITE, GW, RISER, wire.Kind.HEALTH, h, t)


def offline_rows(r: Replica) -> list[Any]:
    return sorted((a for a in r.store.list_alarms() if a.rule == "offline" and a.device == RISER),
                  key=lambda a: a.id)


def test_a_device_offline_the_dead_owner_raised_and_cleared_is_not_raised_again(db_url: str) -> None:
    """The device-offline alarm's mark is the device's message (cloud/alarms/engine.py DEVICE_MARK):
    A raised it from a health report and cleared it at the riser's next reading, then died before
    acknowledging either; B gets both again: no second row. A later silence is a new alarm."""
    _clock, a, b = pair(db_url)
    a.feed(not_answering(10), reading(11, False))
    assert [r.active for r in offline_rows(a)] == [False]
    b.take_over()
    b.feed(not_answering(10))  # health travels the safety lane: it comes again before the reading
    b.feed(reading(11, False))
    assert [r.active for r in offline_rows(b)] == [False], "the dead owner's offline alarm was raised again"
    b.feed(not_answering(12))
    assert [r.active for r in offline_rows(b)] == [False, True]
    b.feed(reading(13, False))
    assert [r.active for r in offline_rows(b)] == [False, False]
    a.close()
    b.close()


CHARGER = "charger-a"


def cut(seq: int, trip: str) -> SafetyMessage:
    """The edge cut a charger port (docs/wire.md, interlock event): one trip, re-asserted while hot."""
    t = T0 + seq
    ev = wire.Event(ts=datetime.fromtimestamp(t, UTC), seq=seq, id=f"cut-{seq:04d}", kind="interlock",
                    point="port.3.connector_temp", value=76.0, text="port_enable on port.3 switched off",
                    data={"rule": "port_overtemp", "command": "port_enable", "ok": True, "trip": trip}, epoch="e1")
    return SafetyMessage(SITE, GW, CHARGER, wire.Kind.EVENT, ev, t)


def interlock_rows(r: Replica) -> list[Any]:
    return sorted((a for a in r.store.list_alarms() if a.rule == "interlock"), key=lambda a: a.id)


def test_edge_actions_the_dead_owner_counted_are_not_counted_or_raised_again(db_url: str) -> None:
    """A raised the edge-action alarm of trip 1, counted its re-assert, superseded it by trip 2's cut
    (a new alarm, pushed) and died before acknowledging any of them. B gets all three again: without
    the event mark (cloud/alarms/engine.py EVENT_MARK) trip 1's cut superseded trip 2's alarm and
    raised and pushed a third, trip 2's a fourth. A new re-assert after that is counted once."""
    _clock, a, b = pair(db_url)
    a.feed(cut(20, "t1"), cut(21, "t1"), cut(22, "t2"))
    before = [(r.active, r.occurrences, r.detail.get("trip")) for r in interlock_rows(a)]
    assert before == [(False, 2, "t1"), (True, 1, "t2")]
    b.take_over()
    b.feed(cut(20, "t1"), cut(21, "t1"), cut(22, "t2"))
    after = [(r.active, r.occurrences, r.detail.get("trip")) for r in interlock_rows(b)]
    assert after == before, "the dead owner's edge actions were counted or raised again"
    b.feed(cut(23, "t2"))
    assert [(r.active, r.occurrences) for r in interlock_rows(b)] == [(False, 2), (True, 2)]
    a.close()
    b.close()


def status(connected: int, online: bool, received: int) -> SafetyMessage:
    """The gateway's birth or last will of the connection made at T0 + `connected` (docs/wire.md: a
    status's ts names its connection; the birth carries the same ts as that connection's will)."""
    st = wire.Status(ts=datetime.fromtimestamp(T0 + connected, UTC), state="online" if online else "offline",
                     reason="" if online else "connection lost")
    return SafetyMessage(SITE, GW, None, wire.Kind.STATUS, st, T0 + received)


def gateway_rows(r: Replica) -> list[Any]:
    return sorted((a for a in r.store.list_alarms() if a.rule == "gateway_offline"), key=lambda a: a.id)


def test_a_gateway_offline_the_dead_owner_raised_and_cleared_is_not_raised_again(db_url: str) -> None:
    """A judged the will of the gateway's connection made at 10 (raised, pushed) and the birth of its
    next one at 30 (cleared), then died: B gets both again and raises nothing; a will of the new
    connection is a new alarm."""
    _clock, a, b = pair(db_url)
    a.feed(status(10, True, 10), status(10, False, 20), status(30, True, 30))
    assert [r.active for r in gateway_rows(a)] == [False]
    b.take_over()
    b.feed(status(10, False, 31), status(30, True, 31))
    assert [r.active for r in gateway_rows(b)] == [False], "the dead owner's gateway offline was raised again"
    b.feed(status(30, False, 40))
    assert [r.active for r in gateway_rows(b)] == [False, True]
    a.close()
    b.close()


def test_a_gateway_offline_the_dead_owner_raised_stays_one_active_alarm(db_url: str) -> None:
    """A judged the birth and the will of one connection (raised, pushed) and died: B gets both again.
    The birth must not clear the alarm (a connection's will comes after its birth), the will must not
    raise another."""
    _clock, a, b = pair(db_url)
    a.feed(status(10, True, 10), status(10, False, 20))
    b.take_over()
    b.feed(status(10, True, 21), status(10, False, 21))
    rows = gateway_rows(b)
    assert [r.active for r in rows] == [True] and [e["action"] for e in b.store.audit_of(rows[0].id)] == ["raised"]
    a.close()
    b.close()


def test_a_stale_will_after_a_newer_birth_raises_nothing(db_url: str) -> None:
    """docs/wire.md: the status with the newest ts wins, so an older connection's will arriving late
    (a retained copy, a broker's late delivery) raises no gateway-offline alarm; the will of the
    connection that died wins over its own birth (same ts, arriving later)."""
    _clock, a, _b = pair(db_url)
    a.engine.owns = ALL
    a.feed(status(30, True, 30), status(10, False, 31))
    assert gateway_rows(a) == []
    a.feed(status(30, False, 40))
    assert [r.active for r in gateway_rows(a)] == [True]
    a.close()
    _b.close()


def test_a_will_with_a_future_time_does_not_mute_the_gateway(db_url: str) -> None:
    """A gateway whose clock ran an hour ahead, then was corrected: its earlier status must not make
    the corrected connection's will 'older' forever (a wrong clock may not mute an alarm)."""
    _clock, a, _b = pair(db_url)
    a.engine.owns = ALL
    a.feed(status(3600, True, 5))  # an hour in the future
    a.feed(status(20, True, 20), status(20, False, 30))  # the clock corrected, the connection lost
    assert [r.active for r in gateway_rows(a)] == [True]
    a.feed(status(3590, True, 3590))  # reconnected an hour later: newer than the wrong clock's status
    a.feed(status(3590, False, 3595))
    assert [r.active for r in gateway_rows(a)] == [False, True], "the wrong clock's status muted the gateway"
    a.close()
    _b.close()


def test_an_alarms_table_from_before_marks_gets_its_column(db_url: str) -> None:
    """A database written by an earlier version (no `mark` column) is brought up to date at open."""
    clock, a, b = pair(db_url)
    a.close()
    b.close()
    old = AlarmStore(db_url)
    with old.tx() as c:
        c.exec_driver_sql("ALTER TABLE alarms DROP COLUMN mark")
    old.close()
    rep = Replica(db_url, clock, ALL)
    rep.feed(event(2, True), event(4, False))
    assert [r.active for r in rep.rows()] == [False]
    ((site, gw, dev, mark),) = rep.store.transition_marks(0.0)
    assert (site, gw, dev) == (SITE, GW, RISER)
    assert json.loads(mark) == {"pid": "waterflow", "seq": 4, "ts": T0 + 4, "epoch": "e1"}  # the clear's
    rep.close()
