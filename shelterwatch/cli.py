"""The `shelterwatch` command: one entry point, one sub-command group per part of the system."""

from __future__ import annotations

import typer

from cloud.alarms.cli import app as alarms_app
from cloud.auth.cli import app as user_app
from cloud.cli import app as cloud_app
from dashboards.cli import app as dashboards_app
from device_profiles.cli import app as profiles_app
from edge_agent.cli import app as edge_app
from shelterwatch.demo import demo
from simulators.cli import app as sim_app

app = typer.Typer(
    help="shelterwatch: fire safety and parking for bicycle shelters and garages.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
cloud_app.add_typer(alarms_app, name="alarms")
cloud_app.add_typer(user_app, name="user")
app.add_typer(profiles_app, name="profiles")
app.add_typer(edge_app, name="edge")
app.add_typer(cloud_app, name="cloud")
app.add_typer(sim_app, name="sim")
app.add_typer(dashboards_app, name="dashboards")
app.command("demo")(demo)


if __name__ == "__main__":
    app()
