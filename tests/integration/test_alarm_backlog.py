"""Issue 11: an alarm raised by telemetry behind a large held backlog is raised from the newest
readings, on their own times, including rate of rise (not timed).

The real engine on a real SQLite file behind the real PriorityGate, with the engine's worker held
back while tens of thousands of routine messages of other devices pile up, together with a charger
port's rise, the port's switch-off event that overtakes it (safety lane), and an older backlog of
the same charger backfilled after it. Before conflation and seq order, the engine judged the rise
at the time it got round to it (no rate: every sample at one instant; the duration not yet run) and
the switch-off event turned the older readings of the rise into history: no alarm at all.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cloud.alarms.config import AlarmSiteConfig
from cloud.alarms.directory import StaticDirectory
from cloud.alarms.engine import RATE_SAMPLES, AlarmEngine
from cloud.alarms.store import AlarmStore
from cloud.ingest.conflate import Conflator
from cloud.ingest.priority import PriorityGate
from cloud.safety import SafetyMessage
from device_profiles import wire

T0 = 1_800_000_000.0
OTHERS = 300  # other chargers on the site
PER_OTHER = 100  # routine messages each: 30,000 held in front of the engine


def at(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def tel(dev: str, seq: int, t: float, values: dict[str, wire.Scalar], received: float | None = None) -> SafetyMessage:
    """Telemetry read at `t`, received 50 ms later unless said otherwise (a backfilled backlog)."""
    p = wire.Telemetry(ts=at(t), seq=seq, values=values)
    return SafetyMessage("fleet", "gw-1", dev, wire.Kind.TELEMETRY, p, t + 0.05 if received is None else received)


def test_alarm_behind_a_large_held_backlog_is_raised_from_the_newest_readings(tmp_path: Path) -> None:
    others = [f"c{i:03d}" for i in range(OTHERS)]
    cfg = AlarmSiteConfig.model_validate({
        "site": "fleet", "name": "Fleet",
        "devices": [{"id": d, "profile": "voltpile-cp10", "gateway": "gw-1"} for d in [*others, "hot"]],
    })
    now = [T0 + 100.0]  # the engine gets round to it all 3 s after the last reading of the rise
    store = AlarmStore(f"sqlite:///{tmp_path / 'alarms.db'}")
    engine = AlarmEngine(store, StaticDirectory([cfg]), [cfg], clock=lambda: now[0], restart_grace_s=1e6)
    # wired as in `cloud serve`; the engine's worker is not running yet
    gate = PriorityGate(engine, max_ahead=8, depths=engine.point_depths).start()
    try:
        puts = []
        for k in range(PER_OTHER):  # routine traffic of the other chargers over 100 s
            for i, d in enumerate(others):
                puts.append(tel(d, k, T0 + k + i / 1000,
                                {f"port.{1 + k % 10}.connector_temp": 25.0 + (k % 3) / 10, "port.2.current": 1.6,
                                 "port.2.voltage": 228.0}))
        # The hot charger: live readings 1..20 (port 3 at 25 °C), then the rise at 4 °C/s from T0+80.
        hot = [tel("hot", s, T0 + s, {"port.3.connector_temp": 25.0, "port.3.state": "charging"}) for s in range(1, 21)]
        rise = [tel("hot", 41 + i, T0 + 80 + i, {"port.3.connector_temp": 30.0 + 4 * i, "port.3.state": "charging"})
                for i in range(17)]  # 30 → 94 °C, one reading a second
        # The edge switches the port off; its state event overtakes the held readings (safety lane).
        off = wire.Event(ts=at(T0 + 97), seq=58, id=wire.new_id(), kind="state", point="port.3.state",
                         value="disabled", previous="charging")
        # After that, the backlog the gateway had not sent (seq 21..40) is backfilled: older readings.
        backfill = [tel("hot", s, T0 + s, {"port.3.connector_temp": 25.0}, received=T0 + 98) for s in range(21, 41)]
        for j, m in enumerate(puts):
            gate.put(m)
            if j == len(puts) // 2:
                for h in hot:
                    gate.put(h)
        for m in rise:
            gate.put(m)
        gate.put(SafetyMessage("fleet", "gw-1", "hot", wire.Kind.EVENT, off, T0 + 97.05))
        for m in backfill:
            gate.put(m)

        st = gate.stats()
        assert st["routine"] == OTHERS * PER_OTHER + 20 + 17 + 20
        assert st["held_devices"] <= OTHERS + 1  # one entry per device, whatever was sent
        assert gate.qsize() <= OTHERS + 1 + 8 + 1

        older = gate.stats()["older"]  # backfilled samples older than the held ones: not even held
        engine.start()
        assert gate.drain(60)
        engine.drain(30)
        engine.tick()
    finally:
        gate.stop(10)
        engine.stop()
    alarms = {a.rule: a for a in store.list_alarms(active=True) if a.device == "hot"}
    assert set(alarms) == {"connector_overtemp", "connector_temp_rise"}, store.list_alarms()
    over, rise_a = alarms["connector_overtemp"], alarms["connector_temp_rise"]
    assert over.instance == rise_a.instance == "3"
    # Raised inside the held readings, on their own times: ≥ 70 °C from T0+90, held 5 s → the
    # reading of T0+95 (90 °C) raises it, though the engine saw them all at once at T0+100.
    assert over.value == 90.0
    # Rate of rise on the readings' own 1 s spacing, as soon as the window spans 5 s of the rise.
    assert rise_a.value is not None and 30.0 < rise_a.value <= 54.0
    # The switch-off event is applied; the older port-state readings it overtook are history, and
    # so is the backfilled backlog (the gate did not even hold it): neither touched the alarms.
    assert older == 20 and engine.counters["stale"] >= 16
    assert not any(a.device in others for a in store.list_alarms())
    # What the engine told the gate to hold from now on: a window of a rate point, the start and
    # the newest of a threshold point, nothing of a point no rule reads.
    assert engine.point_depths[("fleet", "gw-1", "c000")] == {
        **{f"port.{p}.connector_temp": RATE_SAMPLES for p in range(1, 11)}, "port.2.current": 2,
        "port.2.voltage": 0}
    store.close()


# ---------------------------------------------------------------------------------------------
# Order and time on the engine alone (SQLite, injected clock): no stamp and no reordering may make
# later good readings history or an absent device look alive.

def rig_at(tmp_path: Path) -> Any:
    from tests.integration.test_alarm_engine import Clock, Rig

    return Rig(tmp_path, None, Clock(), gateway_offline={"silence": 45})


def sm(rig: Any, device: str | None, payload: Any, received: float) -> SafetyMessage:
    kind = {wire.Telemetry: wire.Kind.TELEMETRY, wire.Event: wire.Kind.EVENT, wire.Status: wire.Kind.STATUS,
            wire.DeviceHealth: wire.Kind.HEALTH}[type(payload)]
    return SafetyMessage("demo", "gw-1", device, kind, payload, received)


@pytest.mark.parametrize("bogus", [datetime(2099, 1, 1, tzinfo=UTC), datetime(1970, 1, 1, tzinfo=UTC)])
@pytest.mark.parametrize("first", ["telemetry", "state event"])
def test_no_timestamp_makes_later_good_readings_history(tmp_path: Path, bogus: datetime, first: str) -> None:
    rig = rig_at(tmp_path)
    try:
        if first == "telemetry":
            rig.feed(rig.tel("charger-a", {"smoke": False}, seq=1, ts=bogus))
        else:
            ev = wire.Event(ts=bogus, seq=1, id=wire.new_id(), kind="state", point="smoke", value=False)
            rig.feed(rig.msg("charger-a", ev))
        rig.at(1)
        rig.feed(rig.tel("charger-a", {"smoke": True}, seq=2))
        [a] = rig.alarms("smoke")
        assert a.active
    finally:
        rig.close()


def test_a_restarted_counter_is_not_history(tmp_path: Path) -> None:
    """A wiped outbox or a replaced gateway counts from 1 again; its readings are later by ts."""
    rig = rig_at(tmp_path)
    try:
        rig.feed(rig.tel("charger-a", {"smoke": False}, seq=48_000))
        rig.at(60)
        rig.feed(rig.tel("charger-a", {"smoke": True}, seq=1))
        assert [a.active for a in rig.alarms("smoke")] == [True]
    finally:
        rig.close()


def test_an_edge_restarted_with_a_wiped_outbox_still_raises_alarms(tmp_path: Path) -> None:
    """The outbox is wiped: a new epoch, seq back to 1 (docs/wire.md), and the restarted gateway's
    clock is a minute slow (inside the time policy, so not rebased): no ts says it restarted. Its
    messages are new all the same, merged by the gate's conflation as in `cloud serve` or alone."""
    rig = rig_at(tmp_path)
    held = Conflator()
    t0 = rig.clock.t
    try:
        for seq in (47_999, 48_000):
            held.add(sm(rig, "charger-a", wire.Telemetry(ts=at(t0), seq=seq, epoch="e1", values={"smoke": False}), t0))
        rig.feed(held.take())
        rig.at(30)
        slow = at(rig.clock.t - 60)
        for seq in (1, 2):  # merged while they waited for the engine
            held.add(sm(rig, "charger-a", wire.Telemetry(ts=slow, seq=seq, epoch="e2", values={"smoke": seq == 2}),
                        rig.clock.t))
        rig.feed(held.take())
        assert [a.active for a in rig.alarms("smoke")] == [True]
        ev = wire.Event(ts=slow, seq=3, epoch="e2", id=wire.new_id(), kind="state", point="smoke", value=False)
        rig.feed(sm(rig, "charger-a", ev, rig.clock.t))  # seq 3 of the new epoch: newer than 2, clears it
        assert [a.active for a in rig.alarms("smoke")] == [False]
        assert rig.engine.seq_missing("demo", "gw-1", "charger-a") == 0  # the old epoch's count is done
    finally:
        rig.close()


