"""Every panel query of every dashboard, with its template variables expanded as Grafana does, runs on a
real InfluxDB 1.6 holding a simulated day and returns plausible, non-empty results."""

from __future__ import annotations

import itertools
import json
import math
from collections import defaultdict
from typing import Any

import pytest

from dashboards import sample_data as sd
from dashboards.build import build_all, to_json
from dashboards.templating import effective_interval, interpolate, time_filter

pytestmark = [pytest.mark.integration, pytest.mark.slow]

AUTO_INTERVAL = "5m"  # what Grafana picks for 24 h on a ~300-point wide panel


def _targets() -> list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]]:
    out = []
    for name, d in build_all().items():
        j = json.loads(to_json(d))
        for p in j["panels"]:
            for t in p["targets"]:
                out.append((name, j, p, t))
    return out


TARGETS = _targets()


def _variables(estate_day, dash: dict[str, Any]) -> dict[str, list[str]]:
    """Run each variable's own query in order, select All, as a manager opening the dashboard does."""
    values: dict[str, list[str]] = {}
    tf = time_filter(estate_day.start_ms, estate_day.end_ms)
    for v in dash["templating"]["list"]:
        q = interpolate(v["query"], values, tf, AUTO_INTERVAL)
        res = estate_day.db.query(q)["results"][0]
        got = sorted({row[1] for s in res.get("series", []) for row in s["values"]})
        assert got, f"variable {v['name']} has no values: {q}"
        values[v["name"]] = got
    return values


def _series(estate_day, dash, panel, target, variables=None) -> list[dict[str, Any]]:
    variables = variables or _variables(estate_day, dash)
    iv = effective_interval(AUTO_INTERVAL, panel.get("interval"))
    q = interpolate(
        target["query"], variables, time_filter(estate_day.start_ms, estate_day.end_ms + 60_000), iv
    )
    res = estate_day.db.query(q)["results"][0]
    return res.get("series", [])


def _values(series: list[dict[str, Any]], col: int = 1) -> list[Any]:
    return [row[col] for s in series for row in s["values"] if row[col] is not None]


@pytest.mark.parametrize(
    ("name", "dash", "panel", "target"),
    TARGETS,
    ids=[f"{n}:{p['title']}:{t['refId']}" for n, _, p, t in TARGETS],
)
def test_panel_query_runs_and_returns_data(estate_day, name, dash, panel, target) -> None:
    series = _series(estate_day, dash, panel, target)
    vals = _values(series)
    assert vals, f"{name} / {panel['title']} / {target['refId']} returned nothing"
    for v in vals:
        if isinstance(v, float):
            assert math.isfinite(v)
    _plausible(panel["title"], target["refId"], series)


