"""`edge-agent` (also `shelterwatch edge`): the installer's tools on site.

check   validate a config and the profiles it uses (file, line, key for every mistake)
scan    find the Modbus unit ids that answer on a bus
probe   read one device once and print its decoded points with units
run     run the agent
status  print the running agent's health (from its status file)
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="shelterwatch edge agent: installer tools and the gateway service.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

Cfg = Annotated[Path, typer.Argument(help="agent config YAML")]


def _load(config: Path):
    from device_profiles.located_yaml import ConfigError
    from edge_agent.config import load_config

    try:
        return load_config(config)
    except ConfigError as e:
        typer.echo(f"{len(e.issues)} problem(s):", err=True)
        for i in e.issues:
            typer.echo(f"  {i}", err=True)
        raise typer.Exit(2) from None


@app.command()
def check(config: Cfg) -> None:
    """Validate CONFIG and every profile it uses; print each mistake with file, line and key."""
    from edge_agent.budget import budget
    from edge_agent.planner import plan

    cfg, profiles = _load(config)
    typer.echo(
        f"{config}: OK — site {cfg.site}, gateway {cfg.gateway}, {len(cfg.buses)} bus(es), {len(cfg.devices)} device(s)"
    )
    from device_profiles.model import PollClass, TransportKind

    for bus in cfg.buses:
        if bus.transport is not TransportKind.MODBUS_RTU:
            continue
        loads = {}
        for d in cfg.devices:
            if d.bus == bus.name:
                prof = profiles[d.profile]
                loads[d.id] = [(r.table, r.count, d.poll.of(c)) for c in PollClass for r in plan(prof, c)]
        b = budget(bus.name, bus.baud, loads, bus.gap_ms / 1000)
        typer.echo(f"bus {bus.name}: polls need {b.utilisation:.0%} of the line at {bus.baud} baud")
        if (w := b.warning()) is not None:
            typer.echo(f"WARNING: {w}", err=True)


def _driver(port: str | None, host: str | None, tcp_port: int, baud: int, parity: str, stop_bits: int, timeout: float):
    if host:
        from edge_agent.drivers.modbus_tcp import TcpDriver

        return TcpDriver(host, tcp_port, timeout)
    if not port:
        raise typer.BadParameter("give --port (serial) or --host (Modbus TCP)")
    from edge_agent.drivers.modbus_rtu import RtuDriver

    return RtuDriver(port, baud, parity, stop_bits, timeout)


@app.command()
def scan(
    port: Annotated[str | None, typer.Option(help="serial port, e.g. /dev/ttyUSB0")] = None,
    baud: int = 9600,
    parity: str = "N",
    stop_bits: int = 1,
    host: Annotated[str | None, typer.Option(help="Modbus TCP host instead of a serial port")] = None,
    tcp_port: int = 502,
    first: int = 1,
    last: int = 247,
    timeout: float = 0.15,
    register: Annotated[int, typer.Option(help="holding register to try; an exception reply also counts")] = 0,
) -> None:
    """List the Modbus unit ids that answer on a bus (an exception reply counts: something is there)."""
    import asyncio

    from rich.progress import Progress

    from device_profiles.model import Table
    from edge_agent.drivers.base import TransactionError

    found: list[tuple[int, str]] = []

    async def go() -> None:
        drv = _driver(port, host, tcp_port, baud, parity, stop_bits, timeout)
        try:
            await drv.connect()
        except TransactionError as e:
            typer.echo(f"cannot open the bus: {e}", err=True)
            raise typer.Exit(1) from None
        with Progress(transient=True) as prog:
            task = prog.add_task("scanning", total=last - first + 1)
            for unit in range(first, last + 1):
                for table in (Table.HOLDING, Table.INPUT):
                    try:
                        await drv.read(unit, table, register, 1)
                        found.append((unit, f"answers ({table.value} {register})"))
                        break
                    except TransactionError as e:
                        if e.kind == "exception":
                            found.append((unit, f"answers with exception {e.code} ({table.value} {register})"))
                            break
                        if e.kind != "exception" and table is Table.HOLDING and e.kind in ("timeout", "io"):
                            break  # nothing there: do not wait twice
                prog.advance(task)
        await drv.close()

    asyncio.run(go())
    if not found:
        typer.echo("no unit answered")
        raise typer.Exit(1)
    for unit, what in found:
        typer.echo(f"unit {unit:3d}: {what}")


@app.command()
def probe(
    profile: Annotated[str, typer.Option(help="profile id, e.g. voltpile-cp10")],
    unit: Annotated[int, typer.Option(help="Modbus unit id")] = 1,
    port: Annotated[str | None, typer.Option(help="serial port")] = None,
    baud: int = 9600,
    parity: str = "N",
    stop_bits: int = 1,
    host: Annotated[str | None, typer.Option(help="Modbus TCP host")] = None,
    tcp_port: int = 502,
    timeout: float = 0.5,
    seconds: Annotated[float, typer.Option(help="serial-line devices: listen this long")] = 5.0,
) -> None:
    """Read one device once and print every decoded point with its unit."""
    import asyncio

    from rich.console import Console
    from rich.table import Table as RTable

    from device_profiles.codec import CodecError, decode
    from device_profiles.loader import get_profile
    from device_profiles.model import LineTransport, PollClass
    from edge_agent.drivers.base import TransactionError
    from edge_agent.planner import plan, split_values

    prof = get_profile(profile)
    rows: list[tuple[str, str, str, str]] = []

    if isinstance(prof.transport, LineTransport):
        from device_profiles.lineproto import LineRecord
        from edge_agent.drivers.serial_line import LineReader

        if not port:
            raise typer.BadParameter("a serial_line device needs --port")
        seen: dict[str, object] = {}

        async def listen() -> LineReader:
            def rec(r: LineRecord) -> None:
                seen.update(r.values)

            rd = LineReader(port, baud, prof, rec, parity, stop_bits)
            rd.open()
            await asyncio.sleep(seconds)
            rd.close()
            return rd

        rd = asyncio.run(listen())
        units = {f.key: f.unit for f in prof.transport.fields}
        for pid, v in sorted(seen.items()):
            rows.append((pid, str(v), units.get(pid.rsplit(".", 1)[-1], ""), ""))
        errs = ", ".join(f"{k}={v}" for k, v in rd.errors.items())
        if errs:
            rows.append(("(bad lines)", errs, "", ""))
    else:

        async def read_all() -> None:
            drv = _driver(port, host, tcp_port, baud, parity, stop_bits, timeout)
            for cls in PollClass:
                for r in plan(prof, cls):
                    try:
                        regs = await drv.read(unit, r.table, r.address, r.count)
                    except TransactionError as e:
                        for p in r.points:
                            rows.append((p.id, "—", p.spec.unit, f"{r.table.value} {p.address}: {e}"))
                        continue
                    for pid, part in split_values(r, regs).items():
                        p = next(p for p in r.points if p.id == pid)
                        try:
                            v = decode(p, part)
                            rows.append((pid, str(v), p.spec.unit, f"{r.table.value} {p.address}"))
                        except CodecError as e:
                            rows.append((pid, "—", p.spec.unit, str(e)))
            await drv.close()

        asyncio.run(read_all())
    t = RTable(title=f"{prof.vendor} {prof.model} ({prof.id}) unit {unit}")
    for col in ("point", "value", "unit", "where (zero-based) / error"):
        t.add_column(col)
    for r in rows:
        t.add_row(*r)
    Console().print(t)
    if rows and all(r[1] == "—" for r in rows):
        raise typer.Exit(1)


@app.command()
def run(config: Cfg, log_level: str = "INFO") -> None:
    """Run the agent until SIGTERM / Ctrl-C."""
    import logging

    from edge_agent.agent import run_agent

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg, profiles = _load(config)
    run_agent(cfg, profiles)


@app.command()
def status(config: Cfg, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Print the running agent's health: uplink, outbox, buses, and each device's comm counters."""
    from rich.console import Console
    from rich.table import Table as RTable

    cfg, _ = _load(config)
    path = Path(cfg.state_dir) / "status.json"
    if not path.exists():
        typer.echo(f"no status file at {path}: is the agent running?", err=True)
        raise typer.Exit(1)
    st = json.loads(path.read_text())
    if as_json:
        typer.echo(json.dumps(st, indent=1))
        return
    age = time.time() - st["written"]
    c = Console()
    up = st["uplink"]
    c.print(f"site {st['site']} gateway {st['gateway']} (pid {st['pid']}, status {age:.0f} s old)")
    c.print(
        f"uplink {up['url']}: {'connected' if up['connected'] else 'DISCONNECTED'}  sent {up['sent']} "
        f"acked {up['acked']}  outbox pending {st['outbox']['pending']} dropped {st['outbox']['dropped']}"
    )
    skew = st.get("clock_skew_s")
    if skew is None:
        c.print("clock: no time beacon from the cloud heard yet (sw/v1/time)")
    else:
        from device_profiles.wire import CLOCK_TOLERANCE_S

        off = abs(skew) > CLOCK_TOLERANCE_S
        c.print(f"clock: {skew:+.3f} s against the cloud's" + ("  [red]WRONG: set the time (NTP)[/red]" if off else ""))
    for b in st["buses"]:
        c.print(
            f"bus {b['name']}: utilisation {b['utilisation']:.0%}, {b['transactions']} transactions"
            + ("" if b["budget_ok"] else "  [red]polls do not fit[/red]")
        )
    for w in st.get("budget_warnings", []):
        c.print(f"[yellow]{w}[/yellow]")
    t = RTable()
    for col in ("device", "bus", "breaker", "ok", "timeouts", "crc", "exc", "retries", "rate Hz", "last ok", "seq"):
        t.add_column(col)
    for d in st["devices"]:
        last = f"{time.time() - d['last_ok']:.0f} s ago" if d["last_ok"] else "never"
        rate = f"{d['poll_rate_hz']:.2f}" if d["poll_rate_hz"] else "—"
        t.add_row(
            d["id"],
            d["bus"],
            d["breaker"],
            str(d["ok"]),
            str(d["timeouts"]),
            str(d["crc_errors"]),
            str(d["exceptions"]),
            str(d["retries"]),
            rate,
            last,
            str(d["seq"]),
        )
    c.print(t)