def test_a_rebased_reading_merged_by_the_gate_still_raises_gateway_clock(tmp_path: Path) -> None:
    """Wired as in `cloud serve`: the ingester's time policy rebases a reading stamped an hour
    ahead and hands the gateway's skew on with it; the gate merges it with the device's readings
    around it, and the engine still raises `gateway_clock` from the merged entry."""
    from cloud.ingest.dead_letter import DeadLetterStore
    from cloud.ingest.pipeline import Pipeline
    from tests.unit.ingest_env import ListStorage, make_pipeline

    _, _, _, reg = make_pipeline()
    store = AlarmStore(f"sqlite:///{tmp_path / 'alarms.db'}")
    engine = AlarmEngine(store, StaticDirectory([]), [])
    gate = PriorityGate(engine, depths=engine.point_depths)  # its feeder starts once all are held
    pipe = Pipeline(reg.directory(), DeadLetterStore(None), gate, ListStorage())
    topic = "sw/v1/demo-estate/gw-shelter-a/chg1/telemetry"
    now = time.time()
    try:
        for seq, ts in ((1, now - 1.0), (2, now + 3600.0), (3, now)):
            msg = wire.Telemetry(ts=at(ts), seq=seq, values={"port.3.connector_temp": 30.0 + seq})
            assert pipe.handle(topic, wire.encode(msg), now + 0.01) == "ok"
        assert gate.stats()["merged"] == 2
        engine.start()
        gate.start()
        assert gate.drain(10)
        engine.drain(10)
        [a] = [a for a in store.list_alarms(active=True) if a.rule == "gateway_clock"]
        assert a.gateway == "gw-shelter-a" and a.value is not None and 3590 < a.value < 3600
        assert engine.counters["messages"] == 1  # the three readings reached it as one
    finally:
        gate.stop(5)
        engine.stop()
        store.close()