def _plausible(title: str, ref: str, series: list[dict[str, Any]]) -> None:
    vals = _values(series)
    if title in ("Connector temperature per port", "Cabinet ambient temperature"):
        assert all(sd.TEMP_RANGE[0] <= v <= sd.TEMP_RANGE[1] for v in vals)
    elif title == "Free bays per zone":
        for s in series:
            zone = s["tags"]["zone"]
            assert 0 < s["values"][0][1] <= len(sd.ZONES[zone])
    elif title == "Occupied bays per zone":
        for s in series:
            assert all(0 <= row[1] <= len(sd.ZONES[s["tags"]["zone"]]) for row in s["values"])
        assert max(vals) > 0
    elif title == "Session energy per port":
        for s in series:
            seq = [r[1] for r in s["values"] if r[1] is not None]
            for a, b in itertools.pairwise(seq):
                # non-decreasing within a session; a drop only to a fresh session's first readings
                assert b >= a - 1e-9 or b < 0.1, (s["tags"], a, b)
    elif title == "Energy today":
        assert 0 < vals[0] <= 22 * 24 * 0.3
    elif title == "Sprinkler pipe pressure" or title == "Pipe pressure":
        assert all(250 <= v <= 700 for v in vals), "bar monitors ×100 and kPa monitors agree in kPa"
    elif title == "Communication error rate":
        assert all(0 <= v <= 100 for v in vals)
        assert max(vals) == 100, "riser-2 offline: every poll timed out"
    elif title == "Bay sensor batteries":
        assert all(sd.BATTERY_RANGE[0] <= v <= sd.BATTERY_RANGE[1] for v in vals)
    elif title == "Bay sensors with low battery":
        assert all(v < 3.1 for v in vals)
    elif title == "Active alarms by severity":
        sev = {s["tags"]["severity"]: s["values"][0][1] for s in series}
        assert sev == {"warning": 1, "minor": 2, "major": 1}
    elif title == "Devices offline":
        assert vals == [1]
    elif title == "Offline devices":
        assert [s["tags"]["device"] for s in series] == ["riser-2"]
    elif title == "Gateways online":
        assert vals == [3]
    elif title == "Charge sessions flagged":
        rows = {(s["tags"]["device"], s["tags"]["port"], s["tags"]["reason"]) for s in series}
        assert rows == {("pile-1", "7", "unexplained_heat")}, rows
        row = dict(zip(series[0]["columns"], series[0]["values"][0], strict=True))
        assert row["peak_temp"] >= 65.0 and row["energy"] > 0, row  # the session the interlock then cut
    elif title == "Charge sessions over 8 h":
        assert [(s["tags"]["device"], s["tags"]["instance"]) for s in series] == [("cabinet-2", "3")]
    elif title == "Ports cut off" and ref == "A":
        assert vals == [1]
    elif title == "Ports above warning levels":
        hot = {(s["tags"]["device"], s["tags"]["port"]) for s in series}
        assert {("pile-1", "7"), ("cabinet-2", "5")} <= hot
    elif title in ("Fire-lane bays occupied now",):
        assert vals == [1]
    elif title == "Turnover per zone":
        assert all(v >= 0 for v in vals) and sum(vals) > 0
    elif title in ("Dwell time per zone", "Median dwell time"):
        assert all(0 < v <= 86400 for v in vals)
    elif title == "Monitor supply voltage":
        assert all(20 <= v <= 28 for v in vals)


def test_turnover_counts_every_departure(estate_day) -> None:
    """The turnover panel's buckets add up to the number of stays the simulator ended."""
    _name, dash, panel, target = next(t for t in TARGETS if t[2]["title"] == "Turnover per zone")
    assert sum(_values(_series(estate_day, dash, panel, target))) == estate_day.stays


def test_cloud_history_wrote_exactly_the_stays_of_the_day(estate_day) -> None:
    """parking_stay comes from cloud/history's writer on the day's telemetry: every stay the generator
    ended (bay, departure time, dwell), with the bay's zone and fire-lane labels, and nothing else."""
    res = estate_day.db.query('SELECT "dwell_s", "bay", "zone", "fire_lane", "device" FROM "parking_stay"')
    rows = [r for s in res["results"][0]["series"] for r in s["values"]]
    assert sorted((int(r[2]), r[0], r[1]) for r in rows) == sorted(estate_day.stay_list)
    assert {(r[2], r[3], r[4], r[5]) for r in rows} <= {
        (str(b), sd.zone_of(b), "true" if b in sd.FIRE_LANE else "false", "hub-1") for b in range(1, 49)
    }


def test_cloud_history_wrote_a_point_for_every_charge_session(estate_day) -> None:
    """charge_session comes from cloud/history's session tracker on the day's charger telemetry: one
    point per ended session (and one when the edge flagged it), with the port's tags."""
    res = estate_day.db.query(
        'SELECT "duration_s", "energy_kwh", "flagged", "ended", "device", "port", "shelter", "reason" '
        'FROM "charge_session"'
    )
    rows = [dict(zip(s["columns"], r, strict=True)) for s in res["results"][0]["series"] for r in s["values"]]
    ended = [r for r in rows if r["ended"]]
    assert len(ended) >= 30, "two chargers, one to three sessions per port"
    assert {r["device"] for r in ended} == {"pile-1", "cabinet-2"} and {r["shelter"] for r in ended} == {
        "shelter-1", "shelter-2"}
    assert all(3000 <= r["duration_s"] <= 6 * 3600 + 2700 and r["energy_kwh"] > 0 for r in ended)
    flagged = [r for r in rows if r["flagged"]]
    assert {(r["device"], r["port"], r["reason"], r["ended"]) for r in flagged} == {
        ("pile-1", "7", "unexplained_heat", False), ("pile-1", "7", "unexplained_heat", True)}


