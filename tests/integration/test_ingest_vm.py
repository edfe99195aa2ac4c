"""Acceptance: mosquitto + VictoriaMetrics through influxdb-client's v2 write API.

The edge agent is built in parallel, so the "simulated hour of a site" is published by the fleet
generator acting as the demo estate's three gateways, with timestamps spread over an hour.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud.site_config import load_site
from tests.integration.ingest_support import (
    DEMO_SITE,
    expected_points,
    publish_demo_hour,
    running_ingester,
    vm_points,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _compare_vm(expected: dict, got: dict) -> None:
    """VictoriaMetrics keeps numbers only: booleans read back as 1/0 and string fields (enum labels)
    as 0, so strings are compared on presence, everything else on value."""
    want = {}
    for (m, f, tags, ts), v in expected.items():
        want[(f"{m}_{f}", "", tags, ts)] = v
    missing = set(want) - set(got)
    extra = set(got) - set(want)
    assert not missing, f"{len(missing)} points missing, e.g. {sorted(missing, key=str)[:3]}"
    assert not extra, f"{len(extra)} unexpected points, e.g. {sorted(extra, key=str)[:3]}"
    for k, v in want.items():
        if isinstance(v, str):
            continue
        assert got[k] == pytest.approx(float(v)), k


def test_simulated_hour_round_trip(tmp_path: Path, mosquitto, victoriametrics) -> None:
    site = load_site(DEMO_SITE)
    with running_ingester(
        tmp_path, mosquitto.url, f"influx2://127.0.0.1:{victoriametrics.port}?bucket=sw&org=sw"
    ) as (svc, safety):
        res = publish_demo_hour(mosquitto.url, svc, "gw-vm")
        st = svc.stats()
    expected = expected_points(res.sent, site)
    span = {ts for (_, _, _, ts) in expected}
    assert max(span) - min(span) >= 3500 * 1000, "the published data must span an hour"
    assert st["dead_letters"] == {}, st
    assert st["accepted"] == res.published
    assert len(safety.drain()) == res.published  # every accepted message reached the safety path
    telemetry = {
        k: v
        for k, v in vm_points(
            victoriametrics.export('{__name__!~"device_health.*|gateway_health.*"}')
        ).items()
    }
    _compare_vm(expected, telemetry)
    assert len(expected) > 10_000
