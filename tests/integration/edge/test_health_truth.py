"""Truthful device health: a slave that stops answering on a real RTU line (simulated slaves on a
pseudo-terminal) is reported `online: false` as soon as its breaker opens, not 30 s later when its
last good poll goes stale; it is online again once a poll succeeds. The health messages that really
crossed the broker then drive the cloud's alarm engine (injected clock): the device offline rule
fires from the edge's last good poll + the rule's duration, and clears when the device is back."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from cloud.alarms.config import AlarmSiteConfig
from cloud.alarms.directory import StaticDirectory
from cloud.alarms.engine import AlarmEngine
from cloud.alarms.store import AlarmStore
from cloud.safety import SafetyMessage
from device_profiles import wire
from device_profiles.loader import get_profile
from tests.fixtures.modbus_slave import SimDevice
from tests.integration.edge.helpers import GW, SITE, AgentProcess, Collector, write_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_open_breaker_is_reported_offline_and_drives_the_offline_alarm(
    tmp_path: Path, mosquitto, rtu_bus  # type: ignore[no-untyped-def]
) -> None:
    alive = SimDevice(get_profile("nanfang-fsm8"), 5)
    dying = SimDevice(get_profile("nanfang-fsm8"), 9)
    bus = rtu_bus([alive, dying])
    poll = {"safety": 0.5, "routine": 0.5, "slow": 10.0}
    cfg = write_config(
        tmp_path,
        mosquitto.port,
        [{"name": "b1", "transport": "modbus_rtu", "port": bus.port, "baud": 9600, "timeout_s": 0.2, "retries": 1}],
        [
            {"id": "fsm-a", "profile": "nanfang-fsm8", "bus": "b1", "address": 5, "poll": poll},
            {"id": "fsm-x", "profile": "nanfang-fsm8", "bus": "b1", "address": 9, "poll": poll},
        ],
    )  # health every 2 s; "stale" (no good poll) would take max(3 × 2, 30) = 30 s
    col = Collector(mosquitto.port, "health-truth")
    agent = AgentProcess(cfg, tmp_path / "agent.log").start()
    try:
        col.wait(
            lambda: [h for h in col.of(wire.Kind.HEALTH, "fsm-x") if h.online and h.breaker == "closed"],
            what="fsm-x healthy",
        )
        n0 = len(col.of(wire.Kind.HEALTH, "fsm-x"))
        dying.faults.silent = True
        t_silent = time.monotonic()
        off = col.wait(
            lambda: [h for h in col.of(wire.Kind.HEALTH, "fsm-x")[n0:] if h.breaker != "closed"],
            timeout=15,
            what="fsm-x breaker not closed in health",
        )
        assert time.monotonic() - t_silent < 15  # well before the 30 s staleness
        assert all(h.online is False for h in off), off  # open and half-open alike
        assert off[0].last_ok is not None and "breaker" in off[0].detail
        assert all(h.online for h in col.of(wire.Kind.HEALTH, "fsm-a")[n0:])  # the other slave is fine
        n1 = len(col.of(wire.Kind.HEALTH, "fsm-x"))
        dying.faults.silent = False
        back = col.wait(
            lambda: [h for h in col.of(wire.Kind.HEALTH, "fsm-x")[n1:] if h.online],
            timeout=90,  # the breaker's back-off doubles while it stays silent
            what="fsm-x online again",
        )
        assert back[0].breaker == "closed"
        healths = col.of(wire.Kind.HEALTH, "fsm-x")
    finally:
        agent.stop()
        col.close()
    assert "Traceback" not in agent.log(), agent.log()

    # The same messages, in order, through the cloud's alarm engine on an injected clock that
    # follows the edge's timestamps.
    site = AlarmSiteConfig.model_validate(
        {
            "site": SITE,
            "gateway_offline": {"silence": 100_000},
            "devices": [{"id": "fsm-x", "profile": "nanfang-fsm8", "gateway": GW}],
        }
    )
    now = [healths[0].ts.timestamp()]
    store = AlarmStore(f"sqlite:///{tmp_path / 'alarms.db'}")
    engine = AlarmEngine(store, StaticDirectory([site]), [site], None, None, clock=lambda: now[0])

    def feed(h: wire.DeviceHealth, at: float | None = None) -> None:
        now[0] = h.ts.timestamp() if at is None else at
        engine.process(SafetyMessage(SITE, GW, "fsm-x", wire.Kind.HEALTH, h, now[0]))
        engine.tick()

    def offline() -> list[object]:
        return [a for a in store.list_alarms() if a.rule == "offline" and a.active]

    first_off = next(i for i, h in enumerate(healths) if not h.online)
    for h in healths[:first_off + 1]:
        feed(h)
    assert offline() == []  # a breaker open for seconds is not yet an offline device (rule: 60 s)
    last_ok = healths[first_off].last_ok
    assert last_ok is not None
    now[0] = last_ok.timestamp() + 59
    engine.tick()
    assert offline() == []
    now[0] = last_ok.timestamp() + 62
    engine.tick()
    [a] = offline()
    assert a.device == "fsm-x"  # silence judged from the edge's last good poll
    t = now[0]
    for i, h in enumerate(healths[first_off + 1 :]):  # the rest, after the clock jump
        feed(h, at=t + 1 + i)
    assert offline() == []  # answering again: cleared
    store.close()
