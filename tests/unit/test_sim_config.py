"""Site and scenario files: the shipped ones load; broken ones say file:line and key."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from device_profiles.located_yaml import ConfigError
from simulators.scenario import SCENARIOS_DIR, find_scenario, load_scenario, parse_duration
from simulators.site import SITES_DIR, SimSite, find_site, load_site

SITES = sorted(SITES_DIR.glob("*.yaml"))
SCENARIOS = sorted(SCENARIOS_DIR.glob("*.yaml"))


def test_the_brief_names_ship() -> None:
    assert {p.stem for p in SITES} >= {"shelter-a", "shelter-b", "garage"}
    assert len(SCENARIOS) >= 4


@pytest.mark.parametrize("path", SITES, ids=lambda p: p.stem)
def test_shipped_sites_load_and_build(path: Path) -> None:
    spec = load_site(path)
    site = SimSite(spec, path.parent)
    assert set(site.devices) == {d.id for d in spec.devices}


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_shipped_scenarios_load(path: Path) -> None:
    assert load_scenario(path).steps


def test_shelter_a_has_what_the_edge_expects() -> None:
    spec = load_site(SITES_DIR / "shelter-a.yaml")
    assert {d.id: d.profile for d in spec.devices} == {
        "chg1": "voltpile-cp10",
        "spk1": "nanfang-fsm8",
        "chg2": "hengtong-ebc12",
    }


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


SITE_OK = """\
schema: 1
site: t
buses:
  - {id: bus1, kind: rtu, baud: 9600}
  - {id: lan, kind: tcp}
devices:
  - {id: chg1, profile: voltpile-cp10, bus: bus1, unit: 3}
  - {id: spk1, profile: aquaguard-rm4, bus: lan, unit: 1}
"""


def issues(path: Path, loader: Callable[[Path], object] = load_site) -> list[str]:
    with pytest.raises(ConfigError) as e:
        loader(path)
    return [str(i) for i in e.value.issues]


@pytest.mark.parametrize(
    ("bad", "expect"),
    [
        (SITE_OK.replace("baud: 9600", "baud: fast"), ":4 buses[0].baud: must be a whole number"),
        (SITE_OK.replace("kind: tcp", "kind: udp"), ":5 buses[1].kind: must be one of"),
        (SITE_OK.replace("bus: lan,", "bus: wan,"), ":8 devices[1].bus: unknown bus 'wan'"),
        (SITE_OK.replace("voltpile-cp10", "voltpile-cp99"), ":7 devices[0].profile: unknown profile"),
        (SITE_OK.replace("unit: 1}", "unit: 1, colour: red}"), ":8 devices[1].colour: unknown key"),
        (
            SITE_OK.replace("bus: lan, unit: 1", "bus: bus1, unit: 3"),
            ":8 devices[1].unit: unit 3 already used by chg1",
        ),
        (
            SITE_OK.replace("unit: 3}", "unit: 3, params: {ambient_c: hot}}"),
            ":7 devices[0].params.ambient_c:",
        ),
        (
            SITE_OK.replace("unit: 3}", "unit: 3, params: {colour: 1}}"),
            ":7 devices[0].params.colour: Extra inputs",
        ),
        (
            SITE_OK.replace("unit: 3}", "unit: 3, tags: {fire_lane: [11]}}"),
            ":7 devices[0].tags.fire_lane: no instance",
        ),
        (SITE_OK.replace("kind: tcp", "kind: line"), ":8 devices[1].bus: aquaguard-rm4 speaks Modbus"),
        (SITE_OK.replace("unit: 3}", "unit: 300}"), ":7 devices[0].unit:"),
    ],
)
def test_broken_site_files_give_located_errors(tmp_path: Path, bad: str, expect: str) -> None:
    found = issues(write(tmp_path, "site.yaml", bad))
    assert any(expect in i for i in found), found


SCN_OK = """\
schema: 1
name: t
site: shelter-a
steps:
  - {at: 30s, device: chg1, do: runaway, port: 3}
  - {at: 1m, device: spk1, do: waterflow, value: true}
  - {at: 90, device: spk1, do: silent}
