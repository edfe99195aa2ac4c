"""The pipeline refuses bad input with the right reason and keeps storing good input in between."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from device_profiles import wire
from tests.unit.ingest_env import make_pipeline

TS = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
T_CHG1 = "sw/v1/demo-estate/gw-shelter-a/chg1/telemetry"


def good(seq: int) -> bytes:
    return wire.encode(
        wire.Telemetry(
            ts=TS + timedelta(seconds=seq), seq=seq, values={"port.3.voltage": 55.1, "smoke": False}
        )
    )


HAND_WRITTEN = [
    (T_CHG1, b'{"v":1,"ts":"2026-03-02T08:00:00Z","seq":"seven","values":{}}', "bad_schema"),  # wrong type
    (T_CHG1, b'{"v":1,"ts":"2026-03-02T08:00:00Z","seq":1,"values":{"x":[1,2]}}', "bad_schema"),
    (T_CHG1, b'{"v":1,"ts":"2026-03-02T08:00:00","seq":1,"values":{}}', "bad_schema"),  # naive time
    (T_CHG1, b'{"v":2,"ts":"2026-03-02T08:00:00Z","seq":1,"values":{}}', "bad_schema"),  # other version
    (T_CHG1, b'{"v":1,"ts":"2026-03-02T08:00:00Z","seq":1,"val', "bad_json"),  # truncated
    (T_CHG1, b"", "bad_json"),
    (T_CHG1, b'{"v":1,"ts":"\xff\xfe","seq":1,"values":{}}', "not_utf8"),
    (T_CHG1, b'{"v":1,"ts":"2026-03-02T08:00:00Z","seq":1,"values":{"a":"\xff"}}', "not_utf8"),
    (T_CHG1, b"[" * 70_000, "oversized"),
    ("sw/v1/demo-estate/gw-shelter-a/chg1/telemetry/extra", good(1), "bad_topic"),
    ("sw/v1/Demo/gw-shelter-a/chg1/telemetry", good(1), "bad_topic"),
    ("sw/v1/demo-estate/gw-shelter-a/chg1/cmd", good(1), "bad_topic"),
    ("sw/v1/other-site/gw-shelter-a/chg1/telemetry", good(1), "unknown_site"),
    ("sw/v1/demo-estate/gw-rogue/chg1/telemetry", good(1), "unknown_gateway"),
    ("sw/v1/demo-estate/gw-shelter-a/chg9/telemetry", good(1), "unknown_device"),
    ("sw/v1/demo-estate/gw-shelter-b/chg1/telemetry", good(1), "wrong_identity"),  # chg1 is shelter A's
]


def test_hand_written_bad_messages_get_their_reason_and_good_ones_still_flow() -> None:
    p, storage, safety, _ = make_pipeline()
    seq = 1
    for topic, payload, reason in HAND_WRITTEN:
        assert p.handle(topic, payload, time.time()) == reason, (topic, payload[:60])
        assert p.handle(T_CHG1, good(seq), time.time()) == "ok"
        seq += 1
    assert p.stats.dead == {r: sum(1 for *_, x in HAND_WRITTEN if x == r) for _, _, r in HAND_WRITTEN}
    assert p.stats.accepted == seq - 1 == len(safety.drain())
    assert len({pt.ts_ms for pt in storage.points}) == seq - 1 and len(storage.points) == 2 * (seq - 1)
    kept = p.dead.recent(100)
    assert len(kept) == len(HAND_WRITTEN)
    assert {d.reason for d in kept} == {r for *_, r in HAND_WRITTEN}
    assert all(len(d.payload) <= 4096 for d in kept)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    payload=st.one_of(
        st.binary(max_size=300),
        json_values.map(lambda v: msgspec.json.encode(v)),
        st.dictionaries(
            st.sampled_from(["v", "ts", "seq", "values", "snapshot", "x"]), json_values, max_size=6
        ).map(lambda v: msgspec.json.encode(v)),
    )
)
def test_generated_garbage_is_dead_lettered_never_raises(payload: bytes) -> None:
    p, _storage, _safety, _ = make_pipeline()
    try:
        wire.decode(wire.Kind.TELEMETRY, payload)
        valid = True
    except (wire.WireError, UnicodeDecodeError):
        valid = False
    out = p.handle(T_CHG1, payload, time.time())
    if valid:
        assert out == "ok"
    else:
        assert out in ("bad_json", "bad_schema", "not_utf8", "oversized")
        assert p.stats.dead[out] == 1
    assert p.handle(T_CHG1, good(10_000), time.time()) == "ok"  # and the next good one is fine


@settings(max_examples=200)
@given(topic=st.text(max_size=80))
def test_generated_topics_never_raise(topic: str) -> None:
    p, *_ = make_pipeline()
    out = p.handle(topic, good(1), time.time())
    assert out in ("ok", "bad_topic", "unknown_site", "unknown_gateway", "unknown_device", "wrong_identity")


def test_replays_are_dropped_and_not_dead_lettered() -> None:
    p, _storage, _safety, _ = make_pipeline()
    for s in [5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 2]:
        p.handle(T_CHG1, good(s), time.time())
    assert p.stats.accepted == 8 and p.stats.duplicates == 3 and not p.stats.dead


def test_telemetry_becomes_points_with_site_labels() -> None:
    p, storage, _, _ = make_pipeline()
    payload = wire.encode(
        wire.Telemetry(
            ts=TS, seq=1, values={"bay.1.occupied": True, "bay.1.battery": 3.01, "bay.9.rssi": -70}
        )
    )
    assert p.handle("sw/v1/demo-estate/gw-shelter-b/bays-b/telemetry", payload, time.time()) == "ok"
    by_bay = {dict(pt.series.tags)["bay"]: (dict(pt.series.tags), pt.fields) for pt in storage.points}
    tags1, fields1 = by_bay["1"]
    assert fields1 == {"occupied": True, "battery": 3.01}
    assert tags1 == {
        "site": "demo-estate",
        "gateway": "gw-shelter-b",
        "device": "bays-b",
        "shelter": "shelter-b",
        "zone": "b",
        "bay": "1",
        "fire_lane": "true",
    }
    assert "fire_lane" not in by_bay["9"][0]
    assert storage.points[0].ts_ms == int(TS.timestamp() * 1000)
    assert p.last_values[("demo-estate", "bays-b")][0]["bay.9.rssi"] == -70


def test_status_of_a_registered_gateway_reaches_the_registry_and_safety() -> None:
    p, _, safety, _reg = make_pipeline()
    seen = []
    p.on_status = lambda site, gw, st: seen.append((site, gw, st.state)) or False
    p.handle("sw/v1/demo-estate/gw-garage/status", wire.encode(wire.last_will(TS)), time.time())
    assert seen == [("demo-estate", "gw-garage", "offline")]
    assert safety.drain()[0].kind is wire.Kind.STATUS


def test_urgent_telemetry_is_telemetry_on_the_safety_lane() -> None:
    """docs/wire.md, "Urgent telemetry": the same payload and seq counter as telemetry, stored and
    judged like it; only the topic (and so the lane) differs."""
    p, storage, safety, _ = make_pipeline()
    body = (b'{"v": 1, "ts": "2026-03-02T08:00:07.000Z", "seq": 7, "epoch": "", "snapshot": false,'
            b' "values": {"port.1.connector_temp": 71.2}}')
    assert p.handle("sw/v1/demo-estate/gw-shelter-a/chg1/urgent", body, time.time()) == "ok"
    (m,) = safety.drain()
    assert m.kind is wire.Kind.URGENT and m.device == "chg1" and isinstance(m.payload, wire.Telemetry)
    assert m.payload.values == {"port.1.connector_temp": 71.2}
    (pt,) = storage.points
    assert pt.fields == {"connector_temp": 71.2} and dict(pt.series.tags)["port"] == "1"
    assert pt.ts_ms == int((TS + timedelta(seconds=7)).timestamp() * 1000)
    assert p.last_values[("demo-estate", "chg1")][0]["port.1.connector_temp"] == 71.2
    # one counter across both topics: seq 7 again as plain telemetry is a replay; older seq still goes in
    assert p.handle(T_CHG1, good(7), time.time()) == "duplicate"
    older = b'{"v": 1, "ts": "2026-03-02T08:00:06.000Z", "seq": 6, "values": {"port.1.connector_temp": 68.5}}'
    assert p.handle(T_CHG1, older, time.time()) == "ok"  # the lane it overtook delivers it afterwards
    assert len(storage.points) == 2  # stored: every reading is kept
    assert p.last_values[("demo-estate", "chg1")][0]["port.1.connector_temp"] == 71.2  # but not newer
