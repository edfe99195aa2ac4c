"""The ingest side of docs/wire.md's "Time" and "Values": payloads written by hand as a third-party
client (mosquitto_pub) would send them, through the real pipeline."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from cloud.ingest.dead_letter import DeadLetterStore
from cloud.ingest.pipeline import Pipeline
from cloud.ingest.safety_queue import QueueSafetySink
from device_profiles import wire
from tests.unit.ingest_env import ListStorage, make_pipeline

T = "sw/v1/demo-estate/gw-shelter-a/chg1/telemetry"
GW = ("demo-estate", "gw-shelter-a")


def strict_pipeline() -> tuple[Pipeline, ListStorage, QueueSafetySink]:
    """The default policy (both sides on), over the demo estate's registry."""
    *_, reg = make_pipeline()
    storage, safety = ListStorage(), QueueSafetySink()
    return Pipeline(reg.directory(), DeadLetterStore(None), safety, storage), storage, safety


def iso(t: float) -> str:
    return wire.at(t).wire()


def test_a_far_future_ts_is_stored_at_receive_time_and_does_not_freeze_last_values() -> None:
    p, storage, safety = strict_pipeline()
    now = time.time()
    far = b'{"v":1,"ts":"2099-01-01T00:00:00.000Z","seq":1,"values":{"port.3.voltage":55.0}}'
    assert p.handle(T, far, now) == "ok"
    assert storage.points[-1].ts_ms == round(now * 1000)
    msg = safety.drain()[-1]
    assert msg.payload.ts.timestamp() == pytest.approx(now, abs=1e-3)
    assert msg.clock_skew is not None and msg.clock_skew > 2e9
    assert p.stats.rebased == 1 and p.clocks[GW].source == "ingest" and p.clocks[GW].rebased == 1
    good = f'{{"v":1,"ts":"{iso(now + 1)}","seq":2,"values":{{"port.3.voltage":56.0}}}}'.encode()
    assert p.handle(T, good, now + 1.05) == "ok"
    values, t = p.take_last_values()[("demo-estate", "chg1")]
    assert values["port.3.voltage"] == 56.0 and t <= now + 1.05
    assert safety.drain()[-1].clock_skew is None


def test_a_1970_clock_is_rebased_and_keeps_the_ages_inside_the_message() -> None:
    p, _, safety = strict_pipeline()
    now = time.time()
    h = (b'{"v":1,"ts":"1970-01-01T00:01:40.000Z","seq":3,"online":false,"breaker":"open",'
         b'"last_ok":"1970-01-01T00:00:40.000Z"}')
    assert p.handle("sw/v1/demo-estate/gw-shelter-a/chg1/health", h, now) == "ok"
    m = safety.drain()[-1].payload
    assert m.ts.timestamp() == pytest.approx(now, abs=1e-3) and (m.ts - m.last_ok).total_seconds() == 60.0


def test_a_plausible_ts_is_kept_as_sent() -> None:
    p, storage, safety = strict_pipeline()
    now = time.time()
    msg = f'{{"v":1,"ts":"{iso(now - 3600)}","seq":1,"values":{{"smoke":false}}}}'.encode()  # an hour's backlog
    assert p.handle(T, msg, now) == "ok"
    assert storage.points[-1].ts_ms == round(wire.at(now - 3600).timestamp() * 1000) and p.stats.rebased == 0
    assert safety.drain()[-1].clock_skew is None


def test_a_future_birth_does_not_pin_the_gateway_status() -> None:
    p, _, _ = strict_pipeline()
    seen: list[float] = []
    p.on_status = lambda site, gw, st: seen.append(st.ts.timestamp()) or False
    now = time.time()
    p.handle("sw/v1/demo-estate/gw-garage/status", b'{"v":1,"ts":"2099-01-01T00:00:00.000Z","state":"online"}', now)
    assert seen == [pytest.approx(now, abs=1e-3)]


