"""The dashboards as built: committed JSON current, SDK round-trip, titles/units/data sources, stable UIDs."""

from __future__ import annotations

import json
import re

import pytest
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard

from dashboards import build, schema
from dashboards.influxql import InfluxQLQuery
from dashboards.templating import effective_interval, format_value, interpolate, regex_escape, time_filter

DASHBOARDS = build.build_all()
JSONS = {name: json.loads(build.to_json(d)) for name, d in DASHBOARDS.items()}


def test_generated_json_is_current() -> None:
    """Fails when dashboards/generated/ drifts from the code: run `shelterwatch dashboards build`."""
    assert build.drift() == []


@pytest.mark.parametrize("name", sorted(JSONS))
def test_round_trips_through_sdk_model(name: str) -> None:
    j = JSONS[name]
    model = Dashboard.from_json(j)
    again = json.loads(json.dumps(model, cls=JSONEncoder, sort_keys=True))
    assert again == j
    targets = [t for p in model.panels or [] for t in p.targets or []]  # type: ignore[union-attr]
    assert targets and all(isinstance(t, InfluxQLQuery) for t in targets)


@pytest.mark.parametrize("name", sorted(JSONS))
def test_every_panel_has_title_unit_datasource(name: str) -> None:
    ds = {"type": schema.DATASOURCE_TYPE, "uid": schema.DATASOURCE_UID}
    panels = JSONS[name]["panels"]
    assert panels
    ids = [p["id"] for p in panels]
    assert len(set(ids)) == len(ids)
    for p in panels:
        assert p["title"].strip()
        assert p["fieldConfig"]["defaults"].get("unit"), p["title"]
        assert p["datasource"] == ds, p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert (
                t["datasource"] == ds and t["rawQuery"] is True and t["query"].startswith(("SELECT", "SHOW"))
            )
        steps = p["fieldConfig"]["defaults"]["thresholds"]["steps"]
        assert steps[0]["value"] is None


def test_uids_stable_and_unique() -> None:
    uids = {name: j["uid"] for name, j in JSONS.items()}
    assert uids == {
        "overview": "sw-overview",
        "chargers": "sw-chargers",
        "parking": "sw-parking",
        "sprinklers": "sw-sprinklers",
        "health": "sw-health",
    }
    again = {name: build.to_json(d) for name, d in build.build_all().items()}
    assert again == {name: build.to_json(d) for name, d in DASHBOARDS.items()}


@pytest.mark.parametrize("name", sorted(JSONS))
def test_queries_only_use_defined_variables(name: str) -> None:
    j = JSONS[name]
    defined = {v["name"] for v in j["templating"]["list"]}
    assert "site" in defined
    for p in j["panels"]:
        for t in p["targets"]:
            used = set(re.findall(r"\$(\w+)", t["query"])) - {"timeFilter", "__interval"}
            assert used <= defined, (p["title"], used - defined)
            assert "$timeFilter" in t["query"]
            assert "fill(previous)" not in t["query"], "InfluxDB 1.6 mis-merges it in subqueries"


def test_thresholds_follow_catalog_levels() -> None:
    from device_profiles.loader import get_profile

    rules = [
        a
        for pid in ("hengtong-ebc12", "voltpile-cp10")
        for a in get_profile(pid).alarms
        if a.key == "connector_overtemp"
    ]
    assert min(a.clear_at for a in rules) == schema.CONNECTOR_TEMP_WARN
    assert min(a.raise_at for a in rules) == schema.CONNECTOR_TEMP_ALARM
    low = next(a for a in get_profile("aquaguard-rm4").alarms if a.key == "low_pressure")
    assert (low.raise_at, low.clear_at) == (schema.PIPE_PRESSURE_LOW_KPA, schema.PIPE_PRESSURE_OK_KPA)


def test_regex_escape_and_multi_value() -> None:
    assert format_value("garage-b1") == "garage-b1"
    assert format_value(["a.b", "c/d"]) == r"(a\.b|c\/d)"
    assert regex_escape("x(1)") == r"x\(1\)"
    assert re.fullmatch("^" + format_value(["a.b", "c|d"]) + "$", "c|d")
    assert not re.fullmatch("^" + format_value(["a.b"]) + "$", "axb")


def test_interpolate() -> None:
    q = 'SELECT 1 FROM m WHERE $timeFilter AND "site" =~ /^$site$/ GROUP BY time($__interval)'
    out = interpolate(q, {"site": ["a", "b"]}, time_filter(), "5m")
    assert out == 'SELECT 1 FROM m WHERE time >= now() - 24h AND "site" =~ /^(a|b)$/ GROUP BY time(5m)'
    with pytest.raises(KeyError, match="zone"):
        interpolate("$zone", {}, time_filter(), "5m")
    assert time_filter(1000, 2000) == "time >= 1000ms and time <= 2000ms"
    assert effective_interval("1m", "10m") == "10m" and effective_interval("1h", "10m") == "1h"