def test_an_implausible_stamp_never_shortens_a_duration(tmp_path: Path) -> None:
    """Port overheating needs 5 s above 70 °C. Readings stamped 1970 are judged at their receive
    time, so a single reading does not raise it, and 5 s of them do."""
    rig = rig_at(tmp_path)
    old = datetime(1970, 1, 1, tzinfo=UTC)
    try:
        for t in (0, 2, 4):
            rig.at(t)
            rig.feed(rig.tel("charger-a", {"port.3.connector_temp": 72.0}, ts=old))
        rig.at(4.9)
        assert rig.alarms("connector_overtemp") == []
        rig.at(5.0)
        assert [a.instance for a in rig.alarms("connector_overtemp")] == ["3"]
    finally:
        rig.close()


def test_a_takeovers_backlog_is_judged_at_its_readings_times(tmp_path: Path) -> None:
    """A replica that takes a gateway over reads the outage's telemetry 6-15 s after it was taken
    (the lease's 6 s, a renewal round, then the backlog; bench/cluster.py). Port overheating needs 5 s
    above 70 °C: readings taken at +0 and +6 s and read at +15 s raise it at once, not 5 s later."""
    rig = rig_at(tmp_path)
    t0 = rig.clock.t
    try:
        rig.at(15)
        rig.feed(rig.tel("charger-a", {"port.3.connector_temp": 72.0}, ts=at(t0)))
        rig.feed(rig.tel("charger-a", {"port.3.connector_temp": 72.5}, ts=at(t0 + 6)))
        assert [a.instance for a in rig.alarms("connector_overtemp")] == ["3"]
    finally:
        rig.close()


