"""Offline detection across engine restarts and replicas, on SQLite and PostgreSQL (`db_url`).

Last-seen times live in the alarm store, so silence is judged from the last real message, not from
the restart; two replicas on one PostgreSQL database still make one alarm per (device, rule).
The engine's injected clock makes a minute of silence take milliseconds.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

from cloud.alarms.directory import StaticDirectory
from cloud.alarms.engine import GATEWAY_RULE, AlarmEngine
from cloud.alarms.store import AlarmStore
from device_profiles import wire
from tests.integration.test_alarm_engine import T0, Clock, Rig


def active(rig: Rig, rule: str, device: str | None = None) -> list[Any]:
    return [a for a in rig.alarms(rule) if a.active and (device is None or a.device == device)]


def run(rig: Rig, start: float, end: float, step: float = 0.5, talk: tuple[str, ...] = ("riser-1",)) -> None:
    """Advance the clock; the listed gw-1 devices send telemetry every 5 s (gw-1 stays alive)."""
    t = start
    while t <= end + 1e-9:
        rig.clock.t = T0 + t
        if abs(t / 5 - round(t / 5)) < 1e-9:
            for dev in talk:
                rig.engine.process(rig.tel(dev, {"pipe_pressure": 3.0} if dev == "riser-1" else {"smoke": False}))
        rig.engine.tick()
        t += step


def everyone_talks(rig: Rig, t: float) -> None:
    """All devices speak at t; the engine's tick writes last-seen down within `seen_flush_s` (5 s)."""
    rig.clock.t = T0 + t
    rig.feed(rig.tel("riser-1", {"pipe_pressure": 3.0}))
    rig.feed(rig.tel("charger-a", {"smoke": False}))
    rig.feed(rig.tel("bays", {"bay.7.occupied": False}, gateway="gw-2"))
    rig.at(t + 5)


def restart_at(rig: Rig, t: float) -> None:
    rig.clock.t = T0 + t
    rig.restart()


def test_restart_in_the_middle_of_a_silence_fires_at_last_seen_plus_silence(
    tmp_path: Path, db_url: str
) -> None:
    rig = Rig(tmp_path, None, Clock(), db_url, gateway_offline={"silence": 45})
    try:
        everyone_talks(rig, 10)  # gw-2's last word; the tick at 10 s writes it down
        restart_at(rig, 30)
        run(rig, 30, 55)
        assert active(rig, GATEWAY_RULE) == []
        run(rig, 55.5, 60)
        [a] = active(rig, GATEWAY_RULE)
        assert a.gateway == "gw-2" and T0 + 55 < a.raised_at <= T0 + 56.5  # not 30 + 45 = 75
        assert active(rig, "offline") == []  # the gateway alarm says it; no device storm
    finally:
        rig.close()


def test_gateway_that_died_while_the_cloud_was_down_is_reported_after_the_grace(
    tmp_path: Path, db_url: str
) -> None:
    """Down from 15 s to 200 s: gw-1 speaks again at once, gw-2 never does. Live gateways get the
    15 s restart grace to be heard (no alarm storm after an outage); gw-2 is reported right after."""
    rig = Rig(tmp_path, None, Clock(), db_url, gateway_offline={"silence": 45})
    try:
        everyone_talks(rig, 10)
        restart_at(rig, 200)
        run(rig, 200, 214.5)
        assert active(rig, GATEWAY_RULE) == []
        run(rig, 215, 216)
        [a] = active(rig, GATEWAY_RULE)
        assert a.gateway == "gw-2" and a.raised_at == T0 + 215 and "205 s" in a.detail["reason"]
    finally:
        rig.close()


