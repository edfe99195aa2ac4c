"""Site files (located errors) and the registry (registration, auto-enrolment, status)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cloud.site_config import load_site
from cloud.state.registry import Registry
from device_profiles import wire
from device_profiles.located_yaml import ConfigError
from tests.integration.ingest_support import DEMO_SITE


def test_demo_estate_matches_the_simulators_sites() -> None:
    s = load_site(DEMO_SITE)
    assert s.site == "demo-estate"
    got = {g.id: {d.id: d.profile for d in g.devices} for g in s.gateways}
    assert got == {
        "gw-shelter-a": {"chg1": "voltpile-cp10", "chg2": "hengtong-ebc12", "spk1": "nanfang-fsm8"},
        "gw-shelter-b": {"chg3": "hengtong-ebc12", "spk2": "aquaguard-rm4", "bays-b": "geomag-rx200"},
        "gw-garage": {"hub1": "parkhub-ph48", "rx1": "geomag-rx200"},
    }


@pytest.mark.parametrize(
    ("text", "line", "key", "msg"),
    [
        (
            "site: s1\ngateways:\n  - id: g1\n    devices:\n      - {id: d1, profile: nope}\n",
            5,
            "gateways[0].devices[0].profile",
            "unknown profile",
        ),
        ("site: s1\ngateways:\n  - id: g1\n    devcies: []\n", 4, "gateways[0].devcies", "unknown key"),
        ("site: S 1\n", 1, "site", "pattern"),
        ("site: s1\nauto_enrol: maybe\n", 2, "auto_enrol", "true or false"),
        (
            "site: s1\ngateways:\n  - id: g1\n    devices:\n      - id: d1\n        profile: voltpile-cp10\n"
            "        instance_labels: {x: {zone: a}}\n",
            7,
            "gateways[0].devices[0].instance_labels",
            "whole number",
        ),
    ],
)
def test_site_file_mistakes_name_file_line_and_key(
    tmp_path: Path, text: str, line: int, key: str, msg: str
) -> None:
    f = tmp_path / "site.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_site(f)
    issue = e.value.issues[0]
    assert (issue.file, issue.line) == (str(f), line)
    assert issue.key.startswith(key) and msg in issue.message, str(issue)


def test_duplicate_device_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text(
        "site: s1\ngateways:\n  - {id: g1, devices: [{id: d1, profile: voltpile-cp10}]}\n"
        "  - {id: g2, devices: [{id: d1, profile: voltpile-cp10}]}\n"
    )
    with pytest.raises(ConfigError, match="listed twice"):
        load_site(f)


def test_register_update_and_remove(tmp_path: Path, db_url: str) -> None:
    reg = Registry(db_url)
    assert reg.register_site(load_site(DEMO_SITE)) == {"gateways": 3, "devices": 8, "removed_devices": 0}
    f = tmp_path / "smaller.yaml"
    f.write_text(
        "site: demo-estate\ngateways:\n  - {id: gw-garage, devices: [{id: hub1, profile: parkhub-ph48}]}\n"
    )
    assert reg.register_site(load_site(f))["removed_devices"] == 7
    d = reg.directory()
    assert set(d.devices) == {("demo-estate", "hub1")} and d.gateways == {("demo-estate", "gw-garage")}


def test_auto_enrolment_only_where_the_site_allows_it(tmp_path: Path, db_url: str) -> None:
    reg = Registry(db_url)
    reg.register_site(load_site(DEMO_SITE))  # auto_enrol: false
    birth = wire.Status(ts=wire.now(), state="online", devices=[wire.DeviceInfo("x1", "voltpile-cp10")])
    assert reg.enrol_from_birth("demo-estate", "gw-new", birth) == -1
    f = tmp_path / "open.yaml"
    f.write_text("site: open\nauto_enrol: true\n")
    reg.register_site(load_site(f))
    birth.devices.append(wire.DeviceInfo("x2", "no-such-profile"))
    assert reg.enrol_from_birth("open", "gw-new", birth) == 2  # gateway + x1; the unknown profile is skipped
    d = reg.directory()
    assert d.devices[("open", "x1")].gateway == "gw-new" and ("open", "x2") not in d.devices


def test_gateway_status_newest_wins(db_url: str) -> None:
    reg = Registry(db_url)
    reg.register_site(load_site(DEMO_SITE))
    t = datetime(2026, 3, 2, 8, tzinfo=UTC)
    reg.set_gateway_status("demo-estate", "gw-garage", wire.Status(ts=t, state="online", agent="a/1"))
    reg.set_gateway_status(
        "demo-estate", "gw-garage", wire.last_will(t - timedelta(seconds=5))
    )  # late, older
    g = reg.gateway("demo-estate", "gw-garage")
    assert g is not None and g.online is True and g.agent == "a/1"
    reg.set_gateway_status("demo-estate", "gw-garage", wire.last_will(t + timedelta(seconds=5)))
    g = reg.gateway("demo-estate", "gw-garage")
    assert g is not None and g.online is False and g.status_reason == "connection lost"


def test_replicas_enrolling_one_birth_at_once(tmp_path: Path, db_url: str) -> None:
    """Two ingester replicas get the same birth message (a retained status) at the same instant:
    both try to enrol the gateway and its devices; the second must neither fail nor duplicate."""
    import threading

    f = tmp_path / "open.yaml"
    f.write_text("site: open\nauto_enrol: true\n")
    regs = [Registry(db_url) for _ in range(2)]
    regs[0].register_site(load_site(f))
    for round_ in range(5):
        birth = wire.Status(ts=wire.now(), state="online",
                            devices=[wire.DeviceInfo(f"r{round_}d{i}", "voltpile-cp10") for i in range(3)])
        barrier = threading.Barrier(2)
        got: list[int] = []

        def enrol(
            r: Registry, b: wire.Status = birth, bar: threading.Barrier = barrier, out: list[int] = got,
            gw: str = f"gw-{round_}",
        ) -> None:
            bar.wait()
            out.append(r.enrol_from_birth("open", gw, b))

        threads = [threading.Thread(target=enrol, args=(r,)) for r in regs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(got) == 2 and sum(got) == 4, got  # both answered; gateway + 3 devices added once
    d = regs[1].directory()
    assert len(d.devices) == 15 and len(d.gateways) == 5
    regs[1].save_last_values({("open", "r0d0"): ({"port.1.current": 1.5, "smoke": False}, 1_800_000_000.25)})
    regs[1].save_seq_states({("open", "r0d0"): {"last": 7, "window": [5, 6]}})
    dev = regs[0].device("open", "r0d0")
    assert dev is not None and dev.last_values == {"port.1.current": 1.5, "smoke": False}
    assert dev.last_ts == 1_800_000_000.25
    assert regs[0].load_seq_states() == {("open", "r0d0"): {"last": 7, "window": [5, 6]}}
    for r in regs:
        r.close()


def test_last_values_merge_and_seq_states_upsert(tmp_path: Path, db_url: str) -> None:
    """The ingester's once-a-second persistence (bulk statements; SQLite merges in SQL): values merge
    per point, an older batch (backfill) never overwrites a newer one, unknown devices are skipped,
    and replay windows are inserted, then updated."""
    f = tmp_path / "s.yaml"
    f.write_text("site: s1\ngateways:\n  - {id: g1, devices: [{id: d1, profile: voltpile-cp10}, "
                 "{id: d2, profile: voltpile-cp10}]}\n")
    reg = Registry(db_url)
    reg.register_site(load_site(f))
    reg.save_last_values({("s1", "d1"): ({"a": 1.5, "s": "idle", "b": True}, 100.0),
                          ("s1", "ghost"): ({"a": 9.0}, 100.0)})
    reg.save_last_values({("s1", "d1"): ({"a": 2.5}, 101.0), ("s1", "d2"): ({"x": 1}, 50.0)})
    reg.save_last_values({("s1", "d1"): ({"a": 0.5, "c": 7}, 99.0)})  # older: ignored whole
    d1, d2 = reg.device("s1", "d1"), reg.device("s1", "d2")
    assert d1 is not None and d1.last_values == {"a": 2.5, "s": "idle", "b": True} and d1.last_ts == 101.0
    assert d2 is not None and d2.last_values == {"x": 1} and d2.last_ts == 50.0
    assert reg.device("s1", "ghost") is None
    reg.save_seq_states({("s1", "d1"): {"floor": 3, "seen": [5]}})
    reg.save_seq_states({("s1", "d1"): {"floor": 5, "seen": []}, ("s1", "d2"): {"floor": 0, "seen": []}})
    assert reg.load_seq_states() == {("s1", "d1"): {"floor": 5, "seen": []}, ("s1", "d2"): {"floor": 0, "seen": []}}
    reg.close()


def test_a_stored_future_time_never_pins_values_or_status(tmp_path: Path, db_url: str) -> None:
    """Rows written before the time policy (a 2099 stamp stored as is) heal: newer values and a newer
    status replace them; and what the ingester learnt of gateway clocks is kept per gateway."""
    from cloud.ingest.timepolicy import GatewayClock

    f = tmp_path / "s.yaml"
    f.write_text("site: s1\ngateways:\n  - {id: g1, devices: [{id: d1, profile: voltpile-cp10}]}\n")
    reg = Registry(db_url)
    reg.register_site(load_site(f))
    far = datetime(2099, 1, 1, tzinfo=UTC).timestamp()
    reg.save_last_values({("s1", "d1"): ({"smoke": False}, far)})
    reg.save_last_values({("s1", "d1"): ({"smoke": True}, datetime.now(UTC).timestamp())})
    d1 = reg.device("s1", "d1")
    assert d1 is not None and d1.last_values == {"smoke": True} and d1.last_ts is not None and d1.last_ts < far
    reg.set_gateway_status("s1", "g1", wire.Status(ts=datetime(2099, 1, 1, tzinfo=UTC), state="online"))
    reg.set_gateway_status("s1", "g1", wire.last_will(wire.now()))
    g = reg.gateway("s1", "g1")
    assert g is not None and g.online is False
    reg.save_gateway_clocks({("s1", "g1"): GatewayClock(skew_s=-42.5, source="edge", measured=1.0)})
    reg.save_gateway_clocks({("s1", "g1"): GatewayClock(skew_s=3e9, source="ingest", measured=2.0, rebased=3,
                                                        last_rebased=2.0)})
    c = reg.gateway_clocks("s1")["g1"]
    assert (c.skew_s, c.source, c.rebased, c.last_rebased) == (3e9, "ingest", 3, 2.0)
    reg.close()