def test_urgent_telemetry_raises_ahead_of_the_backlog_it_overtook(tmp_path: Path) -> None:
    """A takeover as it looks with urgent telemetry (docs/wire.md): the port's crossing of 70 °C
    (seq 5, taken at +0) arrives on the safety lane at +7 s, ahead of the bulk backlog; the hold
    (5 s) has run on the edge's clock, so it raises at once. The backlog read afterwards (seq 1-4
    below the limit, 6-7 still above) neither cancels nor raises it again."""
    rig = rig_at(tmp_path)
    t0 = rig.clock.t
    try:
        rig.at(7)
        u = rig.tel("charger-a", {"port.3.connector_temp": 71.2}, seq=5, ts=at(t0))
        rig.feed(SafetyMessage(u.site, u.gateway, u.device, wire.Kind.URGENT, u.payload, u.received))
        assert [a.instance for a in rig.alarms("connector_overtemp")] == ["3"]
        for seq in range(1, 5):
            rig.feed(rig.tel("charger-a", {"port.3.connector_temp": 64.0 + seq}, seq=seq, ts=at(t0 - 5 + seq)))
        for seq in (6, 7):
            rig.feed(rig.tel("charger-a", {"port.3.connector_temp": 72.0}, seq=seq, ts=at(t0 + seq - 4)))
        (a,) = rig.alarms("connector_overtemp")
        assert a.active and a.occurrences == 1
    finally:
        rig.close()


def test_a_rise_overtaken_by_its_urgent_reading_still_raises_the_rate_of_rise(tmp_path: Path) -> None:
    """The urgent reading of a runaway port (71 °C, seq 6) reaches the engine before the rise's routine
    readings (seq 2-5) that the main lane still carried: they are history for the port's state, but
    the rate of rise ("Charging port heating fast", 8 °C/min) is judged with them. Before, they were
    dropped, and the port's first reading alone showed no rate: no alarm until more readings came."""
    rig = rig_at(tmp_path)
    t0 = rig.clock.t
    try:
        rig.at(11)
        u = rig.tel("charger-a", {"port.3.connector_temp": 71.0}, seq=6, ts=at(t0 + 10))
        rig.feed(SafetyMessage(u.site, u.gateway, u.device, wire.Kind.URGENT, u.payload, u.received))
        assert not rig.alarms("connector_temp_rise")
        for seq, (dt, temp) in enumerate([(2, 39.0), (4, 47.0), (6, 55.0), (8, 63.0)], start=2):
            rig.feed(rig.tel("charger-a", {"port.3.connector_temp": temp}, seq=seq, ts=at(t0 + dt)))
        assert [a.instance for a in rig.alarms("connector_temp_rise")] == ["3"]
        assert rig.engine.counters["stale"] >= 4  # history for the port's state all the same
    finally:
        rig.close()