def test_a_wrong_type_drops_that_point_alone() -> None:
    """A string for a numeric point once made the store refuse the whole batch (spool/rejected)."""
    p, storage, safety = strict_pipeline()
    now = time.time()
    bad = (f'{{"v":1,"ts":"{iso(now)}","seq":1,"values":{{"port.3.voltage":"high","port.3.power":120,'
           f'"port.3.current":2,"smoke":1,"port.3.state":"charging","nonsense.1.x":5}}}}').encode()
    assert p.handle(T, bad, now) == "ok"
    fields = {k: v for pt in storage.points for k, v in pt.fields.items()}
    assert fields == {"power": 120, "current": 2.0, "state": "charging"}
    assert type(fields["current"]) is float and type(fields["power"]) is int  # as the profile says
    assert p.stats.points_refused == {"bad_type": 2, "unknown_point": 1}
    kept = p.dead.recent(10)
    assert len(kept) == 1 and kept[0].reason == "bad_type" and "port.3.voltage" in kept[0].detail
    assert safety.drain()[-1].payload.values == {"port.3.power": 120, "port.3.current": 2.0, "port.3.state": "charging"}
    assert not p.stats.dead  # the message itself was accepted


def test_a_wrong_typed_event_value_is_cleared_and_the_event_kept() -> None:
    p, _, safety = strict_pipeline()
    now = time.time()
    ev = (f'{{"v":1,"ts":"{iso(now)}","seq":1,"id":"0b9e2c4d6f8a4b1c","kind":"state","point":"smoke",'
          f'"value":"yes","previous":false,"severity":"critical"}}').encode()
    assert p.handle("sw/v1/demo-estate/gw-shelter-a/chg1/event", ev, now) == "ok"
    m = safety.drain()[-1].payload
    assert m.value is None and m.previous is False and m.kind == "state"
    assert p.stats.points_refused == {"bad_type": 1}


def test_int_within_limits_only() -> None:
    p, storage, _ = strict_pipeline()
    now = time.time()
    big = f'{{"v":1,"ts":"{iso(now)}","seq":1,"values":{{"port.3.power":18446744073709551615}}}}'.encode()
    assert p.handle(T, big, now) == "ok"
    assert not storage.points and p.stats.points_refused == {"bad_type": 1}


def test_gateway_health_carries_the_skew_to_storage_and_clock_view() -> None:
    p, storage, safety = strict_pipeline()
    now = time.time()
    gh = f'{{"v":1,"ts":"{iso(now)}","uptime_s":5,"clock_skew_s":-42.5}}'.encode()
    assert p.handle("sw/v1/demo-estate/gw-shelter-a/health", gh, now) == "ok"
    assert storage.points[-1].fields["clock_skew_s"] == -42.5
    c = p.take_clocks()[GW]
    assert c.skew_s == -42.5 and c.source == "edge" and c.rebased == 0
    assert safety.drain()[-1].payload.clock_skew_s == -42.5


def test_a_third_party_gateway_health_ahead_gets_the_ingesters_skew() -> None:
    p, _, safety = strict_pipeline()
    now = datetime(2026, 6, 1, tzinfo=UTC).timestamp()
    gh = f'{{"v":1,"ts":"{iso(now + 120)}","uptime_s":5}}'.encode()
    assert p.handle("sw/v1/demo-estate/gw-shelter-a/health", gh, now) == "ok"
    m = safety.drain()[-1]
    assert m.payload.clock_skew_s == 120.0 and m.clock_skew == 120.0


def test_a_rebased_burst_keeps_every_reading() -> None:
    """A 1970 clock's backlog arrives in one burst: stored at receive time, one millisecond apart,
    so the store (one value per series and time) keeps each of them."""
    p, storage, _ = strict_pipeline()
    now = time.time()
    for seq in range(1, 6):
        m = f'{{"v":1,"ts":"1970-01-01T00:00:0{seq}.000Z","seq":{seq},"values":{{"port.3.power":{seq}}}}}'
        assert p.handle(T, m.encode(), now) == "ok"
    stamps = [pt.ts_ms for pt in storage.points]
    assert len(set(stamps)) == 5 and stamps == sorted(stamps) and stamps[0] == round(now * 1000)
