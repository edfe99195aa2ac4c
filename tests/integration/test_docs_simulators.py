"""docs/simulators.md against the code: every model parameter and scenario action in its tables
(with the right defaults and needs), its site and scenario examples load and the slow runaway does
what the page says, its CLI lines parse, and its `sim fleet` examples run against a real mosquitto."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from shelterwatch.cli import app
from simulators.devices.line_receiver import LineReceiverParams
from simulators.physics.charger import ChargerModel, ChargerParams
from simulators.physics.parking import ParkingParams
from simulators.physics.sprinkler import SprinklerParams
from simulators.scenario import ACTIONS, load_scenario
from simulators.site import load_site

pytestmark = pytest.mark.integration
ROOT = Path(__file__).parents[2]
DOC = (ROOT / "docs" / "simulators.md").read_text(encoding="utf-8")
MODELS = (ChargerParams, SprinklerParams, ParkingParams, LineReceiverParams)


def section(title: str) -> str:
    return DOC.split(f"## {title}", 1)[1].split("\n## ", 1)[0]


def table_rows(text: str) -> list[list[str]]:
    """Rows of the markdown tables in `text` whose first cell is `code`."""
    return [[c.strip() for c in line.strip().strip("|").split("|")]
            for line in text.splitlines() if re.match(r"^\|\s*`", line)]


def _doc_value(cell: str) -> Any:
    cell = cell.strip()
    if cell == "[]":
        return []
    if cell in ("true", "false"):
        return cell == "true"
    if cell.startswith('"'):
        return cell.strip('"')
    return float(cell)


def test_every_model_parameter_is_documented_with_its_default() -> None:
    rows = {r[0].strip("`"): r[1] for r in table_rows(section("Model parameters"))}
    fields = {k: f for m in MODELS for k, f in m.model_fields.items()}
    assert set(rows) == set(fields), f"undocumented: {set(fields) - set(rows)}; unknown: {set(rows) - set(fields)}"
    for name, cell in rows.items():
        f = fields[name]
        default = f.default_factory() if f.default_factory is not None else f.default  # type: ignore[call-arg]
        assert _doc_value(cell) == default, f"{name}: the page says {cell}, the model {default!r}"


def test_every_scenario_action_is_documented_with_what_it_needs() -> None:
    rows = {r[0].strip("`"): r for r in table_rows(section("Scenarios (`simulators/scenarios/`)"))}
    assert set(rows) == set(ACTIONS)
    for name, row in rows.items():
        needs = {n.strip(" `") for n in row[2].split(",") if n.strip()}
        assert needs == set(ACTIONS[name].needs), f"{name}: the page says {needs}, the action {ACTIONS[name].needs}"
    assert "instant step" in rows["ambient"][3] and "ramp" in rows["ambient"][3]


def examples(tag: str) -> list[tuple[str, str]]:
    """(file name from the first comment line, text) of every ```yaml <tag> block."""
    out = []
    for m in re.finditer(rf"```yaml {tag}\n(.*?)```", DOC, re.S):
        text = m.group(1)
        name = re.match(r"#\s*([\w.-]+\.yaml)", text)
        assert name, f"a `yaml {tag}` example starts with `# file-name.yaml`"
        out.append((name.group(1), text))
    return out


def test_site_and_scenario_examples_load_and_the_slow_runaway_is_slow(tmp_path: Path) -> None:
    sites, scenarios = examples("site"), examples("scenario")
    assert sites and scenarios
    for name, text in [*sites, *scenarios]:
        (tmp_path / name).write_text(text, encoding="utf-8")
    specs = {name: load_site(tmp_path / name) for name, _ in sites}  # located errors if the page is wrong
    [(scn_name, _)] = scenarios
    scn = load_scenario(tmp_path / scn_name)
    dev = next(d for d in specs[scn.site].devices if d.id == "chg1")
    # The scenario through the same actions, on the model with the page's parameters, 1 s steps.
    model = ChargerModel(n_ports=10, params=ChargerParams(**dev.params), seed=1)
    target = SimpleNamespace(model=model)
    steps = sorted(scn.steps, key=lambda s: s.at)
    temps: list[float] = []
    for second in range(1800):
        for s in [s for s in steps if s.at == second]:
            ACTIONS[s.do].run(target, s)
        model.step(1.0)
        temps.append(model.ports[3].connector_temp)
    crossed = next(i for i, t in enumerate(temps) if t >= 70)
    assert 12 * 60 <= crossed <= 25 * 60, f"passes 70 °C after {crossed / 60:.1f} min"
    fastest = max((temps[i] - temps[i - 60]) for i in range(60, len(temps)))
    assert fastest < 8.0, f"never 8 °C/min (the heating-fast rule): fastest {fastest:.1f} °C/min"
    assert model.ambient_temp == pytest.approx(32, abs=0.5), "the ambient ramp arrived"


def cli_examples() -> list[list[str]]:
    out = []
    for block in re.findall(r"```sh\n(.*?)```", DOC, re.S):
        for line in block.splitlines():
            if line.startswith("shelterwatch sim "):
                out.append(shlex.split(line.split("#", 1)[0])[1:])
    return out


@pytest.mark.parametrize("args", cli_examples(), ids=" ".join)
def test_cli_examples_parse(args: list[str]) -> None:
    group = typer.main.get_command(app)
    ctx = group.make_context("shelterwatch", list(args), resilient_parsing=False)
    cmd, rest = group, list(args)
    while rest and hasattr(cmd, "get_command"):  # walk `sim fleet` down to its command
        name, rest = rest[0], rest[1:]
        sub = cmd.get_command(ctx, name)  # type: ignore[attr-defined]
        assert sub is not None, f"no command {name!r}"
        cmd = sub
    cmd.make_context(" ".join(args[:2]), rest)  # raises on an unknown option or a bad value


def test_fleet_examples_run(tmp_path: Path, mosquitto: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    fleet = [a for a in cli_examples() if a[:2] == ["sim", "fleet"]]
    assert len(fleet) >= 3
    for args in fleet:
        args = [str(ROOT / a) if (ROOT / a).is_file() else a for a in args]
        opts = dict(zip(args[2::2], args[3::2], strict=False))
        if "--write-site-file" not in opts:  # publishing: to the test's broker, briefly
            opts.update({"--broker": mosquitto.url, "--duration": "1"})
            if "--max-messages" in opts:
                opts["--max-messages"] = "2000"
        argv = args[:2] + [x for kv in opts.items() for x in kv]
        res = runner.invoke(app, argv)
        assert res.exit_code == 0, (argv, res.output)
        if "--write-site-file" in opts:
            from cloud.site_config import load_site as load_cloud_site

            site = load_cloud_site(tmp_path / opts["--write-site-file"])
            assert len(site.gateways) == int(opts["--gateways"]) and site.auto_enrol
        else:
            n = re.search(r"published (\d+) messages", res.output)
            assert n and int(n.group(1)) > 0, res.output
