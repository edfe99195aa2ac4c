"""The `shelterwatch` command: one entry point, one sub-command group per part of the system."""

from __future__ import annotations

import typer

from cloud.cli import app as cloud_app
from device_profiles.cli import app as profiles_app
from simulators.fleet_cli import app as fleet_app

app = typer.Typer(
    help="shelterwatch: fire safety and parking for bicycle shelters and garages.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(profiles_app, name="profiles")
app.add_typer(cloud_app, name="cloud")
app.add_typer(fleet_app, name="fleet")


if __name__ == "__main__":
    app()
