"""`shelterwatch profiles …`: list the catalog, check profile files, show a register map."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table as RichTable

from device_profiles.loader import load_catalog, load_profile
from device_profiles.located_yaml import ConfigError
from device_profiles.points import resolve_points

app = typer.Typer(help="Device profiles: the catalog of supported device models.", no_args_is_help=True)
console = Console()


@app.command("list")
def list_profiles(extra: list[Path] = typer.Option([], "--dir", help="more profile folders")) -> None:
    """List every profile in the catalog."""
    try:
        profiles = load_catalog(extra)
    except ConfigError as e:
        console.print(f"[red]{e}[/red]")
        raise typer.Exit(1) from None
    t = RichTable("id", "family", "vendor", "model", "firmware", "transport", "points")
    for p in sorted(profiles.values(), key=lambda p: (p.family, p.id)):
        n = len(resolve_points(p)) if p.is_modbus else "line"
        t.add_row(p.id, p.family.value, p.vendor, p.model, p.firmware, p.transport.kind.value, str(n))
    console.print(t)


@app.command()
def check(paths: list[Path] = typer.Argument(..., help="profile YAML files")) -> None:
    """Validate profile files; every problem is printed with file, line and key."""
    bad = 0
    for path in paths:
        try:
            p = load_profile(path)
            console.print(f"[green]ok[/green] {path} ({p.vendor} {p.model})")
        except ConfigError as e:
            bad += 1
            for issue in e.issues:
                console.print(f"[red]{issue}[/red]", highlight=False)
    raise typer.Exit(1 if bad else 0)


@app.command()
def show(profile_id: str) -> None:
    """Print a profile's register map (zero-based wire addresses)."""
    profiles = load_catalog()
    if profile_id not in profiles:
        console.print(f"[red]unknown profile {profile_id!r}[/red]; known: {', '.join(sorted(profiles))}")
        raise typer.Exit(1)
    p = profiles[profile_id]
    t = RichTable("point", "table", "address", "type", "scale", "unit", "poll", title=f"{p.vendor} {p.model}")
    for rp in resolve_points(p):
        t.add_row(rp.id, rp.table.value, str(rp.address), rp.spec.type.value, f"{rp.spec.scale:g}", rp.spec.unit,
                  rp.poll.value)
    console.print(t)
