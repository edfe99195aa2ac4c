"""`shelterwatch dashboards …`: regenerate the JSON, check it is current, push it to Grafana."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Grafana dashboards: build the JSON, push to a Grafana.", no_args_is_help=True)


@app.command()
def build(
    out: Annotated[
        Path | None, typer.Option(help="Directory to write to (default: dashboards/generated).")
    ] = None,
    check: Annotated[
        bool, typer.Option("--check", help="Only report files that differ; exit 1 if any.")
    ] = False,
) -> None:
    """Regenerate dashboards/generated/*.json from dashboards/build.py."""
    from dashboards import build as b

    target = out or b.GENERATED
    if check:
        stale = b.drift(target)
        for f in stale:
            typer.echo(f"out of date: {target / f}")
        raise typer.Exit(1 if stale else 0)
    for p in b.write(target):
        typer.echo(f"wrote {p}")


@app.command()
def push(
    url: str = typer.Option(..., help="Grafana base URL, e.g. http://grafana.example:3000"),
    token: str = typer.Option(..., envvar="GRAFANA_TOKEN", help="Service account token (Editor)."),
    folder: str = typer.Option("shelterwatch", help="Folder title (uid 'shelterwatch')."),
) -> None:
    """Create the folder if missing and upload or update every dashboard."""
    from dashboards.push import PushError
    from dashboards.push import push as do_push

    try:
        done = do_push(url, token, folder_title=folder)
    except PushError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from e
    except OSError as e:
        typer.echo(f"error: cannot reach Grafana at {url}: {e}", err=True)
        raise typer.Exit(1) from e
    for d in done:
        typer.echo(f"{d.uid}: {d.title} (version {d.version}) {d.url or ''}")
