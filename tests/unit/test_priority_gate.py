"""PriorityGate: urgent kinds overtake held telemetry; telemetry is conflated per device (bounded
whatever the load), never merged with events, status or health, and storage still gets every
reading (it is a separate path)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

from cloud.ingest.dead_letter import DeadLetterStore
from cloud.ingest.pipeline import Pipeline
from cloud.ingest.priority import PriorityGate
from cloud.safety import Readings, SafetyMessage
from device_profiles import wire
from tests.unit.ingest_env import ListStorage, make_pipeline

TS = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


class SlowEngine:
    """A sink that only processes when told to: `backlog()` is what it holds unprocessed."""

    def __init__(self) -> None:
        self.got: list[SafetyMessage] = []
        self.done = 0
        self.lock = threading.Lock()

    def put(self, msg: SafetyMessage) -> None:
        with self.lock:
            self.got.append(msg)

    def backlog(self) -> int:
        with self.lock:
            return len(self.got) - self.done

    def process_all(self) -> None:
        with self.lock:
            self.done = len(self.got)


def tele(seq: int, dev: str = "d", values: dict[str, wire.Scalar] | None = None) -> SafetyMessage:
    p = wire.Telemetry(ts=TS + timedelta(seconds=seq), seq=seq, values={"v": seq} if values is None else values)
    return SafetyMessage("s", "g", dev, wire.Kind.TELEMETRY, p, 0.0)


def event(seq: int) -> SafetyMessage:
    ev = wire.Event(ts=TS, seq=seq, id=wire.new_id(), kind="state", point="waterflow", value=True)
    return SafetyMessage("s", "g", "d", wire.Kind.EVENT, ev, 0.0)


def wait(pred: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():  # type: ignore[operator]
            return
        time.sleep(0.002)
    raise AssertionError("timed out")


def test_an_event_has_at_most_max_ahead_telemetry_in_front() -> None:
    eng = SlowEngine()
    gate = PriorityGate(eng, max_ahead=8).start()
    try:
        for i in range(1000):
            gate.put(tele(i, dev=f"d{i}"))  # 1000 devices: nothing to merge
        wait(lambda: eng.backlog() == 8)
        time.sleep(0.02)
        assert eng.backlog() == 8  # the engine is full: the gate holds the rest
        gate.put(event(1000))
        assert [m.kind for m in eng.got].index(wire.Kind.EVENT) == 8
        # urgent telemetry (docs/wire.md) passes the held readings too, unmerged
        hot = tele(1001, dev="hot", values={"port.1.connector_temp": 71.2})
        gate.put(SafetyMessage(hot.site, hot.gateway, hot.device, wire.Kind.URGENT, hot.payload, 0.0))
        assert [m.kind for m in eng.got].index(wire.Kind.URGENT) == 9 and eng.got[9].payload is hot.payload
        assert gate.qsize() == 1002  # 992 held devices + 10 in the engine
        while len(eng.got) < 1002:
            eng.process_all()
            time.sleep(0.001)
        devs = [m.device for m in eng.got if m.kind is wire.Kind.TELEMETRY]
        assert devs == [f"d{i}" for i in range(1000)]  # devices in the order they started waiting
        eng.process_all()
        assert gate.drain(2) and gate.qsize() == 0
        assert (gate.urgent, gate.routine) == (2, 1000)
    finally:
        eng.process_all()
        gate.stop(1)


def test_held_telemetry_is_merged_per_device_and_other_kinds_never_are() -> None:
    """A flood of telemetry of 5 devices while the engine is busy: at most one entry per device
    waits, and the engine gets each device's newest readings. Status, health, gateway health and
    command results pass straight, every one of them, in order."""
    eng = SlowEngine()
    gate = PriorityGate(eng, max_ahead=2).start()
    ts = TS
    others = [
        SafetyMessage("s", "g", None, wire.Kind.STATUS, wire.Status(ts=ts, state="online"), 0.0),
        SafetyMessage("s", "g", "d0", wire.Kind.HEALTH, wire.DeviceHealth(ts=ts, seq=10_000, online=False), 0.0),
        SafetyMessage("s", "g", None, wire.Kind.GATEWAY_HEALTH, wire.GatewayHealth(ts=ts, uptime_s=1.0), 0.0),
        SafetyMessage("s", "g", "d1", wire.Kind.CMD_RESULT,
                      wire.CommandResult(ts=ts, id="c0ffee0012345678", status="done"), 0.0),
        event(10_001),
    ]
    try:
        wait(lambda: gate._thread is not None)
        for i in range(20):
            gate.put(tele(i, dev=f"x{i}"))  # fills the engine (2) and waits in the gate
        wait(lambda: eng.backlog() == 2)  # the gate's thread fed the engine (it may lag on a busy machine)
        for i in range(5_000):
            gate.put(tele(100 + i, dev=f"d{i % 5}", values={"temp": float(i), f"p{i % 7}": i}))
            if i % 1000 == 0:
                gate.put(others[i // 1000])
        fed = sum(m.kind is wire.Kind.TELEMETRY for m in eng.got)
        assert fed == 2  # max_ahead telemetry entries, then the five others went straight in
        assert [m for m in eng.got if m.kind is not wire.Kind.TELEMETRY] == others
        st = gate.stats()
        assert st["held_devices"] == 20 - fed + 5 and st["held_samples"] <= 20 + 5 * 8 * 16
        while gate.qsize():
            eng.process_all()
            time.sleep(0.001)
        merged = {m.device: m.payload for m in eng.got if isinstance(m.payload, Readings)}
        for d in range(5):
            r = merged[f"d{d}"]
            assert r.merged == 1000 and r.last.seq == 100 + 4995 + d
            assert r.points["temp"][-1][1] == float(4995 + d)  # the newest reading is there
            assert len(r.points["temp"]) == 16  # bounded: `depth` samples per point
        assert gate.stats()["merged"] == 5 * 999
    finally:
        eng.process_all()
        gate.stop(1)


def test_stop_hands_on_what_it_holds() -> None:
    eng = SlowEngine()
    gate = PriorityGate(eng, max_ahead=4).start()
    for i in range(50):
        gate.put(tele(i, dev=f"d{i % 10}"))
    done = threading.Event()

    def engine_thread() -> None:
        while not done.is_set():
            eng.process_all()
            time.sleep(0.001)

    t = threading.Thread(target=engine_thread)
    t.start()
    try:
        gate.stop(5)
        got = [m.payload for m in eng.got]
        assert all(isinstance(r, Readings) for r in got) and sum(r.merged for r in got) == 50  # type: ignore[union-attr]
        assert 10 <= len(got) <= 14  # one entry per device, and the few the feeder took while we put
    finally:
        done.set()
        t.join()


def test_storage_keeps_every_reading_while_the_gate_merges() -> None:
    """Storage is the pipeline's other path: conflation in front of the engine loses nothing there."""
    p, _, _, reg = make_pipeline()
    eng = SlowEngine()
    gate = PriorityGate(eng, max_ahead=1).start()
    storage = ListStorage()
    p = Pipeline(reg.directory(), DeadLetterStore(None), gate, storage)
    topic = "sw/v1/demo-estate/gw-shelter-a/chg1/telemetry"
    try:
        n = 1_000
        for seq in range(1, n + 1):  # a device's first message is seq 1 (docs/wire.md)
            ts = TS + timedelta(seconds=seq)
            msg = wire.Telemetry(ts=ts, seq=seq, values={"port.3.connector_temp": 20.0 + seq / 100, "smoke": False})
            # received just after its ts: inside the time policy, so storage keeps the edge's stamps
            assert p.handle(topic, wire.encode(msg), ts.timestamp() + 0.05) == "ok"
        assert len(storage.points) == n * 2
        assert sorted({pt.ts_ms for pt in storage.points}) == [
            round((TS + timedelta(seconds=s)).timestamp() * 1000) for s in range(1, n + 1)
        ]
        assert gate.stats()["held_devices"] <= 1 and eng.backlog() <= 1  # the engine's side stays small
    finally:
        eng.process_all()
        gate.stop(1)


