"""Outages, crashes, silent slaves and bad bytes: nothing committed is lost, nothing stalls, the
agent never dies. Real mosquitto, the agent as a real process, slaves on pseudo-terminals."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from device_profiles import wire
from device_profiles.loader import get_profile
from edge_agent.outbox import Outbox
from tests.fixtures.modbus_slave import RtuBus, SimDevice
from tests.integration.edge.helpers import AgentProcess, Collector, write_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def one_bus(
    tmp: Path,
    port: int,
    bus: RtuBus,
    devices: list[tuple[str, str, int]],
    poll: dict[str, float] | None = None,
    **extra: object,
) -> Path:
    poll = poll or {"safety": 0.5, "routine": 1.0, "slow": 10.0}
    return write_config(
        tmp,
        port,
        [{"name": "b1", "transport": "modbus_rtu", "port": bus.port, "baud": 9600, "timeout_s": 0.2, "retries": 1}],
        [{"id": i, "profile": p, "bus": "b1", "address": a, "poll": poll} for i, p, a in devices],
        **extra,
    )


def seqs(col: Collector, dev: str) -> list[int]:
    """Sequence numbers in arrival order, duplicates (re-deliveries) removed."""
    seen: set[int] = set()
    out = []
    for _ts, _t, p in list(col.msgs):
        if _t.device == dev and hasattr(p, "seq") and p.seq not in seen:
            seen.add(p.seq)
            out.append(p.seq)
    return out


def test_broker_outage_loses_nothing_and_live_goes_first(tmp_path: Path, mosquitto, rtu_bus) -> None:  # type: ignore[no-untyped-def]
    devs = [SimDevice(get_profile("nanfang-fsm8"), u) for u in (5, 6, 7, 8)]
    bus = rtu_bus(devs)
    ids = [f"fsm{d.unit}" for d in devs]
    # fast polls and values that change every poll: each poll is a reading with its own seq, and the
    # backlog is big enough (thousands) that its drain takes longer than the next live poll
    cfg = one_bus(
        tmp_path,
        mosquitto.port,
        bus,
        [(i, "nanfang-fsm8", d.unit) for i, d in zip(ids, devs, strict=False)],
        {"safety": 0.05, "routine": 0.05, "slow": 10.0},
    )
    col = Collector(mosquitto.port, "outage")
    agent = AgentProcess(cfg, tmp_path / "agent.log").start()
    stop = False

    def churn() -> None:
        n = 0
        while not stop:
            n += 1
            for d in devs:
                d.set(pipe_pressure=round(2 + (n % 100) * 0.05, 2))
            time.sleep(0.02)

    import threading

    th = threading.Thread(target=churn, daemon=True)
    th.start()
    try:
        col.wait(lambda: all(col.of(wire.Kind.TELEMETRY, i) for i in ids), what="first telemetry")
        mosquitto.stop()
        outage_s = 60.0
        time.sleep(outage_s)
        db = Outbox(tmp_path / "state" / "outbox.db")
        stored = db.count
        db.close()
        assert stored >= outage_s * 40, f"only {stored} rows stored during the outage"
        t_back_wall = time.time()
        mosquitto.start()

        def complete() -> bool:
            return all(len(s := seqs(col, i)) == max(s) - min(s) + 1 and max(s) > stored / 4 for i in ids)

        col.wait(complete, timeout=90, what="backlog delivered")
        time.sleep(1)
        births = [p for p in col.of(wire.Kind.STATUS) if p.state == "online"]
        t_conn = births[-1].ts.timestamp()  # when the agent got its connection back
        assert t_conn >= t_back_wall - 0.5
        for i in ids:
            s = seqs(col, i)
            # exactly once: every number from the first to the last, none missing
            assert sorted(s) == list(range(min(s), max(s) + 1)), f"gap in sequence numbers of {i}"
        arrivals = [
            (p.ts.timestamp(), p.seq, t.device)
            for _, t, p in list(col.msgs)
            if t.device in ids and t.kind is not wire.Kind.STATUS and hasattr(p, "seq")
        ]
        backlog = [(ts, seq, dev) for ts, seq, dev in arrivals if ts < t_back_wall - 1]
        after = (
            arrivals[arrivals.index(next(a for a in arrivals if a[0] > t_conn)) - 0 :]
            if any(a[0] > t_conn for a in arrivals)
            else []
        )
        # the backlog (readings taken while the broker was down) arrived in order, per device
        for i in ids:
            b = [seq for ts, seq, dev in backlog if dev == i]
            assert b == sorted(b)
        # live readings arrived before the backlog had finished
        pos_live = next(k for k, a in enumerate(arrivals) if a[0] > t_conn + 0.05)
        pos_last_backlog = max(k for k, a in enumerate(arrivals) if a[0] < t_back_wall - 1)
        assert pos_live < pos_last_backlog, "live data waited behind the whole backlog"
        assert after
    finally:
        stop = True
        agent.stop()
        col.close()
    assert "Traceback" not in agent.log(), agent.log()


def test_kill9_loses_nothing_and_sequences_continue(tmp_path: Path, mosquitto, rtu_bus) -> None:  # type: ignore[no-untyped-def]
    fsm = SimDevice(get_profile("nanfang-fsm8"), 5)
    bus = rtu_bus([fsm])
    cfg = one_bus(
        tmp_path, mosquitto.port, bus, [("fsm8", "nanfang-fsm8", 5)], {"safety": 0.2, "routine": 0.2, "slow": 10.0}
    )
    col = Collector(mosquitto.port, "kill9")
    agent = AgentProcess(cfg, tmp_path / "agent.log").start()
    try:
        col.wait(lambda: col.of(wire.Kind.TELEMETRY, "fsm8"), what="first telemetry")
        mosquitto.stop()  # build up a committed backlog, then crash
        for n in range(30):
            fsm.set(pipe_pressure=2 + n * 0.1)
            time.sleep(0.1)
        agent.kill9()
        db = Outbox(tmp_path / "state" / "outbox.db")
        committed = db.count
        last_seq = db.seq("fsm8")
        db.close()
        assert committed > 10
        mosquitto.start()
        agent = AgentProcess(cfg, tmp_path / "agent2.log").start()

        def complete() -> bool:
            s = seqs(col, "fsm8")
            return max(s) > last_seq + 3 and len(s) == max(s) - min(s) + 1

        try:
            col.wait(complete, timeout=40, what="backlog and new readings after restart")
        finally:
            s = seqs(col, "fsm8")
        assert sorted(s) == list(range(min(s), max(s) + 1)), "a committed reading was lost"
        assert max(s) > last_seq  # numbering continued from the crash, no reuse
        time.sleep(1)
        db = Outbox(tmp_path / "state" / "outbox.db")
        assert db.seq("fsm8") > last_seq
        db.close()
    finally:
        agent.stop()
        col.close()


def test_silent_slave_costs_the_others_little(tmp_path: Path, mosquitto, rtu_bus) -> None:  # type: ignore[no-untyped-def]
    a = SimDevice(get_profile("nanfang-fsm8"), 5)
    b = SimDevice(get_profile("nanfang-fsm8"), 6)
    dead = SimDevice(get_profile("nanfang-fsm8"), 9)
    poll = {"safety": 0.5, "routine": 0.5, "slow": 10.0}
    devs = [("fsm-a", "nanfang-fsm8", 5), ("fsm-b", "nanfang-fsm8", 6), ("fsm-dead", "nanfang-fsm8", 9)]

    def rate(dead_silent: bool, sub: str) -> dict[str, float]:
        d = tmp_path / sub
        d.mkdir()
        bus = rtu_bus([a, b, dead])
        dead.faults.silent = dead_silent
        cfg = one_bus(d, mosquitto.port, bus, devs, poll)
        agent = AgentProcess(cfg, d / "agent.log").start()
        try:
            time.sleep(3)
            st0 = _status(d)
            time.sleep(10)
            st1 = _status(d)
        finally:
            agent.stop()
            bus.stop()
        out = {}
        for dev in ("fsm-a", "fsm-b"):
            ok0 = next(x["ok"] for x in st0["devices"] if x["id"] == dev)
            ok1 = next(x["ok"] for x in st1["devices"] if x["id"] == dev)
            out[dev] = (ok1 - ok0) / (st1["written"] - st0["written"])
        out["dead_breaker"] = next(x["breaker"] for x in st1["devices"] if x["id"] == "fsm-dead")  # type: ignore[assignment]
        out["dead_timeouts"] = next(x["timeouts"] for x in st1["devices"] if x["id"] == "fsm-dead")
        return out

    healthy = rate(False, "healthy")
    silent = rate(True, "silent")
    for dev in ("fsm-a", "fsm-b"):
        assert silent[dev] >= 0.9 * healthy[dev], (dev, healthy, silent)
    assert silent["dead_timeouts"] > 0
    assert silent["dead_breaker"] in ("open", "half_open")


def _status(d: Path) -> dict:  # type: ignore[type-arg]
    import json

    p = d / "state" / "status.json"
    deadline = time.monotonic() + 10
    while not p.exists():
        if time.monotonic() > deadline:
            raise AssertionError("no status file")
        time.sleep(0.1)
    st0 = json.loads(p.read_text())
    # wait for a fresh one (written every health_s)
    while True:
        st = json.loads(p.read_text())
        if st["written"] != st0["written"]:
            return st  # type: ignore[no-any-return]
        time.sleep(0.1)


def test_interlock_with_broker_down(tmp_path: Path, mosquitto, rtu_bus) -> None:  # type: ignore[no-untyped-def]
    cp = SimDevice(get_profile("voltpile-cp10"), 3)
    bus = rtu_bus([cp])
    safety = 0.5
    cfg = one_bus(
        tmp_path,
        mosquitto.port,
        bus,
        [("cp10", "voltpile-cp10", 3)],
        {"safety": safety, "routine": 2.0, "slow": 10.0},
    )
    col = Collector(mosquitto.port, "interlock")
    agent = AgentProcess(cfg, tmp_path / "agent.log").start()
    try:
        col.wait(lambda: col.of(wire.Kind.TELEMETRY, "cp10"), what="first telemetry")
        mosquitto.stop()
        cp.set(port__7__connector_temp=80.0)  # runaway: voltpile cut-off is 75 °C
        t0 = time.monotonic()
        while time.monotonic() - t0 < 5 and cp.values["port.7.enabled"]:
            time.sleep(0.01)
        dt = time.monotonic() - t0
        assert cp.values["port.7.enabled"] is False, "port was not switched off"
        assert dt <= 2 * safety, f"switched off after {dt:.2f} s"
        assert cp.values["port.7.current"] == 0.0
        assert cp.values["port.1.enabled"] is True  # only the hot port
        mosquitto.start()
        ev = col.wait(
            lambda: [e for e in col.of(wire.Kind.EVENT, "cp10") if e.kind == "interlock"],
            timeout=30,
            what="interlock event after the outage",
        )
        assert ev[0].data["ok"] is True and ev[0].data["index"] == 7
        assert "80" in ev[0].text and "75" in ev[0].text and ev[0].severity == "critical"
    finally:
        agent.stop()
        col.close()


def test_bad_bytes_are_retried_counted_and_survived(tmp_path: Path, mosquitto, rtu_bus) -> None:  # type: ignore[no-untyped-def]
    cp = SimDevice(get_profile("voltpile-cp10"), 3)
    fsm = SimDevice(get_profile("nanfang-fsm8"), 5)
    bus = rtu_bus([cp, fsm])
    cfg = one_bus(
        tmp_path,
        mosquitto.port,
        bus,
        [("cp10", "voltpile-cp10", 3), ("fsm8", "nanfang-fsm8", 5)],
        {"safety": 0.3, "routine": 0.5, "slow": 10.0},
    )
    col = Collector(mosquitto.port, "bad")
    agent = AgentProcess(cfg, tmp_path / "agent.log").start()
    try:
        col.wait(lambda: col.of(wire.Kind.TELEMETRY, "cp10"), what="first telemetry")
        cp.faults.crc_error_rate = 0.5
        time.sleep(3)
        cp.faults.crc_error_rate = 0
        fsm.faults.exception_code = 4
        time.sleep(2)
        fsm.faults.exception_code = None
        fsm.faults.silent = True
        time.sleep(2)
        fsm.faults.silent = False
        bus_garbage(bus)
        time.sleep(3)
        h = col.wait(
            lambda: [x for x in col.of(wire.Kind.HEALTH, "cp10") if x.crc_errors > 0 and x.retries > 0],
            what="crc errors in health",
        )
        assert h[-1].ok > 0
        hf = col.wait(
            lambda: [x for x in col.of(wire.Kind.HEALTH, "fsm8") if x.exceptions > 0 and x.timeouts > 0],
            what="exceptions and timeouts in health",
        )
        assert hf
        # still alive and reading both
        n = len(col.of(wire.Kind.TELEMETRY, "fsm8"))
        fsm.set(pipe_pressure=9.99)
        col.wait(lambda: col.latest_values("fsm8").get("pipe_pressure") == 9.99, timeout=20, what="recovered")
        assert len(col.of(wire.Kind.TELEMETRY, "fsm8")) > n
        assert agent.proc is not None and agent.proc.poll() is None
    finally:
        agent.stop()
        col.close()
    assert "Traceback" not in agent.log(), agent.log()


def bus_garbage(bus: RtuBus) -> None:
    """Random bytes on the line from a misbehaving third party."""
    import os

    import serial

    s = serial.Serial(bus.sim_port, 9600)
    s.write(os.urandom(64))
    s.close()
