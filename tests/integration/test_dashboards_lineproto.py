"""The sample-data writer's escaping survives a real InfluxDB 1.x round trip."""

from __future__ import annotations

import pytest

from dashboards.sample_data import line, write_lines

pytestmark = pytest.mark.integration


def test_escaped_tags_and_fields_come_back_unchanged(influxdb1) -> None:
    tags = {"site": "old estate, north", "zone": "a=b c"}
    write_lines(
        influxdb1.url,
        influxdb1.database,
        [line("m", tags, {"on": False, "v": 2, "s": 'x "y" \\ z'}, 1_700_000_000_000)],
    )
    res = influxdb1.query('SELECT "on", "v", "s" FROM "m" GROUP BY *')["results"][0]["series"][0]
    assert res["tags"] == tags
    assert res["values"] == [[1_700_000_000_000, False, 2.0, 'x "y" \\ z']]