def test_gateway_seen_again_after_restart_never_raises_and_clears(tmp_path: Path, db_url: str) -> None:
    rig = Rig(tmp_path, None, Clock(), db_url, gateway_offline={"silence": 45})
    try:
        everyone_talks(rig, 10)
        restart_at(rig, 30)
        rig.clock.t = T0 + 40
        rig.feed(rig.tel("bays", {"bay.7.occupied": False}, gateway="gw-2"))
        run(rig, 40, 84)  # 40 + 45 = 85: still within the silence
        assert rig.alarms(GATEWAY_RULE) == []
        run(rig, 84.5, 87)
        [a] = active(rig, GATEWAY_RULE)  # silent again since 40 s: raised once more, from 40 s
        restart_at(rig, 90)  # the active alarm survives the restart
        rig.clock.t = T0 + 91
        rig.feed(rig.tel("bays", {"bay.7.occupied": True}, gateway="gw-2"))
        assert active(rig, GATEWAY_RULE) == [] and len(rig.alarms(GATEWAY_RULE)) == 1
        assert rig.alarms(GATEWAY_RULE)[0].id == a.id
    finally:
        rig.close()


def test_device_silence_survives_restart(tmp_path: Path, db_url: str) -> None:
    rig = Rig(tmp_path, None, Clock(), db_url)  # gateway silence 100 000 s: device rules only
    try:
        everyone_talks(rig, 10)  # charger-a's last word (offline rule: 60 s)
        restart_at(rig, 30)
        run(rig, 30, 70)  # riser-1 keeps talking; charger-a silent since 10 s
        assert active(rig, "offline") == []
        run(rig, 70.5, 72)
        offline = {a.device: a.raised_at for a in active(rig, "offline")}
        assert set(offline) == {"charger-a", "bays"} and T0 + 70 < offline["charger-a"] <= T0 + 71.5
    finally:
        rig.close()


def test_devices_the_store_never_saw_start_their_silence_at_start(tmp_path: Path, db_url: str) -> None:
    rig = Rig(tmp_path, None, Clock(), db_url)
    try:
        rig.at(0)  # a first run that hears nothing: the directory's devices are silent from 0 s
        devices = [*rig.cfg.model_dump(by_alias=True)["devices"], {"id": "charger-b", "profile": "voltpile-cp10",
                                                                  "gateway": "gw-1"}]
        rig.extra["devices"] = devices  # charger-b joins the site file while the cloud is down
        restart_at(rig, 500)
        run(rig, 500, 515, talk=())
        assert {a.device for a in active(rig, "offline")} == {"riser-1", "charger-a", "bays"}
        assert rig.store.load_seen()[("demo", "gw-1", "riser-1")] == T0  # kept across the restart
        run(rig, 515.5, 559.5, talk=())
        assert "charger-b" not in {a.device for a in active(rig, "offline")}
        run(rig, 560, 562, talk=())  # never seen at all: silent from the restart (500 s) + 60 s
        [b] = [a for a in active(rig, "offline") if a.device == "charger-b"]
        assert T0 + 560 < b.raised_at <= T0 + 561.5
    finally:
        rig.close()


def test_health_offline_with_recent_last_ok_waits_for_the_rule_duration(tmp_path: Path, db_url: str) -> None:
    """A breaker that opened 5 s after the last good poll: the 60 s offline rule fires 60 s after that
    poll, not at once (a short blip is no alarm); answering again clears it."""
    rig = Rig(tmp_path, None, Clock(), db_url)
    try:
        def health(online: bool, last_ok_ago: float | None) -> None:
            rig.seq += 1
            ts = rig.ts()
            rig.feed(rig.msg("charger-a", wire.DeviceHealth(
                ts=ts, seq=rig.seq, online=online, breaker="closed" if online else "open",
                last_ok=ts - timedelta(seconds=last_ok_ago) if last_ok_ago is not None else None,
            )))

        rig.clock.t = T0 + 100
        health(False, 5)  # last good poll at 95 s
        assert active(rig, "offline", "charger-a") == []
        run(rig, 100, 154)
        assert active(rig, "offline", "charger-a") == []
        run(rig, 154.5, 157)
        [a] = active(rig, "offline", "charger-a")
        assert a.device == "charger-a" and T0 + 155 < a.raised_at <= T0 + 156.5
        rig.clock.t = T0 + 160
        health(True, 0.5)  # answering again
        assert active(rig, "offline", "charger-a") == []
        rig.clock.t = T0 + 170
        health(False, 200)  # long gone (e.g. agent restarted with a device already dead): at once
        assert [a.device for a in active(rig, "offline", "charger-a")] == ["charger-a"]
    finally:
        rig.close()


