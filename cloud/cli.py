"""`shelterwatch cloud …`: run the ingester, register sites, look at dead letters."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(help="Cloud side: ingest, registry, dead letters.", no_args_is_help=True)

StateDb = Annotated[str, typer.Option("--state-db", help="SQLAlchemy URL of the registry")]
BrokerUser = Annotated[
    str | None,
    typer.Option(help="the cloud's broker user (or SHELTERWATCH_BROKER_USER); its password comes from "
                 "SHELTERWATCH_BROKER_PASSWORD_FILE or SHELTERWATCH_BROKER_PASSWORD, never the command line"),
]


def _account(broker: str, user: str | None) -> Any:
    """The broker address checked (no credentials in it) and the account from the environment."""
    from cloud.broker_account import BrokerAccountError, check_address, from_env

    try:
        check_address(broker)
        return from_env(user)
    except BrokerAccountError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None


@app.command()
def ingest(
    broker: Annotated[str, typer.Option(help="mqtt://host:port")] = "mqtt://127.0.0.1:1883",
    tsdb: Annotated[
        str,
        typer.Option(
            help="sqlite:///path | influx2://host:port?org=&bucket=&token= | influx1://host:port/db"
        ),
    ] = "sqlite:///var/shelterwatch/ts.db",
    state_db: StateDb = "sqlite:///var/shelterwatch/state.db",
    spool_dir: Annotated[
        str, typer.Option(help="where batches wait while the store is down")
    ] = "var/shelterwatch/spool",
    mqtt_version: Annotated[str, typer.Option(help="auto | 5 | 3.1.1")] = "auto",
    mqtt_client: Annotated[str, typer.Option(help="gmqtt (fast) | paho")] = "gmqtt",
    client_id: Annotated[
        str | None, typer.Option(help="stable id per replica (keeps the QoS 1 session)")
    ] = None,
    group: Annotated[str, typer.Option(help="shared-subscription group (MQTT 5)")] = "ingest",
    metrics_port: Annotated[int | None, typer.Option(help="serve Prometheus /metrics on this port")] = None,
    metrics_addr: str = "127.0.0.1",
    broker_user: BrokerUser = None,
) -> None:
    """Run the ingester until interrupted."""
    import logging
    import signal
    import threading

    from cloud.ingest.service import IngestConfig, IngestService

    account = _account(broker, broker_user)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    Path(spool_dir).mkdir(parents=True, exist_ok=True)
    for url in (tsdb, state_db):
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    cfg = IngestConfig(
        broker=broker,
        mqtt_version=mqtt_version,
        mqtt_client=mqtt_client,
        tsdb=tsdb,
        state_db=state_db,
        spool_dir=spool_dir,
        client_id=client_id,
        shared_group=group,
        metrics_port=metrics_port,
        metrics_addr=metrics_addr,
        account=account,
    )
    svc = IngestService(cfg).start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: done.set())
    signal.signal(signal.SIGINT, lambda *a: done.set())
    try:
        while not done.wait(10):
            s = svc.stats()
            logging.info(
                "received %d accepted %d stored %d pending %d dead %s",
                s["received"],
                s["accepted"],
                s["written"],
                s["pending"],
                s["dead_letters"],
            )
    finally:
        svc.stop()


@app.command()
def register(site_file: Path, state_db: StateDb = "sqlite:///var/shelterwatch/state.db") -> None:
    """Register (or update) a site, its gateways and devices from a site file."""
    from cloud.site_config import load_site
    from cloud.state.registry import Registry
    from device_profiles.located_yaml import ConfigError

    try:
        site = load_site(site_file)
    except ConfigError as e:
        for issue in e.issues:
            typer.echo(str(issue), err=True)
        raise typer.Exit(2) from None
    if state_db.startswith("sqlite:///"):
        Path(state_db.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    reg = Registry(state_db)
    res = reg.register_site(site)
    typer.echo(
        f"site {site.site}: {res['gateways']} gateways, {res['devices']} devices registered"
        + (f", {res['removed_devices']} removed" if res["removed_devices"] else "")
    )


@app.command()
def deadletters(
    db: Annotated[Path, typer.Option(help="dead-letter file")] = Path("var/shelterwatch/dead-letters.db"),
    limit: int = 20,
    reason: Annotated[str | None, typer.Option(help="only this reason")] = None,
) -> None:
    """Show the most recent refused messages and counts by reason."""
    import sqlite3
    from datetime import UTC, datetime

    if not db.exists():
        typer.echo(f"{db}: no dead letters yet")
        return
    con = sqlite3.connect(db)
    for r, n in con.execute("SELECT reason, COUNT(*) FROM dead_letters GROUP BY reason ORDER BY 2 DESC"):
        typer.echo(f"{n:8d}  {r}")
    q = "SELECT received, topic, reason, detail, payload, size FROM dead_letters"
    args: tuple[object, ...] = ()
    if reason:
        q += " WHERE reason = ?"
        args = (reason,)
    for rec, topic, r, detail, payload, size in con.execute(q + " ORDER BY id DESC LIMIT ?", (*args, limit)):
        when = datetime.fromtimestamp(rec, UTC).strftime("%Y-%m-%d %H:%M:%S")
        typer.echo(f"{when} {r:15s} {topic} ({size} B): {detail[:120]}")
        typer.echo(f"    {bytes(payload[:120])!r}")


@app.command()
def serve(
    site: Annotated[list[Path], typer.Option(help="site file(s) to register (gateways, devices)")],
    alarms: Annotated[
        list[Path] | None,
        typer.Option(help="alarm file(s): people, escalation, overrides… (default: the site file's alarm keys)"),
    ] = None,
    broker: Annotated[
        str, typer.Option(help="mqtt://host:port, or a NATS cluster: nats://h1:4222,h2:4222,h3:4222")
    ] = "mqtt://127.0.0.1:1883",
    broker_user: BrokerUser = None,
    gateway_broker: Annotated[
        str, typer.Option(help="broker address written into enrolled gateways' configs (default: --broker); "
                          "on a NATS cluster the nodes' MQTT listeners, comma-separated")
    ] = "",
    data_dir: Annotated[Path, typer.Option(help="databases and spool")] = Path("var/shelterwatch"),
    tsdb: Annotated[str, typer.Option(help="as for `ingest`; default SQLite in --data-dir")] = "",
    state_db: Annotated[str, typer.Option(help="registry URL; default SQLite in --data-dir")] = "",
    alarm_db: Annotated[
        str, typer.Option(help="alarm store URL, e.g. postgresql+psycopg://sw@db/sw; default SQLite in --data-dir")
    ] = "",
    web_db: Annotated[
        str, typer.Option(help="users, sessions, commands (replicas share it); default SQLite in --data-dir")
    ] = "",
    replica_id: Annotated[str, typer.Option(help="NATS cluster: this replica's name (default host-port)")] = "",
    partitions: Annotated[int, typer.Option(help="NATS cluster: partitions in the nodes' mappings")] = 16,
    nats_users_file: Annotated[str, typer.Option(
        help="NATS cluster: this machine's node's accounts file, kept equal to the enrolled gateways")] = "",
    nats_reload_pid: Annotated[list[int] | None, typer.Option(
        help="NATS cluster: the local node's pid, reloaded (SIGHUP) when the accounts change")] = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    metrics_port: Annotated[int | None, typer.Option(help="serve Prometheus /metrics on this port")] = None,
) -> None:
    """Run ingest, alarms with pushes, and the web pages/API for the given sites, until interrupted.

    The secret that signs sessions and acknowledge links comes from SHELTERWATCH_SECRET (or
    SHELTERWATCH_SECRET_FILE), the broker account from SHELTERWATCH_BROKER_USER and
    SHELTERWATCH_BROKER_PASSWORD_FILE; create users with `shelterwatch cloud user add --db sqlite:///DATA_DIR/web.db`."""
    import logging
    import os
    import signal
    import threading

    from cloud.serve import CloudService, ServeConfig
    from device_profiles.located_yaml import ConfigError

    account = _account(broker, broker_user)
    if gateway_broker:
        _account(gateway_broker, None)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    secret = os.environ.get("SHELTERWATCH_SECRET", "")
    if not secret and (f := os.environ.get("SHELTERWATCH_SECRET_FILE")):
        secret = Path(f).read_text().strip()
    cfg = ServeConfig(broker=broker, site_files=site, alarm_files=alarms or [], secret=secret, data_dir=data_dir,
                      tsdb=tsdb, state_db=state_db, alarm_db=alarm_db, web_db=web_db, replica_id=replica_id,
                      partitions=partitions, host=host, port=port, metrics_port=metrics_port, account=account,
                      gateway_broker=gateway_broker, nats_users_file=nats_users_file,
                      nats_reload_pids=nats_reload_pid or [])
    try:
        svc = CloudService(cfg).start()
    except (ConfigError, ValueError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"shelterwatch cloud: http://{host}:{port}  (data in {data_dir})")
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: done.set())
    signal.signal(signal.SIGINT, lambda *a: done.set())
    try:
        done.wait()
    finally:
        svc.stop()


@app.command("nats-config")
def nats_config(
    name: Annotated[str, typer.Option(help="this node's name (unique in the cluster)")],
    routes: Annotated[str, typer.Option(help="every node's host, comma-separated (this one included)")],
    host: Annotated[str, typer.Option(help="address this node listens on")] = "0.0.0.0",
    store_dir: Annotated[str, typer.Option(help="JetStream file storage")] = "/var/lib/nats",
    client_port: int = 4222,
    cluster_port: int = 6222,
    mqtt_port: int = 1883,
    http_port: int = 8222,
    partitions: Annotated[int, typer.Option(help="must match the replicas' --partitions")] = 16,
    users_file: Annotated[str, typer.Option(
        help="the accounts include file (`cloud nats-users` writes it), relative to this config's directory; "
             "'' for no accounts (anyone may connect: a lab only)")] = "shelterwatch-users.conf",
    extra: Annotated[str, typer.Option(help="appended verbatim: TLS, …")] = "",
) -> None:
    """Print the config of one node of the NATS cluster (docs/operations.md, "Growing past one machine")."""
    from cloud.cluster.natsconf import NodeConfig, render

    hosts = [h.strip() for h in routes.split(",") if h.strip()]
    typer.echo(render(NodeConfig(
        name=name, store_dir=store_dir, routes=[f"nats://{h}:{cluster_port}" for h in hosts], host=host,
        client_port=client_port, cluster_port=cluster_port, mqtt_port=mqtt_port, http_port=http_port,
        partitions=partitions, users_file=users_file or None, extra=extra,
    )), nl=False)


@app.command("nats-users")
def nats_users(
    web_db: Annotated[str, typer.Option("--web-db", help="SQLAlchemy URL of the web database (enrolments)")],
    out: Annotated[Path, typer.Option(help="the accounts file the node includes (nats-config --users-file)")],
    partitions: Annotated[int, typer.Option(help="must match the nodes' mappings and the replicas' --partitions")] = 16,
    reload_pid: Annotated[list[int] | None, typer.Option(
        help="a local nats-server to reload (SIGHUP) once the file is written; repeat per node")] = None,
    broker_user: BrokerUser = None,
) -> None:
    """Write a NATS node's accounts (the cloud's user and every enrolled gateway's, bcrypt hashes and
    subject permissions) and reload the node: run after an enrolment on every node's machine
    (docs/operations.md, "Growing past one machine")."""
    from cloud.auth.models import make_engine, make_sessionmaker
    from cloud.broker_account import BrokerAccountError, from_env
    from cloud.cluster.natsusers import reload_nodes, users_text, write_atomically

    try:
        text = users_text(make_sessionmaker(make_engine(web_db)), from_env(broker_user), partitions)
    except (BrokerAccountError, ValueError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    write_atomically(out, text)
    try:
        reload_nodes(reload_pid or [])
    except ProcessLookupError as e:
        typer.echo(f"error: no such nats-server process: {e}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{out}: {text.count('user: ') - 1} gateway account(s) and the cloud's; "
               + (f"reloaded {len(reload_pid or [])} node(s)" if reload_pid else "reload the nodes (SIGHUP)"))
