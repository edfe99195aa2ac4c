"""PriorityGate: urgent kinds overtake held telemetry; telemetry keeps its order and is never lost."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

from cloud.ingest.priority import PriorityGate
from cloud.safety import SafetyMessage
from device_profiles import wire

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


def tele(seq: int) -> SafetyMessage:
    return SafetyMessage("s", "g", "d", wire.Kind.TELEMETRY, wire.Telemetry(ts=TS, seq=seq, values={}), 0.0)


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


def test_event_has_at_most_max_ahead_telemetry_in_front_and_nothing_is_lost() -> None:
    eng = SlowEngine()
    gate = PriorityGate(eng, max_ahead=8).start()
    try:
        for i in range(1000):
            gate.put(tele(i))
        wait(lambda: eng.backlog() == 8)
        time.sleep(0.02)
        assert eng.backlog() == 8  # the engine is full: the gate holds the rest
        gate.put(event(1000))
        assert [m.kind for m in eng.got].index(wire.Kind.EVENT) == 8
        assert gate.qsize() == 1001  # 992 held + 9 in the engine
        while len(eng.got) < 1001:
            eng.process_all()
            time.sleep(0.001)
        seqs = [m.payload.seq for m in eng.got if m.kind is wire.Kind.TELEMETRY]
        assert seqs == list(range(1000))  # routine order kept, nothing dropped
        eng.process_all()
        assert gate.drain(2) and gate.qsize() == 0
        assert (gate.urgent, gate.routine) == (1, 1000)
    finally:
        eng.process_all()
        gate.stop(1)


def test_stop_hands_on_what_it_holds() -> None:
    eng = SlowEngine()
    gate = PriorityGate(eng, max_ahead=4).start()
    for i in range(50):
        gate.put(tele(i))
    done = threading.Event()

    def engine_thread() -> None:
        while not done.is_set():
            eng.process_all()
            time.sleep(0.001)

    t = threading.Thread(target=engine_thread)
    t.start()
    try:
        gate.stop(5)
        assert len(eng.got) == 50
    finally:
        done.set()
        t.join()
