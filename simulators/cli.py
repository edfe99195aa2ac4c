"""`shelterwatch sim …`: run a simulated site (optionally playing a scenario) in its own process.

`run --json` prints ONE JSON object on stdout (site, scenario, pid, endpoints) and then keeps the
simulators running until Ctrl-C / SIGTERM or `--duration`, so a test or a benchmark can start the
simulators in a separate process and read where to connect from the first line of its output.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import typer

from simulators.fleet_cli import fleet as fleet_command

app = typer.Typer(help="Device simulators speaking the real wire bytes.", no_args_is_help=True)


def _is_scenario(ref: str) -> bool:
    from simulators.scenario import SCENARIOS_DIR

    p = Path(ref)
    if p.exists():
        import yaml

        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError):
            return False
        return isinstance(data, dict) and "steps" in data
    return (SCENARIOS_DIR / f"{ref}.yaml").exists()


@app.command()
def run(
    target: str = typer.Argument(..., help="a site or scenario: shipped name or YAML path"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object on stdout, logs on stderr"),
    speed: float = typer.Option(None, "--speed", help="time scale for physics and scenario (default 1)"),
    duration: float = typer.Option(None, "--duration", help="stop after this many seconds"),
    edge_config: Path = typer.Option(None, "--edge-config", help="write the matching edge-agent config here"),
    gateway: str = typer.Option("gw1", "--gateway", help="--edge-config: the gateway id"),
    uplink: str = typer.Option("mqtt://127.0.0.1:1883", "--uplink", help="--edge-config: the broker URL"),
) -> None:
    """Start the site, play the scenario, print where an edge agent connects; run until stopped."""
    from rich.console import Console

    from device_profiles.located_yaml import ConfigError
    from simulators.scenario import ScenarioPlayer, find_scenario, load_scenario, site_path
    from simulators.site import SimSite, find_site, load_site

    err = Console(stderr=True)
    try:
        if _is_scenario(target):
            spath = find_scenario(target)
            scn = load_scenario(spath)
            site_file = site_path(scn, spath.parent)
        else:
            scn = None
            site_file = find_site(target)
        site = SimSite(load_site(site_file), site_file.parent)
    except (ConfigError, FileNotFoundError) as e:
        err.print(f"[red]{e}[/red]")
        raise typer.Exit(2) from None
    if speed:
        site.speed = speed
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    site.start()
    player = None
    try:
        if scn is not None:
            player = ScenarioPlayer(site, scn, speed or None).start()
        eps = site.endpoints()
        if edge_config is not None:
            from simulators.edge_config import write_edge_config

            write_edge_config(edge_config, site.name, eps, gateway, uplink)
            err.print(f"wrote {edge_config}: run `edge-agent check {edge_config}`, then `edge-agent run {edge_config}`")
        if as_json:
            out: dict[str, Any] = {
                "site": site.name,
                "scenario": scn.name if scn else None,
                "pid": _pid(),
                "speed": site.speed,
                "endpoints": eps,
            }
            sys.stdout.write(json.dumps(out) + "\n")
            sys.stdout.flush()
        else:
            _print_table(site.name, scn.name if scn else None, eps)
        _wait(stop, duration, player, err)
    finally:
        if player:
            player.stop()
        site.stop()


def _pid() -> int:
    import os

    return os.getpid()


def _wait(stop: threading.Event, duration: float | None, player: Any, err: Any) -> None:
    t0 = time.monotonic()
    shown = 0
    while not stop.is_set():
        if duration is not None and time.monotonic() - t0 >= duration:
            break
        stop.wait(0.1)
        if player is not None:
            while shown < len(player.log):
                t, what = player.log[shown]
                err.print(f"[cyan]{t:7.1f}s[/cyan] {what}")
                shown += 1
            for e in player.errors[:]:
                err.print(f"[red]step failed: {e}[/red]")
                player.errors.remove(e)


def _print_table(site: str, scenario: str | None, eps: dict[str, dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(
        "device",
        "profile",
        "transport",
        "where",
        "unit",
        "line",
        title=f"site {site}" + (f" — scenario {scenario}" if scenario else ""),
    )
    for dev, ep in eps.items():
        if ep["transport"] == "modbus_tcp":
            where, line = f"{ep['host']}:{ep['tcp_port']}", ""
        else:
            where, line = ep["serial_port"], f"{ep['baud']} {ep['data_bits']}{ep['parity']}{ep['stop_bits']}"
        t.add_row(dev, ep["profile"], ep["transport"], where, str(ep.get("unit", "")), line)
    Console().print(t)
    Console().print("Ctrl-C to stop.")


@app.command("list")
def list_() -> None:
    """Shipped sites and scenarios."""
    from rich.console import Console
    from rich.table import Table

    from simulators.scenario import SCENARIOS_DIR, load_scenario
    from simulators.site import SITES_DIR, load_site

    t = Table("kind", "name", "description")
    for p in sorted(SITES_DIR.glob("*.yaml")):
        s = load_site(p)
        t.add_row("site", p.stem, f"{s.description} ({', '.join(d.id for d in s.devices)})")
    for p in sorted(SCENARIOS_DIR.glob("*.yaml")):
        c = load_scenario(p)
        t.add_row("scenario", p.stem, f"{c.description} [site {c.site}]")
    Console(width=160).print(t)


app.command("fleet", help="Virtual gateways publishing wire-contract traffic for load tests.")(fleet_command)
