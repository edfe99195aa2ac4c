"""No message, whatever its `ts`, `seq`, `epoch` or value types, can stop a later good message from
raising its alarm (DESIGN.md §4, docs/wire.md "Time" and "Sequence numbers").

Property tests (hypothesis) through the real ingest pipeline (time policy, type checks, replay
windows) and the real alarm engine on a SQLite alarm store, in process: any run of messages of
every kind a gateway can publish — far-future and 1970 stamps, time zone offsets, huge and
replayed sequence numbers, foreign epochs, values of the wrong type, raw garbage — then what a
correct gateway sends next: the next seq of its epoch (or seq 1 of a new epoch: a wiped outbox),
stamped with the right time, carrying smoke (telemetry or a state event) or an interlock event.
The alarm must be active after it, and must not have been raised by the garbage before it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cloud.alarms.config import AlarmSiteConfig
from cloud.alarms.directory import RegistryDirectory
from cloud.alarms.engine import CLOCK_RULE, AlarmEngine
from cloud.alarms.store import AlarmStore, active_key
from cloud.alarms.store import metadata as store_metadata
from cloud.ingest.dead_letter import DeadLetterStore
from cloud.ingest.pipeline import Pipeline
from cloud.safety import SafetyMessage
from device_profiles import wire
from tests.unit.ingest_env import ListStorage, make_pipeline

SITE, GW, DEV = "demo-estate", "gw-shelter-a", "chg1"
BASE = f"sw/v1/{SITE}/{GW}"
T0 = 1_800_000_000.0  # the cloud's clock at the first message (2027-01-15)
EPOCH = "e0"  # the gateway's outbox
POINTS = ["smoke", "main_relay", "ambient_temp", "port.3.connector_temp", "port.3.state", "port.3.power",
          "port.3.enabled", "port.99.current", "nonsense"]


class Direct:
    """The engine as the pipeline's safety sink, processed at once (its worker thread is the only
    thing left out: `put` would queue for it)."""

    def __init__(self, engine: AlarmEngine) -> None:
        self.engine = engine

    def put(self, msg: SafetyMessage) -> None:
        self.engine.process(msg)


_STORE: AlarmStore | None = None


def _empty_store() -> AlarmStore:
    """One SQLite store in memory for the whole module (SQLAlchemy compiles its statements once per
    engine), emptied for every example: each example starts with no alarm, no track, nothing seen."""
    global _STORE
    if _STORE is None:
        _STORE = AlarmStore("sqlite://")
    with _STORE.engine.begin() as c:
        for table in reversed(store_metadata.sorted_tables):
            c.execute(table.delete())
    return _STORE


class Rig:
    def __init__(self) -> None:
        *_, reg = make_pipeline()  # the demo estate's registry (shared, read-only here)
        self.clock_t = T0
        self.store = _empty_store()
        cfg = AlarmSiteConfig.model_validate({"site": SITE, "gateway_offline": {"silence": 600_000}})
        self.engine = AlarmEngine(self.store, RegistryDirectory(reg), [cfg], clock=lambda: self.clock_t,
                                  restart_grace_s=10**9)
        self.pipeline = Pipeline(reg.directory(), DeadLetterStore(None), Direct(self.engine), ListStorage())
        self.n = 0

    def send(self, topic: str, payload: bytes) -> str:
        self.n += 1
        self.clock_t = T0 + self.n * 0.05
        return self.pipeline.handle(topic, payload, self.clock_t)

    def active(self, rule: str, device: str = DEV, instance: str = "") -> bool:
        return active_key(SITE, GW, device, rule, instance) in self.engine.active

    def close(self) -> None:
        pass


# ------------------------------------------------------------------------------------ the garbage
def iso(t: datetime) -> str:
    return t.isoformat()


zones = st.sampled_from([UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-11, minutes=-30))])
any_time = st.one_of(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=zones),
    # near the cloud's clock: just ahead, just behind (within and beyond the tolerance)
    st.floats(-120, 120).map(lambda d: datetime.fromtimestamp(T0 + d, UTC)),
    st.floats(-2, 12).map(lambda d: datetime.fromtimestamp(T0 + d, UTC)),
    st.sampled_from([datetime(2099, 1, 1, tzinfo=UTC), datetime(1970, 1, 1, tzinfo=UTC)]),
).map(iso) | st.sampled_from(["2026-13-01T00:00:00Z", "yesterday", "2099-01-01T00:00:00"])
seqs = st.one_of(st.integers(1, 60), st.integers(1, 2**53), st.sampled_from([0, -1, 2**53 + 1, 2**64]))
epochs = st.sampled_from([EPOCH, "", "old-outbox", "x" * 40])
scalars = st.one_of(st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False, allow_infinity=False),
                    st.text(max_size=12), st.none())


def not_an_alarm(pid: str, v: Any) -> bool:
    """Garbage must not itself be the alarm condition the test looks for."""
    return not (pid == "smoke" and v is True)


values = st.dictionaries(st.sampled_from(POINTS), scalars, max_size=5).filter(
    lambda d: all(not_an_alarm(k, v) for k, v in d.items()))


@st.composite
def device_message(draw: st.DrawFn) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(["telemetry", "event", "health", "cmd-result"]))
    body: dict[str, Any] = {"v": 1, "ts": draw(any_time), "seq": draw(seqs), "epoch": draw(epochs)}
    if kind == "cmd-result":
        body = {"v": 1, "ts": body["ts"], "id": draw(st.text(max_size=70)),
                "status": draw(st.sampled_from(["done", "refused", "failed", "expired", "maybe"]))}
    elif kind == "telemetry":
        body["values"] = draw(values)
        body["snapshot"] = draw(st.booleans())
    elif kind == "event":
        point = draw(st.sampled_from([*POINTS, None]))
        value = draw(scalars)
        body.update(id=draw(st.sampled_from(["0b9e2c4d6f8a4b1c", wire.new_id()])),
                    kind=draw(st.sampled_from(["state", "command", "fault", "agent", "bogus"])),
                    severity=draw(st.sampled_from(["critical", "info", "loud"])), point=point,
                    value=value if not_an_alarm(point or "", value) else False)
    else:
        body.update(online=draw(st.booleans()), breaker=draw(st.sampled_from(["closed", "open", "half_open"])),
                    last_ok=draw(st.one_of(any_time, st.none())), polls=draw(st.integers(0, 2**40)),
                    timeouts=draw(st.integers(0, 2**40)))
    if draw(st.integers(0, 3)) == 0:
        body.pop(draw(st.sampled_from(sorted(body))))  # a required field missing, sometimes
    return f"{BASE}/{draw(st.sampled_from([DEV, DEV, DEV, 'chg2']))}/{kind}", json.dumps(body).encode()


@st.composite
def gateway_message(draw: st.DrawFn) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(["status", "health"]))
    body: dict[str, Any] = {"v": 1, "ts": draw(any_time)}
    if kind == "status":
        body.update(state=draw(st.sampled_from(["online", "offline"])), reason="fuzz")
    else:
        body.update(uptime_s=draw(st.floats(0, 1e9)), clock_skew_s=draw(st.one_of(st.none(), st.floats(-1e9, 1e9))))
    return f"{BASE}/{kind}", json.dumps(body).encode()


raw = st.tuples(st.sampled_from([f"{BASE}/{DEV}/telemetry", f"{BASE}/{DEV}/event", f"{BASE}/status"]),
                st.binary(max_size=80))
garbage = st.lists(st.one_of(device_message(), device_message(), gateway_message(), raw), min_size=1, max_size=25)


def tel(ts: str, seq: int = 1, epoch: str = EPOCH) -> tuple[str, bytes]:
    body = {"v": 1, "ts": ts, "seq": seq, "epoch": epoch, "values": {"smoke": False}}
    return f"{BASE}/{DEV}/telemetry", json.dumps(body).encode()


# What users and reviews found, always tried (hypothesis explores around them).
FOUND = [
    [tel("2099-01-01T00:00:00.000Z")],  # one far-future stamp once silenced a device
    [tel(wire.at(T0 + 5).wire())],  # a clock a few seconds ahead, within the tolerance
    [tel("1970-01-01T00:00:00.000Z"), tel(wire.at(T0 + 9).wire(), 2)],
    [tel(wire.at(T0).wire(), 2**53 - 2)],  # a counter that jumped
    [tel(wire.at(T0).wire(), 50_000, "old-outbox")],  # the outbox before it was wiped
]


# ----------------------------------------------------------------------------- what comes next
def next_seq(msgs: list[tuple[str, bytes]], epoch: str) -> int:
    """What a correct gateway numbers its next message: after everything its outbox numbered."""
    top = 0
    for topic, payload in msgs:
        try:
            body = json.loads(payload)
        except ValueError:
            continue
        if (isinstance(body, dict) and f"/{DEV}/" in topic and body.get("epoch", "") == epoch
                and isinstance(body.get("seq"), int) and body["seq"] < 2**53):
            top = max(top, body["seq"])
    return top + 1


def good_message(variant: str, seq: int, epoch: str, at: float) -> tuple[str, bytes, str, str]:
    """(topic, payload, the rule it must raise, that alarm's instance)"""
    ts = wire.at(at)
    if variant == "telemetry":
        msg: Any = wire.Telemetry(ts=ts, seq=seq, epoch=epoch, values={"smoke": True, "port.3.power": 80})
        return f"{BASE}/{DEV}/telemetry", wire.encode(msg), "smoke", ""
    if variant == "state":
        msg = wire.Event(ts=ts, seq=seq, epoch=epoch, id=wire.new_id(), kind="state", severity="critical",
                         point="smoke", value=True, previous=False, text="smoke detected")
        return f"{BASE}/{DEV}/event", wire.encode(msg), "smoke", ""
    msg = wire.Event(ts=ts, seq=seq, epoch=epoch, id=wire.new_id(), kind="interlock", severity="critical",
                     point="port.3.connector_temp", value=81.4, text="port 3 switched off")
    return f"{BASE}/{DEV}/event", wire.encode(msg), "interlock", "3"


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(msgs=FOUND[0], variant="telemetry", wiped=False)
@example(msgs=FOUND[1], variant="telemetry", wiped=False)
@example(msgs=FOUND[1], variant="state", wiped=True)
@example(msgs=FOUND[2], variant="telemetry", wiped=False)
@example(msgs=FOUND[3], variant="telemetry", wiped=False)
@example(msgs=FOUND[4], variant="state", wiped=True)
@given(msgs=garbage, variant=st.sampled_from(["telemetry", "state", "interlock"]),
       wiped=st.booleans())
def test_a_good_alarm_condition_after_any_messages_is_raised(msgs: list[tuple[str, bytes]], variant: str,
                                                            wiped: bool) -> None:
    rig = Rig()
    try:
        for topic, payload in msgs:
            out = rig.send(topic, payload)
            assert out in ("ok", "duplicate", "bad_json", "bad_schema", "not_utf8"), (out, payload)
        _, _, rule, inst = good_message(variant, 1, EPOCH, T0)
        assert not rig.active(rule, DEV, inst), "the garbage itself must not be the alarm condition"
        # A correct gateway: the next number of its outbox, or 1 under a new epoch (wiped outbox).
        epoch = "fresh-outbox" if wiped else EPOCH
        seq = 1 if wiped else next_seq(msgs, EPOCH)
        topic, payload, rule, inst = good_message(variant, seq, epoch, T0 + (len(msgs) + 1) * 0.05)
        assert rig.send(topic, payload) == "ok"
        assert rig.active(rule, DEV, inst), f"{rule} not raised after {len(msgs)} messages"
        assert rig.engine.counters["errors"] == 0
    finally:
        rig.close()


def test_a_gateway_ahead_raises_the_clock_alarm_and_its_report_clears_it() -> None:
    rig = Rig()
    try:
        far = {"v": 1, "ts": "2099-01-01T00:00:00.000Z", "seq": 1, "epoch": EPOCH, "values": {"smoke": False}}
        assert rig.send(f"{BASE}/{DEV}/telemetry", json.dumps(far).encode()) == "ok"
        assert rig.active(CLOCK_RULE, "")
        alarm = rig.engine.active[active_key(SITE, GW, "", CLOCK_RULE, "")]
        assert alarm.severity == "minor" and "ahead" in alarm.detail["reason"]
        gh = {"v": 1, "ts": wire.at(T0 + 1).wire(), "uptime_s": 5, "clock_skew_s": 0.02}
        assert rig.send(f"{BASE}/health", json.dumps(gh).encode()) == "ok"
        assert not rig.active(CLOCK_RULE, "")
        behind = {**gh, "clock_skew_s": -3600.0}  # behind: only the gateway's own report can tell
        rig.send(f"{BASE}/health", json.dumps(behind).encode())
        assert rig.active(CLOCK_RULE, "")
    finally:
        rig.close()
