"""Acceptance: mosquitto + InfluxDB 1.x in v1 mode (/write), read back with InfluxQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud.site_config import load_site
from tests.integration.ingest_support import DEMO_SITE, expected_points, publish_demo_hour, running_ingester

pytestmark = [pytest.mark.integration, pytest.mark.slow]



def influx_points(db, measurements: list[str]) -> dict:
    out = {}
    for m in measurements:
        tag_body = db.query(f'SHOW TAG KEYS FROM "{m}"')
        tag_keys = {v[0] for res in tag_body["results"] for ser in res.get("series", []) for v in ser["values"]}
        body = db.query(f'SELECT * FROM "{m}"')
        for res in body["results"]:
            for series in res.get("series", []):
                cols = series["columns"]
                for row in series["values"]:
                    rec = dict(zip(cols, row, strict=True))
                    ts = rec.pop("time")
                    tags = frozenset(
                        (k, rec.pop(k)) for k in list(rec) if k in tag_keys and rec[k] is not None
                    )
                    for k in list(rec):
                        if k in tag_keys:
                            rec.pop(k)
                    for f, v in rec.items():
                        if v is not None:
                            out[(m, f, tags, ts)] = v
    return out


def test_simulated_hour_round_trip_influxdb1(tmp_path: Path, mosquitto, influxdb1) -> None:
    site = load_site(DEMO_SITE)
    with running_ingester(tmp_path, mosquitto.url, f"influx1://127.0.0.1:{influxdb1.port}/shelterwatch") as (
        svc,
        _,
    ):
        res = publish_demo_hour(mosquitto.url, svc, "gw-influx1")
        assert svc.stats()["dead_letters"] == {}
    expected = expected_points(res.sent, site)
    measurements = sorted({m for (m, _, _, _) in expected})
    got = influx_points(influxdb1, measurements)
    missing = set(expected) - set(got)
    extra = set(got) - set(expected)
    assert not missing, sorted(missing, key=str)[:3]
    assert not extra, sorted(extra, key=str)[:3]
    for k, v in expected.items():
        if isinstance(v, bool | str):
            assert got[k] == v, k  # booleans and enum labels come back exactly
        else:
            assert got[k] == pytest.approx(float(v)), k
