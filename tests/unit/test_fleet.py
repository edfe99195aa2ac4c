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


def every_profile_site(tmp_path: Path, tick_s: float, ticks: int) -> tuple[FleetModel, Path]:
    """One virtual gateway holding one device of every catalog profile (a profile added to the
    catalog joins by itself); instances that a profile's `only_tagged` rules watch are tagged so on
    instances 1 and 2 (fire-lane bays)."""
    from device_profiles.loader import catalog
    from simulators.fleet import FleetDevice

    devices = []
    for pid, prof in sorted(catalog().items()):
        tags = {r.only_tagged for r in prof.alarms if r.only_tagged}
        inst = {i: {t: "true" for t in tags} for i in (1, 2)} if tags else {}
        devices.append(FleetDevice(f"d-{pid}", pid, {"shelter": "all"}, inst))
    f = tmp_path / "every-profile.yaml"
    f.write_text(site_file_text("every", [("gw-all", devices)]))
    cfg = FleetConfig(site_file=str(f), sim_start=datetime(2026, 1, 1, tzinfo=UTC), tick_s=tick_s, ticks=ticks)
    return FleetModel(cfg), f


def test_a_simulated_hour_of_every_profile_raises_no_alarm_in_the_engine(tmp_path: Path) -> None:
    """The fleet is routine load at rest: an hour of every catalog profile (a message every 2 s per
    device, snapshots, bay events, health) through the real alarm engine — every rule kind the
    profiles declare, the site's fire-lane tags, gateway and device silence — raises nothing."""
    from cloud.alarms.directory import StaticDirectory
    from cloud.alarms.engine import AlarmEngine
    from cloud.alarms.store import AlarmStore
    from cloud.safety import SafetyMessage

    model, site_path = every_profile_site(tmp_path, 2.0, 1800)
    cfg = load_site(site_path).alarm_config()
    now = [model.clock(0).timestamp()]
    store = AlarmStore(f"sqlite:///{tmp_path / 'alarms.db'}")
    engine = AlarmEngine(store, StaticDirectory([cfg]), [cfg], clock=lambda: now[0], seen_flush_s=1e9,
                         restart_grace_s=0)
    fed: Counter[str] = Counter()

    def feed(topic: str, payload: bytes) -> None:
        t = wire.parse_topic(topic)
        msg = wire.decode(t.kind, payload)
        now[0] = max(now[0], msg.ts.timestamp())
        engine.process(SafetyMessage(t.site, t.gateway, t.device, t.kind, msg, now[0]))
        fed[t.kind.value] += 1

    for topic, payload, _ in model.births():
        feed(topic, payload)
    while model.tick < model.cfg.ticks:  # type: ignore[operator]
        for topic, payload, _ in model.tick_messages():
            feed(topic, payload)
        engine.tick(now[0])
    alarms = store.list_alarms(limit=50)
    store.close()
    assert now[0] - model.clock(0).timestamp() >= 3590  # an hour: 1800 ticks of 2 s
    assert fed["telemetry"] > 1800 * 4 and fed["event"] > 0 and fed["health"] > 0
    assert engine.counters["unknown_device"] == 0 and engine.counters["errors"] == 0
    assert [(a.device, a.rule, a.instance, a.value) for a in alarms] == []


def test_long_states_end_before_their_rule_fires_and_values_stay_in_range(tmp_path: Path) -> None:
    """Ten simulated hours at one tick a minute, through the pure rules: no state rule (a port
    charging over 8 h, a car in a fire lane) and no threshold rule fires, and every number stays in
    the range its generator was given."""
    from cloud.alarms.rules import Action, Track, due, step
    from device_profiles.loader import get_profile
    from device_profiles.model import AlarmKind, AlarmRule, split_point_id

    model, site_path = every_profile_site(tmp_path, 60.0, 600)
    tagged = {d.id: d.instance_labels for g in load_site(site_path).gateways for d in g.devices}
    gens = {(d.id, p.id): p for g in model.gateways for d in g.devices for p in d.points}
    rules: dict[tuple[str, str | None, str | None], list[AlarmRule]] = {}
    for g in model.gateways:
        for d in g.devices:
            for r in get_profile(d.profile).alarms:
                if r.kind in (AlarmKind.STATE, AlarmKind.THRESHOLD):
                    rules.setdefault((d.id, r.block, r.point), []).append(r)
    tracks: dict[tuple[str, str, str], tuple[AlarmRule, Track]] = {}
    raised: list[tuple[str, str, str]] = []
    charging = 0
    for _ in model.births():
        pass
    while model.tick < 600:
        for topic, payload, _ in model.tick_messages():
            t = wire.parse_topic(topic)
            if t.kind is not wire.Kind.TELEMETRY or t.device is None:
                continue
            msg = wire.decode(t.kind, payload)
            ts = msg.ts.timestamp()
            for pid, v in msg.values.items():
                g = gens[(t.device, pid)]
                if g.kind in ("int", "float"):
                    assert g.lo <= v <= g.hi, (t.device, pid, v)
                charging += v == "charging"
                block, idx, key = split_point_id(pid)
                for r in rules.get((t.device, block, key), ()):
                    if r.only_tagged and tagged[t.device].get(idx or 0, {}).get(r.only_tagged) != "true":
                        continue  # an untagged instance: the rule does not watch it
                    _, tr = tracks.setdefault((t.device, pid, r.key), (r, Track()))
                    if step(r, tr, v, ts) is Action.RAISE:
                        raised.append((t.device, pid, r.key))
        for (dev, pid, key), (r, tr) in tracks.items():
            if due(r, tr, ts) is Action.RAISE:
                raised.append((dev, pid, key))
    assert charging > 100, "ports do charge (only never for 8 h on end)"
    assert raised == []
