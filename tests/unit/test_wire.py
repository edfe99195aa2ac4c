"""The wire contract: topics, payload validation, and every example in docs/wire.md."""

from __future__ import annotations

import contextlib
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from device_profiles import wire

DOC = Path(__file__).parents[2] / "docs" / "wire.md"


def doc_examples() -> list[tuple[str, str]]:
    return re.findall(r"```json ([a-z-]+)\n(.*?)```", DOC.read_text(), re.S)


def test_doc_has_an_example_of_every_kind():
    kinds = {k for k, _ in doc_examples()}
    assert kinds == {k.value for k in wire.Kind} | {"time"}


@pytest.mark.parametrize(("kind", "body"), doc_examples())
def test_doc_examples_validate(kind, body):
    if kind == "time":
        beacon = wire.decode_beacon(body.encode())
        assert beacon.ts.tzinfo is not None and wire.decode_beacon(wire.encode(beacon)) == beacon
        return
    msg = wire.decode(wire.Kind(kind), body.encode())
    assert msg.v == 1 and msg.ts.tzinfo is not None
    again = wire.decode(wire.Kind(kind), wire.encode(msg))
    assert again == msg


@pytest.mark.parametrize(
    ("kind", "device"),
    [(wire.Kind.STATUS, None), (wire.Kind.GATEWAY_HEALTH, None)] + [(k, "chg1") for k in wire.DEVICE_KINDS],
)
def test_topic_round_trip(kind, device):
    t = wire.topic("estate-a", "gw-1", kind, device)
    assert wire.parse_topic(t) == wire.Topic("estate-a", "gw-1", kind, device)


@pytest.mark.parametrize(
    "bad",
    ["sw/v2/a/b/status", "sw/v1/a/b", "sw/v1/a/b/c/telemetry/x", "sw/v1/A/b/status", "sw/v1/a/b/c/temperature",
     "sw/v1/a/+/status", "other/v1/a/b/status", "sw/v1/a/b/c d/event", ""],
)
def test_bad_topics(bad):
    with pytest.raises(wire.WireError) as e:
        wire.parse_topic(bad)
    assert e.value.reason == "bad_topic"


def test_topic_ids_are_checked():
    with pytest.raises(wire.WireError):
        wire.topic("estate/a", "gw", wire.Kind.STATUS)
    with pytest.raises(wire.WireError):
        wire.topic("a", "gw", wire.Kind.TELEMETRY)  # device missing
    with pytest.raises(wire.WireError):
        wire.topic("a", "gw", wire.Kind.STATUS, "dev")  # device not expected


def test_subscriptions_cover_uplink_only():
    subs = wire.subscriptions()
    assert "sw/v1/+/+/+/telemetry" in subs and not any(s.endswith("/cmd") for s in subs)
    assert wire.shared(subs[0]) == "$share/ingest/" + subs[0]


TS = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b'{"v":1,"ts":"2026-01-01T00:00:00Z","seq":"one","values":{}}', "bad_schema"),
        (b'{"v":1,"ts":"2026-01-01T00:00:00Z","seq":-1,"values":{}}', "bad_schema"),
        (b'{"v":1,"ts":"2026-01-01T00:00:00","seq":1,"values":{}}', "bad_schema"),  # no time zone
        (b'{"v":2,"ts":"2026-01-01T00:00:00Z","seq":1,"values":{}}', "bad_schema"),
        (b'{"v":1,"ts":"2026-01-01T00:00:00Z","seq":1,"values":{"a":null}}', "bad_schema"),
        (b'{"v":1,"ts":"2026-01-01T00:00:00Z","seq":1,"values":{"a":[1]}}', "bad_schema"),
        (b'{"v":1,"ts":"2026-01-01T00:00:00Z","seq":1', "bad_json"),
        (b"\xff\xfe\x00garbage", "not_utf8"),
        (b'{"v":1,"ts":"2026-01-01T00:00:00Z","seq":1,"values":{"a":"\xff"}}', "not_utf8"),
        (b'{"v":1,"ts":"2026-01-01T00:00:0\xffZ","seq":1,"values":{}}', "not_utf8"),
        (b"[]", "bad_schema"),
        (b'{"v":1,"ts":"2026-01-01T00:00:00Z","seq":1,"values":{"' + b"a" * (70 * 1024) + b'":1}}', "oversized"),
    ],
)
def test_bad_telemetry_reasons(payload, reason):
    with pytest.raises(wire.WireError) as e:
        wire.decode(wire.Kind.TELEMETRY, payload)
    assert e.value.reason == reason


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_escape_as_other_errors(data):
    for kind in wire.Kind:
        with contextlib.suppress(wire.WireError):
            wire.decode(kind, data)


@given(values=st.dictionaries(st.from_regex(r"[a-z]{1,8}(\.[0-9]{1,2}\.[a-z_]{1,12})?", fullmatch=True),
                              st.one_of(st.booleans(), st.integers(-(2**40), 2**40),
                                        st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20)),
                              max_size=30),
       seq=st.integers(1, 2**53))
def test_telemetry_round_trip(values, seq):
    msg = wire.Telemetry(ts=TS, seq=seq, values=values)
    assert wire.decode(wire.Kind.TELEMETRY, wire.encode(msg)) == msg


def test_last_will_and_ids():
    lw = wire.decode(wire.Kind.STATUS, wire.encode(wire.last_will(TS)))
    assert lw.state == "offline" and lw.reason
    assert wire.new_id() != wire.new_id() and len(wire.new_id()) == 32
    assert wire.now().tzinfo is UTC and wire.now().microsecond % 1000 == 0


TS_FORMAT = re.compile(r'"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[^"]*)"')


@given(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2999, 1, 1), timezones=st.just(UTC)))
def test_every_time_is_written_exactly_as_the_doc_says(t):
    """`YYYY-MM-DDTHH:MM:SS.mmmZ`: three fraction digits, always, in every time field."""
    h = wire.DeviceHealth(ts=wire.wire_time(t), seq=1, online=True, last_ok=wire.at(t.timestamp()))
    found = TS_FORMAT.findall(wire.encode(h).decode())
    assert len(found) == 2
    for s in found:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", s), s
    assert wire.decode(wire.Kind.HEALTH, wire.encode(h)).ts == t.replace(microsecond=t.microsecond // 1000 * 1000)