def test_two_replicas_racing_make_one_active_alarm(tmp_path: Path, db_url: str) -> None:
    """Two engines (two replicas, each its own connection pool) on one database get the same
    condition at the same instant, round after round: the unique key leaves one active alarm."""
    clock = Clock()
    cfg = Rig(tmp_path, None, clock, db_url).cfg
    stores = [AlarmStore(db_url) for _ in range(2)]
    engines = [AlarmEngine(s, StaticDirectory([cfg]), [cfg], None, None, clock=clock) for s in stores]
    rig = Rig(tmp_path, None, clock, db_url)  # builds messages; its own engine stays idle
    rounds = 15
    try:
        for i in range(rounds):
            clock.t = T0 + i * 10
            for value in (True, False):
                msg = rig.tel("charger-a", {"smoke": value})
                barrier = threading.Barrier(2)

                def feed(e: AlarmEngine, m: Any = msg, b: threading.Barrier = barrier) -> None:
                    b.wait()
                    e.process(m)

                threads = [threading.Thread(target=feed, args=(e,)) for e in engines]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                now_active = [a for a in stores[0].list_alarms(limit=1000) if a.rule == "smoke" and a.active]
                assert len(now_active) == (1 if value else 0), f"round {i}: {now_active}"
        smoke = [a for a in stores[0].list_alarms(limit=1000) if a.rule == "smoke"]
        assert len(smoke) == rounds
        assert all(a.occurrences == 2 for a in smoke)  # both replicas raised it; one row each round
        assert all([x["action"] for x in stores[0].audit_of(a.id)] == ["raised", "cleared"] for a in smoke)
    finally:
        rig.close()
        for s in stores:
            s.close()


def test_replica_trusts_the_last_seen_another_replica_wrote(tmp_path: Path, db_url: str) -> None:
    """Shared subscriptions split a gateway's messages between replicas: engine B hears nothing from
    gw-2 but must not call it offline while engine A hears it (A writes last-seen every 5 s)."""
    clock = Clock()
    rig = Rig(tmp_path, None, clock, db_url, gateway_offline={"silence": 45})
    cfg = rig.cfg
    other_store = AlarmStore(db_url)
    b = AlarmEngine(other_store, StaticDirectory([cfg]), [cfg], None, None, clock=clock)
    try:
        for t in range(0, 121):
            clock.t = T0 + t
            if t % 5 == 0:
                rig.engine.process(rig.tel("bays", {"bay.7.occupied": False}, gateway="gw-2"))
                b.process(rig.tel("riser-1", {"pipe_pressure": 3.0}))
            rig.engine.tick()
            b.tick()
        assert rig.alarms(GATEWAY_RULE) == []
        for t in range(121, 180):  # now gw-2 really is silent: one of them raises it, once
            clock.t = T0 + t
            b.process(rig.tel("riser-1", {"pipe_pressure": 3.0}))
            rig.engine.process(rig.tel("riser-1", {"pipe_pressure": 3.0}))
            rig.engine.tick()
            b.tick()
        assert [a.gateway for a in rig.alarms(GATEWAY_RULE)] == ["gw-2"]
    finally:
        rig.close()
        other_store.close()


def test_running_engine_writes_last_seen_off_its_thread_and_at_stop(tmp_path: Path, db_url: str) -> None:
    import time

    rig = Rig(tmp_path, None, Clock(), db_url)
    eng = rig.engine.start()
    try:
        rig.clock.t = T0 + 3
        eng.put(rig.tel("riser-1", {"pipe_pressure": 3.0}))
        eng.drain()
        rig.clock.t = T0 + 6  # the next flush is due (every 5 s of engine time)
        deadline = time.monotonic() + 10
        while rig.store.load_seen().get(("demo", "gw-1", "riser-1")) != T0 + 3:
            assert time.monotonic() < deadline, rig.store.load_seen()
            time.sleep(0.05)
        assert eng._flusher is not None and eng._flusher.name == "alarm-seen"
        rig.clock.t = T0 + 7
        eng.put(rig.tel("charger-a", {"smoke": False}))
        eng.drain()
    finally:
        eng.stop()  # not due yet (next at 11 s): stop writes it
    assert rig.store.load_seen()[("demo", "gw-1", "charger-a")] == T0 + 7
    rig.close()
