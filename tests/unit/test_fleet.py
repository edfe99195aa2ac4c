"""The fleet generator makes valid wire-contract traffic with rising per-device sequences."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path

from cloud.site_config import load_site
from device_profiles import wire
from simulators.fleet import FleetConfig, FleetModel, site_file_text
from tests.integration.ingest_support import DEMO_SITE


def test_messages_are_valid_and_sequences_rise() -> None:
    m = FleetModel(FleetConfig(gateways=5, ticks=200, sim_start=datetime(2026, 1, 1, tzinfo=UTC), tick_s=1.0))
    seqs: dict[str, list[int]] = defaultdict(list)
    kinds: Counter[str] = Counter()
    stamps = []
    for topic, payload, retain in m.messages():
        t = wire.parse_topic(topic)
        msg = wire.decode(t.kind, payload)  # raises if the contract is broken
        kinds[t.kind.value] += 1
        assert retain == (t.kind is wire.Kind.STATUS)
        if t.device:
            seqs[t.device].append(msg.seq)
        stamps.append(msg.ts)
    assert all(s == list(range(1, len(s) + 1)) for s in seqs.values())  # from 1, as docs/wire.md says
    assert len(seqs) == 20
    assert kinds["status"] == 5 and kinds["event"] > 0 and kinds["health"] > 0 and kinds["gateway-health"] > 0
    assert kinds["telemetry"] > 5 * 4 * 150
    assert (max(stamps) - min(stamps)).total_seconds() >= 199


def test_same_seed_same_traffic_and_site_file_registers_it(tmp_path: Path) -> None:
    cfg = FleetConfig(gateways=2, ticks=20, sim_start=datetime(2026, 1, 1, tzinfo=UTC), epoch="e1")
    a = [(t, p) for t, p, _ in FleetModel(cfg).messages() if "/event" not in t]
    b = [(t, p) for t, p, _ in FleetModel(cfg).messages() if "/event" not in t]  # event ids are UUIDs
    assert a == b
    f = tmp_path / "fleet.yaml"
    f.write_text(site_file_text("fleet", FleetModel(cfg).topology))
    s = load_site(f)
    assert s.auto_enrol and len(s.gateways) == 2 and len(s.gateways[0].devices) == 4


def test_demo_site_topology() -> None:
    m = FleetModel(FleetConfig(site_file=str(DEMO_SITE), ticks=1, sim_start=datetime(2026, 1, 1, tzinfo=UTC)))
    assert m.site == "demo-estate"
    assert {g.id: [d.id for d in g.devices] for g in m.gateways} == {
        g.id: [d.id for d in g.devices] for g in load_site(DEMO_SITE).gateways
    }


def test_routine_fleet_values_trip_no_rate_of_rise_alarm() -> None:
    """The fleet is routine load: fed through the profiles' own rate-of-rise rules (connector
    heating fast), its drifting values must raise nothing (uniform jumps raised tens a second)."""
    from cloud.alarms.rules import Action, Track, step
    from device_profiles.loader import get_profile
    from device_profiles.model import AlarmKind

    m = FleetModel(FleetConfig(gateways=4, ticks=400, sim_start=datetime(2026, 1, 1, tzinfo=UTC), tick_s=0.2))
    profiles = {d.id: d.profile for g in m.gateways for d in g.devices}
    tracks: dict[tuple[str, str, str], Track] = {}
    fed = raised = 0
    for topic, payload, _ in m.messages():
        t = wire.parse_topic(topic)
        if t.kind is not wire.Kind.TELEMETRY or t.device is None:
            continue
        msg = wire.decode(t.kind, payload)
        rules = [r for r in get_profile(profiles[t.device]).alarms if r.kind is AlarmKind.RATE_OF_RISE]
        for pid, v in msg.values.items():
            for r in rules:
                if pid.split(".")[-1] == r.point:
                    tr = tracks.setdefault((t.device, pid, r.key), Track())
                    fed += 1
                    raised += step(r, tr, v, msg.ts.timestamp()) is Action.RAISE
    assert fed > 1000 and raised == 0