def test_urgent_telemetry_goes_after_its_own_devices_held_readings() -> None:
    """A runaway port: its routine readings are held while the engine is busy, then the reading past
    70 °C comes as urgent telemetry. It overtakes the other devices' held readings, but its own device's
    go just before it: after it they would be history (lower seq) and a rate-of-rise window would lose
    the rise (the e2e bench's rate-of-rise pushes came 9-10 s late under load that way)."""
    eng = SlowEngine()
    gate = PriorityGate(eng, max_ahead=1).start()
    try:
        gate.put(tele(1, dev="other-0"))
        wait(lambda: eng.backlog() == 1)  # the engine is full: everything after this is held
        for i in range(1, 4):
            gate.put(tele(i, dev=f"other-{i}"))
        rise = [tele(s, dev="hot", values={"port.1.connector_temp": 40.0 + 4 * s}) for s in range(1, 7)]
        for m in rise:
            gate.put(m)
        u = tele(7, dev="hot", values={"port.1.connector_temp": 70.0})
        gate.put(SafetyMessage(u.site, u.gateway, u.device, wire.Kind.URGENT, u.payload, 0.0))
        got = [(m.device, m.kind) for m in eng.got]
        assert got == [("other-0", wire.Kind.TELEMETRY), ("hot", wire.Kind.TELEMETRY), ("hot", wire.Kind.URGENT)]
        held = eng.got[1].payload
        assert isinstance(held, Readings)
        assert [meta.seq for meta, _ in held.points["port.1.connector_temp"]][-1] == 6  # the rise, up to 6
        assert gate.qsize() == 3 + 3  # the other devices still wait their turn, behind it
    finally:
        eng.process_all()
        gate.stop(1)
        while eng.backlog():
            eng.process_all()
