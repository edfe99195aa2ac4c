"""`shelterwatch cloud alarms …`: check a site's alarm settings, show the effective rules of a device."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="Alarm rules, people, escalation and inspection windows.", no_args_is_help=True)


@app.command()
def check(site_file: Path) -> None:
    """Validate the alarm keys of a site file (people, escalation, overrides, windows, devices)."""
    from cloud.alarms.config import load_site_alarms
    from device_profiles.located_yaml import ConfigError

    try:
        cfg = load_site_alarms(site_file)
    except ConfigError as e:
        for issue in e.issues:
            typer.echo(str(issue), err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"{site_file}: ok — {len(cfg.people)} people, {len(cfg.escalation.tiers)} tiers, "
        f"{len(cfg.alarm_overrides)} overrides, {len(cfg.inspection_windows)} inspection windows"
    )


@app.command()
def rules(profile: str) -> None:
    """List the default alarm rules of a profile."""
    from device_profiles.loader import get_profile

    for r in get_profile(profile).alarms:
        where = f"{r.block}." if r.block else ""
        typer.echo(
            f"{r.key:<22} {r.severity:<9} {r.kind.value:<13} {where}{r.point or ''}  for={r.for_s:g}s  "
            f"{r.name_zh} / {r.name}"
        )