def test_telemetry_older_than_a_not_answering_report_does_not_clear_it(tmp_path: Path) -> None:
    rig = rig_at(tmp_path)
    t0 = rig.clock.t
    try:
        rig.feed(sm(rig, "riser-1", wire.DeviceHealth(ts=at(t0), seq=10, online=False, breaker="open"), t0))
        assert [a.active for a in rig.alarms("offline")] == [True]
        # held in front of the engine: received before the report, processed after it
        rig.feed(sm(rig, "riser-1", wire.Telemetry(ts=at(t0 - 1), seq=9, values={"pipe_pressure": 3.0}), t0 - 0.9))
        assert [a.active for a in rig.alarms("offline")] == [True]
        rig.at(3)
        rig.feed(rig.tel("riser-1", {"pipe_pressure": 3.0}, seq=11))  # the device answers again
        assert [a.active for a in rig.alarms("offline")] == [False]
    finally:
        rig.close()


def test_a_will_is_not_cleared_by_a_message_received_before_it(tmp_path: Path) -> None:
    rig = rig_at(tmp_path)
    t0 = rig.clock.t
    try:
        rig.at(1)
        rig.feed(sm(rig, None, wire.last_will(at(t0)), t0 + 1))
        rig.feed(sm(rig, "riser-1", wire.Telemetry(ts=at(t0 + 0.4), seq=5, values={"pipe_pressure": 3.0}), t0 + 0.5))
        assert [a.active for a in rig.alarms("gateway_offline")] == [True]
        rig.at(2)
        rig.feed(rig.tel("riser-1", {"pipe_pressure": 3.0}, seq=6))
        assert [a.active for a in rig.alarms("gateway_offline")] == [False]
    finally:
        rig.close()


def test_silence_runs_from_when_a_message_was_received(tmp_path: Path) -> None:
    """A reading the engine gets round to late does not make its device look alive longer."""
    rig = rig_at(tmp_path)
    t0 = rig.clock.t
    try:
        rig.engine._quiet_until = 0.0  # no restart grace in this test
        rig.at(30)  # processed 20 s after it was received
        rig.feed(sm(rig, "riser-1", wire.Telemetry(ts=at(t0 + 10), seq=1, values={"pipe_pressure": 3.0}), t0 + 10))
        assert rig.engine.seen_dev[("demo", "gw-1", "riser-1")] == t0 + 10
        for t in (50, 70):  # the gateway itself keeps talking
            rig.at(t)
            rig.feed(rig.tel("charger-a", {"smoke": False}))
        rig.at(71)  # riser-1 silent for 61 s since it was heard (its rule: 60 s; checked every 1 s)
        assert [a.device for a in rig.alarms("offline") if a.active and a.device == "riser-1"] == ["riser-1"]
    finally:
        rig.close()


def test_a_health_report_does_not_make_a_quiet_device_look_alive(tmp_path: Path) -> None:
    """Device health (online: true, sent before the edge's breaker opened) says when the device
    last answered: silence runs from there, not from the report's arrival."""
    rig = rig_at(tmp_path)
    t0 = rig.clock.t
    try:
        rig.engine._quiet_until = 0.0
        rig.feed(rig.tel("riser-1", {"pipe_pressure": 3.0}, seq=1))  # the last reading, at t0
        for t in (5, 30, 55):  # the gateway reports on: the device has not answered since t0
            rig.at(t)
            h = wire.DeviceHealth(ts=rig.ts(), seq=1 + t, online=True, last_ok=at(t0), polls=t, ok=1)
            rig.feed(rig.msg("riser-1", h))
        assert rig.engine.seen_dev[("demo", "gw-1", "riser-1")] == t0
        rig.at(61)
        assert [a.device for a in rig.alarms("offline") if a.active and a.device == "riser-1"] == ["riser-1"]
    finally:
        rig.close()
