"""The `shelterwatch` command: one entry point, one sub-command group per part of the system."""

from __future__ import annotations

import typer

from device_profiles.cli import app as profiles_app
from edge_agent.cli import app as edge_app

app = typer.Typer(
    help="shelterwatch: fire safety and parking for bicycle shelters and garages.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(profiles_app, name="profiles")
app.add_typer(edge_app, name="edge")


if __name__ == "__main__":
    app()
