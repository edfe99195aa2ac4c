"""`shelterwatch sim fleet`: publish a virtual fleet's traffic (registered by simulators/cli.py)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer


def fleet(
    broker: Annotated[str, typer.Option(help="mqtt://host:port")] = "mqtt://127.0.0.1:1883",
    gateways: Annotated[int, typer.Option(help="number of synthetic gateways (4 devices each)")] = 10,
    site: Annotated[str, typer.Option(help="site id of the synthetic fleet")] = "fleet",
    site_file: Annotated[
        Path | None, typer.Option(help="take gateways and devices from this site file")
    ] = None,
    write_site_file: Annotated[
        Path | None, typer.Option(help="write a site file registering the fleet, then exit")
    ] = None,
    rate: Annotated[float, typer.Option(help="messages/s over the fleet (0 = flat out)")] = 1000.0,
    duration: Annotated[float, typer.Option(help="seconds to run")] = 60.0,
    max_messages: Annotated[int | None, typer.Option(help="stop after this many messages")] = None,
    sim_start: Annotated[str | None, typer.Option(help="ISO time: use a simulated clock from here")] = None,
    tick_s: Annotated[float, typer.Option(help="simulated seconds per tick")] = 1.0,
    seed: int = 1,
) -> None:
    """Publish routine telemetry, bay events and health from N virtual gateways."""
    from simulators.fleet import FleetConfig, FleetModel, publish_fleet, site_file_text

    cfg = FleetConfig(
        broker=broker,
        site=site,
        site_file=str(site_file) if site_file else None,
        gateways=gateways,
        rate=rate,
        duration=duration,
        max_messages=max_messages,
        tick_s=tick_s,
        seed=seed,
        sim_start=datetime.fromisoformat(sim_start) if sim_start else None,
    )
    model = FleetModel(cfg)
    devices = sum(len(g.devices) for g in model.gateways)
    if rate > 0 and sim_start is None and devices / rate > 30:
        # one tick sends about one message per device: at this rate a device speaks every
        # devices/rate seconds of real time, and the cloud calls a gateway silent after 45 s
        typer.echo(f"warning: {devices} devices at {rate:g} msg/s speak every {devices / rate:.0f} s each; "
                   "gateways silent 45 s and devices 60 s raise offline alarms", err=True)
    if write_site_file:
        write_site_file.write_text(site_file_text(model.site, model.topology))
        typer.echo(f"wrote {write_site_file}: site {model.site}, {len(model.gateways)} gateways")
        return
    res = publish_fleet(cfg, model=model)
    typer.echo(
        f"published {res.published} messages ({res.size} bytes) in {res.seconds:.1f}s "
        f"= {res.rate:.0f} msg/s; {res.by_kind}"
    )
