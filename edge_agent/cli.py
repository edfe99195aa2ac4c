"""`edge-agent` (also `shelterwatch edge`): the installer's tools on site.

check   validate a config and the profiles it uses (file, line, key for every mistake)
scan    find the devices on a bus, recognise their models, write a ready config
probe   read one device once and print its decoded points with units
run     run the agent
status  print the running agent's health (from its status file)
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from device_profiles.model import Profile
    from edge_agent.budget import Budget
    from edge_agent.drivers.base import ModbusDriver
    from edge_agent.scan import Found, ScanReport
    from edge_agent.scan_config import FoundDevice

app = typer.Typer(
    help="shelterwatch edge agent: installer tools and the gateway service.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

Cfg = Annotated[Path, typer.Argument(help="agent config YAML")]


def _load(config: Path):
    cfg, profiles, _warnings = _load_warned(config)
    return cfg, profiles


def _load_warned(config: Path):
    from device_profiles.located_yaml import ConfigError
    from edge_agent.config import load_config_warned

    try:
        return load_config_warned(config)
    except ConfigError as e:
        typer.echo(f"{len(e.issues)} problem(s):", err=True)
        for i in e.issues:
            typer.echo(f"  {i}", err=True)
        raise typer.Exit(2) from None


@app.command()
def check(config: Cfg) -> None:
    """Validate CONFIG and every profile it uses; print each mistake with file, line and key."""
    from edge_agent.budget import config_budgets

    cfg, profiles, warnings = _load_warned(config)
    typer.echo(
        f"{config}: OK — site {cfg.site}, gateway {cfg.gateway}, {len(cfg.buses)} bus(es), {len(cfg.devices)} device(s)"
    )
    for w in warnings:
        typer.echo(f"warning: {w}", err=True)
    _print_budgets(config_budgets(cfg, profiles))


def _print_budgets(budgets: list[Budget]) -> None:
    from edge_agent.budget import describe

    for b in budgets:
        typer.echo(describe(b))
        if (w := b.warning()) is not None:
            typer.echo(f"WARNING: {w}", err=True)


def _driver(port: str | None, host: str | None, tcp_port: int, baud: int, parity: str, stop_bits: int, timeout: float):
    if host:
        from edge_agent.drivers.modbus_tcp import TcpDriver

        return TcpDriver(host, tcp_port, timeout)
    if not port:
        raise typer.BadParameter("give --serial-port (serial) or --host (Modbus TCP)")
    from edge_agent.drivers.modbus_rtu import RtuDriver

    return RtuDriver(port, baud, parity, stop_bits, timeout)


def _csv_ints(text: str, what: str) -> list[int]:
    try:
        return [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise typer.BadParameter(f"{what}: comma-separated numbers, e.g. 9600,19200") from None


@app.command()
def scan(
    serial_port: Annotated[
        str | None, typer.Option("--serial-port", "--port", help="serial device, e.g. /dev/ttyUSB0")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Modbus TCP host instead of a serial device")] = None,
    tcp_port: Annotated[int, typer.Option(help="Modbus TCP port")] = 502,
    line: Annotated[bool, typer.Option("--line", help="a serial line-protocol receiver, not Modbus RTU")] = False,
    baud: Annotated[str, typer.Option(help="baud rates to try, in order")] = "9600,19200,38400",
    parity: Annotated[str, typer.Option(help="parities to try, in order (N, E, O)")] = "N,E",
    stop_bits: int = 1,
    first: Annotated[int, typer.Option(help="first unit id")] = 1,
    last: Annotated[int, typer.Option(help="last unit id")] = 247,
    reply_ms: Annotated[float, typer.Option(help="RTU: how long a device may take to start answering")] = 100.0,
    timeout: Annotated[float, typer.Option(help="Modbus TCP: seconds to wait for an answer")] = 0.3,
    listen: Annotated[float | None, typer.Option(help="--line: seconds to listen per baud")] = None,
    out: Annotated[Path | None, typer.Option(help="write (or update) this edge config with what was found")] = None,
    site: Annotated[str, typer.Option(help="site id for a new config")] = "my-site",
    gateway: Annotated[str, typer.Option(help="gateway id for a new config")] = "gw1",
    uplink: Annotated[str, typer.Option(help="broker URL for a new config")] = "mqtt://127.0.0.1:1883",
    profile_dir: Annotated[list[Path], typer.Option("--profiles", help="more profile folders")] = [],  # noqa: B006
) -> None:
    """Find the devices on a bus, recognise their models, and write a ready config (--out).

    RTU: tries every baud × parity × unit id (one request per unit; a silent unit costs one
    timeout). Modbus TCP: every unit id behind HOST. --line: listens for a line-protocol receiver.
    A device no profile fits is listed with what it answered, never guessed."""
    import asyncio

    from device_profiles.loader import load_catalog
    from edge_agent import scan as sc

    if not serial_port and not host:
        raise typer.BadParameter("give --serial-port DEVICE (RS-485, serial line) or --host HOST (Modbus TCP)")
    if not 0 <= first <= last <= 255:
        raise typer.BadParameter("unit ids: 0 <= --first <= --last <= 255")
    profiles = load_catalog([str(d) for d in profile_dir])
    bauds = _csv_ints(baud, "--baud")
    parities = [p.strip().upper() for p in parity.split(",") if p.strip()]
    if any(p not in ("N", "E", "O") for p in parities):
        raise typer.BadParameter("--parity: N, E and/or O")
    if line:
        assert serial_port is not None
        typer.echo(f"listening on {serial_port} at {', '.join(map(str, bauds))} baud …")
        rep = sc.scan_line(serial_port, bauds, profiles.values(), parities[0] if parities else "N", listen)
    else:
        rep = asyncio.run(_scan_modbus(serial_port, host, tcp_port, bauds, parities, stop_bits, first, last,
                                       reply_ms / 1000, timeout, profiles))
    found = _report(rep, profiles)
    if out is not None:
        _write_scan_config(out, found, profiles, site, gateway, uplink)
    if not rep.found and not any(lf.lines for lf in rep.lines):
        raise typer.Exit(1)


async def _scan_modbus(serial_port: str | None, host: str | None, tcp_port: int, bauds: list[int],
                       parities: list[str], stop_bits: int, first: int, last: int, reply_s: float,
                       tcp_timeout: float, profiles: dict[str, Profile]) -> ScanReport:
    from rich.progress import Progress

    from device_profiles.model import TransportKind
    from edge_agent import scan as sc

    units = range(first, last + 1)
    if host:
        kind, where = TransportKind.MODBUS_TCP, f"{host}:{tcp_port}"
        settings = [sc.Setting()]

        def timeout_of(s: sc.Setting) -> float:
            return tcp_timeout

        def open_driver(s: sc.Setting, timeout: float) -> ModbusDriver:
            return _driver(None, host, tcp_port, 0, "N", 1, timeout)
    else:
        kind, where = TransportKind.MODBUS_RTU, str(serial_port)
        settings = [sc.Setting(b, p, stop_bits) for b in bauds for p in parities]

        def timeout_of(s: sc.Setting) -> float:
            return sc.rtu_timeout(s.baud, reply_s)

        def open_driver(s: sc.Setting, timeout: float) -> ModbusDriver:
            return _driver(serial_port, None, 0, s.baud, s.parity, s.stop_bits, timeout)
    worst = sum(timeout_of(s) for s in settings) * len(units)
    cost = timeout_of(settings[0]) * 1000
    typer.echo(f"scanning {where}: {len(settings)} setting(s) × unit ids {first}..{last}; a silent unit id costs "
               f"{cost:.0f} ms at {settings[0]}: about {worst:.0f} s at most, unless late answers make it ask again")
    with Progress(transient=True) as prog:
        task = prog.add_task("scanning", total=len(settings) * len(units))

        def step(s: sc.Setting, unit: int) -> None:
            prog.update(task, advance=1, description=f"{s} unit {unit}")

        return await sc.scan_modbus(kind, where, open_driver, settings, units, profiles.values(), timeout_of, step)


def _report(rep: ScanReport, profiles: dict[str, Profile]) -> list[FoundDevice]:
    """Print what was found; return the devices to configure (identified ones only)."""
    from rich.console import Console
    from rich.table import Table as RTable

    from device_profiles.model import TransportKind
    from edge_agent.scan_config import FoundDevice

    c = Console()
    for e in rep.errors:
        typer.echo(f"cannot scan {e}", err=True)
    out: list[FoundDevice] = []
    if rep.transport is TransportKind.SERIAL_LINE:
        for lf in rep.lines:
            who = lf.profile or ("unknown" if lf.lines else "nothing heard")
            valid = lf.valid or "none"
            typer.echo(f"{rep.where} at {lf.setting}: {lf.lines} line(s); valid per profile {valid} → {who}")
            if lf.profile is None:
                if lf.sample:
                    typer.echo(f"  not recognised; lines heard: {lf.sample}")
            else:
                out.append(FoundDevice(lf.profile, TransportKind.SERIAL_LINE, serial_port=rep.where,
                                       baud=lf.setting.baud, parity=lf.setting.parity, stop_bits=lf.setting.stop_bits))
        return out
    chosen = rep.chosen()
    unknown: list[Found] = []
    t = RTable(title=f"{rep.where}: {len(rep.devices())} device(s) at {chosen or '—'}, "
                     f"{rep.transactions} requests in {rep.seconds:.1f} s")
    for col in ("unit", "setting", "model", "firmware", "what was read / why not recognised"):
        t.add_column(col)
    for f in rep.devices() + rep.elsewhere():
        m = f.model
        elsewhere = f.setting != chosen
        if m is not None:
            p = profiles[m.profile]
            fw = m.firmware or "—"
            if m.firmware_ok is False:
                fw += f" (profile fits {p.firmware}!)"
            what = ", ".join(f"{k}={v}" for k, v in m.values.items())
            model = f"{p.vendor} {p.model} ({p.id})"
        else:
            fw = "—"
            model = "ambiguous: " + ", ".join(x.profile for x in f.fitting) if f.fitting else "unknown"
            what = "not recognised: what it answered is listed below the table"
            unknown.append(f)
        if elsewhere:
            what = f"answers only at {f.setting}, the bus runs at {chosen}: set the device to {chosen}; " + what
        t.add_row(str(f.unit), str(f.setting), model, fw, what)
        if m is not None and not elsewhere and m.firmware_ok is not False:
            s = f.setting
            if rep.transport is TransportKind.MODBUS_TCP:
                host, _, port = rep.where.rpartition(":")
                out.append(FoundDevice(m.profile, rep.transport, host=host, tcp_port=int(port), unit=f.unit,
                                       timeout_s=f.slow_s))
            else:
                out.append(FoundDevice(m.profile, rep.transport, serial_port=rep.where, baud=s.baud,
                                       parity=s.parity, stop_bits=s.stop_bits, unit=f.unit, timeout_s=f.slow_s))
    c.print(t)
    for f in unknown:  # plain lines, never wrapped: an installer may need to send this to a vendor
        typer.echo(f"unit {f.unit} at {f.setting}, not recognised; it answered: {f.read_text()}")
        for m in f.matches:
            typer.echo(f"  not {m.profile}: {'; '.join(m.reasons[:2])}")
    if rep.late:
        where = ", ".join(f"unit {u} at {s}" for s, u in rep.late[:8])
        c.print(f"Late or garbled answers ({where}): a device answers slower than the scan waits; the units "
                "silent before were asked again, waiting 1 s. Poll such a device with a larger `timeout_s`.")
    if rep.every_unit:
        c.print("The device answered on every unit id tried (a Modbus TCP device that ignores the unit id): "
                "configured once.")
    skipped = [f for f in rep.devices() if f.model is None or f.model.firmware_ok is False]
    if skipped:
        c.print(f"Not written to a config (not recognised, or firmware outside the profile's range): unit(s) "
                f"{', '.join(str(f.unit) for f in skipped)}. Add or fix a profile (docs/profiles.md, `identify:`).")
    return out


def _write_scan_config(out: Path, found: list[FoundDevice], profiles: dict[str, Profile], site: str, gateway: str,
                       uplink: str) -> None:
    import shutil

    import yaml

    from device_profiles.located_yaml import ConfigError
    from edge_agent.budget import config_budgets
    from edge_agent.config import parse_config
    from edge_agent.scan_config import build_config, render

    if not found:
        typer.echo(f"nothing recognised: {out} left as it was", err=True)
        return
    base = None
    if out.exists():
        loaded = yaml.safe_load(out.read_text(encoding="utf-8"))
        base = loaded if isinstance(loaded, dict) else None
    doc, notes = build_config(found, profiles, base, site, gateway, uplink)
    text = render(doc, "edge-agent scan", notes)
    try:
        cfg, used, _ = parse_config(text, str(out), out.parent, None if base and base.get("profile_dirs") else profiles)
    except ConfigError as e:
        typer.echo(f"the config made from this scan does not pass the checks (nothing written):\n{e}", err=True)
        raise typer.Exit(2) from None
    if out.exists():
        shutil.copyfile(out, out.with_name(out.name + ".bak"))
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    typer.echo(f"wrote {out} (passes `edge-agent check`): {len(cfg.buses)} bus(es), {len(cfg.devices)} device(s)")
    for n in notes:
        typer.echo(f"  TODO: {n}")
    _print_budgets(config_budgets(cfg, used))


@app.command()
def probe(
    profile: Annotated[str, typer.Option(help="profile id, e.g. voltpile-cp10")],
    unit: Annotated[int, typer.Option(help="Modbus unit id")] = 1,
    port: Annotated[str | None, typer.Option("--serial-port", "--port", help="serial device")] = None,
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
def run(
    config: Cfg,
    log_level: str = "INFO",
    parent_pid: Annotated[int | None, typer.Option(
        help="stop when this process (the program that started the agent) is gone")] = None,
) -> None:
    """Run the agent until SIGTERM / Ctrl-C."""
    import logging

    from edge_agent.agent import run_agent

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg, profiles = _load(config)
    run_agent(cfg, profiles, config, parent_pid)


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
    cv = st.get("config", {}).get("version", 0)
    c.print(f"site {st['site']} gateway {st['gateway']} (pid {st['pid']}, status {age:.0f} s old), config "
            + (f"version {cv} from the cloud" if cv else "written on site (no cloud version)"))
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