def test_free_bays_match_bays_known_per_zone(estate_day) -> None:
    """Free ≤ total per zone, with the total itself taken from InfluxDB (not from the simulator)."""
    tf = time_filter(estate_day.start_ms, estate_day.end_ms)
    total = estate_day.db.query(
        f'SELECT count("last") FROM (SELECT last("occupied") FROM "parking_bay" WHERE {tf} '
        'GROUP BY "device", "bay", "zone") GROUP BY "zone"'
    )["results"][0]["series"]
    totals = {s["tags"]["zone"]: s["values"][0][1] for s in total}
    assert totals == {z: len(r) for z, r in sd.ZONES.items()}
    _name, dash, panel, target = next(
        t for t in TARGETS if t[0] == "parking" and t[2]["title"] == "Free bays per zone"
    )
    free = {s["tags"]["zone"]: s["values"][0][1] for s in _series(estate_day, dash, panel, target)}
    assert free and all(free[z] <= totals[z] for z in free)


def test_single_selection_filters(estate_day) -> None:
    """Choosing one shelter narrows the charger queries to its devices only."""
    _name, dash, panel, target = next(t for t in TARGETS if t[2]["title"] == "Connector temperature per port")
    variables = _variables(estate_day, dash)
    variables["shelter"] = ["shelter-2"]
    series = _series(estate_day, dash, panel, target, variables)
    assert {s["tags"]["device"] for s in series} == {"cabinet-2"}
    assert len(series) == 12
    by_dev: dict[str, int] = defaultdict(int)
    for s in _series(estate_day, dash, panel, target):
        by_dev[s["tags"]["device"]] += 1
    assert dict(by_dev) == {"cabinet-2": 12, "pile-1": 10}


def test_render_pictures_from_fetched_data(estate_day, tmp_path) -> None:
    """Render every dashboard from its queries' results; SW_DOCS_IMG=1 writes them to docs/img/."""
    import os
    from pathlib import Path

    from dashboards.render import render

    out_dir = (
        Path(__file__).resolve().parents[2] / "docs" / "img" if os.environ.get("SW_DOCS_IMG") else tmp_path
    )
    for name, d in build_all().items():
        dash = json.loads(to_json(d))
        variables = _variables(estate_day, dash)
        data = {
            p["id"]: [(t, _series(estate_day, dash, p, t, variables)) for t in p["targets"]]
            for p in dash["panels"]
        }
        png = render(dash, data, out_dir / f"dashboard-{name}.png")
        assert png.stat().st_size > 10_000


def test_day_went_through_the_ingester(estate_day, tmp_path) -> None:
    """Telemetry and device health are in InfluxDB because the ingester accepted them: it refuses a
    device the site file does not register (and ingest_day then refuses to pretend the day loaded)."""
    from dashboards.ingest_day import ingest_day

    assert estate_day.messages > 5000
    day = sd.Day(estate_day.end_ms)
    day.emit(sd.Device("pile-9", "voltpile-cp10", "gw-shelter-1", "shelter-1"), {"smoke": True}, 1, False)
    with pytest.raises(RuntimeError, match="unknown_device"):
        ingest_day(day, estate_day.db.url, estate_day.db.database, tmp_path)
    # The tags only the site file holds (instance labels) are on the stored bays.
    res = estate_day.db.query('SHOW TAG VALUES FROM "parking_bay" WITH KEY = "zone"')["results"][0]
    assert sorted(r[1] for r in res["series"][0]["values"]) == sorted(sd.ZONES)
