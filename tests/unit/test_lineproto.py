"""Line-protocol serialisation (escaping, types) — the integration tests check InfluxDB parses it."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloud.tsdb.lineproto import Series, TsPoint, field_value, line, lines


def test_escaping_and_types() -> None:
    s = Series.make("charger port", {"zone": "a,b=c d", "site": "x", "empty": ""})
    assert s.key == r"charger\ port,site=x,zone=a\,b\=c\ d"  # sorted, empty tags dropped
    p = TsPoint(s, {"v": 230, "ok": True, "state": 'say "hi"\\', "t": 21.5}, 1700000000123)
    assert (
        line(p)
        == r'charger\ port,site=x,zone=a\,b\=c\ d v=230.0,ok=true,state="say \"hi\"\\",t=21.5 1700000000123'
    )


def test_ints_are_written_as_floats_so_field_types_never_conflict() -> None:
    assert field_value(230) == "230.0"
    assert field_value(230.5) == "230.5"
    assert field_value(False) == "false"


def test_nan_is_skipped_not_fatal() -> None:
    s = Series.make("m", {})
    body = lines([TsPoint(s, {"v": math.nan}, 1), TsPoint(s, {"v": 1.0}, 2)])
    assert body == b"m v=1.0 2"
    with pytest.raises(ValueError):
        field_value(math.inf)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_floats_round_trip_exactly(x: float) -> None:
    assert float(field_value(x)) == x