"""


@pytest.mark.parametrize(
    ("bad", "expect"),
    [
        (SCN_OK.replace("at: 30s", "at: soon"), ":5 steps[0].at: not a duration"),
        (SCN_OK.replace("do: runaway", "do: explode"), ":5 steps[0].do: unknown action 'explode'"),
        (SCN_OK.replace("device: chg1", "device: chg9"), ":5 steps[0].device: no device 'chg9'"),
        (SCN_OK.replace("port: 3", "port: 11"), ":5 steps[0].port: port 11 does not exist (valid 1..10)"),
        (SCN_OK.replace(", port: 3", ""), ":5 steps[0]: 'runaway' needs `port:`"),
        (
            SCN_OK.replace("device: spk1, do: waterflow", "device: chg1, do: waterflow"),
            ":6 steps[1].do: 'waterflow' does not apply to chg1",
        ),
        (SCN_OK.replace("site: shelter-a", "site: nowhere"), ":3 site: no site file"),
        (SCN_OK.replace("port: 3}", "port: 3, when: now}"), ":5 steps[0].when: unknown key"),
        (SCN_OK.replace("do: silent}", "do: crc_errors, value: 3}"), ":7 steps[2].value: must be a fraction"),
        (
            SCN_OK.replace("do: silent}", "do: exception, value: x}"),
            ":7 steps[2].value: must be a Modbus exception",
        ),
        (
            SCN_OK.replace("steps:\n", "steps:\n  - {at: 1s, device: chg1, do: garbage, value: 0.1}\n"),
            ":5 steps[0].do: 'garbage' does not apply",
        ),
        (SCN_OK.replace("do: runaway, port: 3", "do: bms_failure, port: 3, speed: 0"), ":5 steps[0].speed: "),
        (SCN_OK.replace("do: runaway, port: 3", "do: micro_short, port: 3, severity: 2"), ":5 steps[0].severity"),
        (SCN_OK.replace("do: runaway, port: 3", "do: hot_connector, port: 3, onset: later"),
         ":5 steps[0].onset: not a duration"),
        (SCN_OK.replace("do: runaway, port: 3", "do: plug, port: 3, severity: 0.5"),
         ":5 steps[0]: `onset`, `speed` and `severity` belong to failures"),
        (SCN_OK.replace("do: runaway, port: 3", "do: plug, port: 3, pack: {capacity: 2}"),
         ":5 steps[0].pack.capacity: unknown key"),
        (SCN_OK.replace("do: runaway, port: 3", "do: weather, value: monsoon"), ":5 steps[0].value: must be one of"),
        (SCN_OK.replace("do: runaway, port: 3", "do: ageing_pack"), ":5 steps[0]: 'ageing_pack' needs `port:`"),
        (SCN_OK.replace("device: spk1, do: waterflow", "device: spk1, do: bms_failure, port: 1"),
         ":6 steps[1].do: 'bms_failure' does not apply to spk1"),
    ],
)
def test_broken_scenario_files_give_located_errors(tmp_path: Path, bad: str, expect: str) -> None:
    found = issues(write(tmp_path, "scn.yaml", bad), load_scenario)
    assert any(expect in i for i in found), found


def test_scenario_may_name_a_site_file_next_to_it(tmp_path: Path) -> None:
    write(tmp_path, "mysite.yaml", SITE_OK)
    scn = write(
        tmp_path, "s.yaml", "name: x\nsite: mysite.yaml\nsteps:\n  - {at: 1s, device: spk1, do: tamper}\n"
    )
    assert load_scenario(scn).site == "mysite.yaml"


@pytest.mark.parametrize(
    ("text", "secs"), [("30s", 30), ("2m", 120), ("1.5h", 5400), ("500ms", 0.5), (7, 7.0)]
)
def test_durations(text: str | int, secs: float) -> None:
    assert parse_duration(text) == secs


@pytest.mark.parametrize("bad", ["-1s", "1d", "", True, -3])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)  # type: ignore[arg-type]


def test_shipped_names_and_paths_are_found(tmp_path: Path) -> None:
    assert find_site("shelter-a") == SITES_DIR / "shelter-a.yaml"
    assert find_scenario(SCENARIOS[0].stem) == SCENARIOS[0]
    own = write(tmp_path, "shelter-a.yaml", SITE_OK)
    assert find_site(own) == own, "a path that exists wins over a shipped name"


@pytest.mark.parametrize(
    ("find", "expect", "folder"),
    [
        (find_site, "no site file 'nowhere' (shipped sites: ", SITES_DIR),
        (find_scenario, "no scenario 'nowhere' (shipped: ", SCENARIOS_DIR),
    ],
)
def test_unknown_names_list_the_shipped_ones(find: Callable[[str], Path], expect: str, folder: Path) -> None:
    with pytest.raises(FileNotFoundError) as e:
        find("nowhere")
    names = ", ".join(sorted(p.stem for p in folder.glob("*.yaml")))
    assert str(e.value) == f"{expect}{names})"
