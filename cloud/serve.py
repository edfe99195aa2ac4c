"""`shelterwatch cloud serve`: the cloud of one estate (or a few) in one process.

Ingest (registry, time series) feeds the alarm engine directly on its safety path; the engine
pushes through apprise; the web pages and API answer volunteers, managers, installers and
residents, and send remote commands over MQTT. This is the production wiring of what
`shelterwatch demo` runs against simulators; the demo adds simulators, edge agents and a broker.
`shelterwatch cloud ingest` stays available for ingest-only replicas (scale-out, DESIGN §4).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cloud.remote_config.limits import GatewayLimits

log = logging.getLogger(__name__)


@dataclass
class ServeConfig:
    broker: str  # the address only: the account is `account` (cloud/broker_account.py)
    site_files: list[Path] = field(default_factory=list)
    alarm_files: list[Path] = field(default_factory=list)
    secret: str = ""  # signs sessions and acknowledge links; at least 32 characters
    data_dir: Path = Path("var/shelterwatch")
    # Already loaded configs (the demo builds its site from the simulators), used with the files above.
    sites: list[Any] = field(default_factory=list)  # cloud.site_config.SiteFile
    alarm_sites: list[Any] = field(default_factory=list)  # cloud.alarms.config.AlarmSiteConfig
    tsdb: str = ""  # default: SQLite in data_dir
    # SQLAlchemy URLs of the registry and the alarm store; default SQLite in data_dir. Replicas that
    # share alarm state use PostgreSQL (postgresql+psycopg://user@host/db; docs/alarms.md).
    state_db: str = ""
    alarm_db: str = ""
    # The web part's own tables (users, sessions, commands); default SQLite in data_dir. Replicas
    # serving one estate share it (PostgreSQL), so a login or a command works on any of them.
    web_db: str = ""
    # A NATS cluster (broker nats://h1:4222,h2:4222,h3:4222): this replica's name among the others
    # (default host-port), how many partitions the nodes split the uplink into (their `mappings`) and
    # how long a dead replica's partitions stay leased before survivors take them (cloud/cluster).
    replica_id: str = ""
    partitions: int = 16
    lease_ttl_s: float = 6.0
    host: str = "127.0.0.1"
    port: int = 8000
    mqtt_client: str = "gmqtt"
    mqtt_version: str = "auto"
    metrics_port: int | None = None
    client_id: str = "sw-cloud"  # stable: the broker keeps this process's QoS 1 sessions (both lanes)
    safety_lane: bool = True
    engine_tick_s: float = 0.1  # how often timers (retard, escalation, offline) are checked
    housekeeping_interval: float = 1.0
    directory_refresh: float = 5.0
    poll_ms: int | None = None  # live pages' refresh; None: WebSettings' default
    # Python's GIL hand-over interval for this process (default 5 ms). Ingest, registry writes and
    # the alarm engine share one GIL; an event crosses three threads on its way to a push, and each
    # hand-over can wait a full interval behind bulk work. 1 ms cut ingest → dispatch p99 under a
    # 2,200 msg/s fleet from ~120 ms to ~60 ms (docs/e2e-latency.md). None: leave it alone.
    gil_switch_interval_s: float | None = 0.001
    remote_config: bool = True  # desired gateway configs, sent over MQTT (cloud/remote_config/)
    extra: dict[str, Any] = field(default_factory=dict)
    account: Any = None  # cloud.broker_account.BrokerAccount: the cloud's own broker user
    # The broker address written into enrolled gateways' configs (default: `broker`); never an account.
    gateway_broker: str = ""
    time_policy: Any = None  # cloud.ingest.timepolicy.TimePolicy; None: the default policy
    # NATS cluster: this machine's node's accounts file and the node's pid(s) to reload when the
    # enrolled accounts change (cloud/cluster/natsusers.py); "" leaves the node's accounts alone.
    nats_users_file: str = ""
    nats_reload_pids: list[int] = field(default_factory=list)


class CloudService:
    """Starts and stops the cloud parts in dependency order; each part is the one the tests use.

    After `start()` the parts are attributes (`registry`, `store`, `dispatcher`, `signer`, `engine`,
    `gate`, `history`, `ingest`, `commander`, `configs`, `app`, `server`), so the demo and tests drive the
    very objects the production process runs."""

    def __init__(self, cfg: ServeConfig) -> None:
        self.cfg = cfg
        self.parts: list[tuple[str, Any]] = []  # (name, object with stop/close), newest last
        self.server: Any = None
        self.settings: Any = None
        self.registry: Any = None
        self.store: Any = None
        self.dispatcher: Any = None
        self.signer: Any = None
        self.engine: Any = None
        self.gate: Any = None
        self.history: Any = None
        self.ingest: Any = None
        self.commander: Any = None
        self.configs: Any = None  # cloud.remote_config.service.ConfigService
        self.app: Any = None
        self.member: Any = None  # cloud.cluster.replica.ClusterMember on a NATS cluster
        self._t0 = 0.0

    @property
    def url(self) -> str:
        return f"http://{self.cfg.host}:{self.cfg.port}"

    def start(self, wait_web: float = 20.0) -> CloudService:
        try:
            self._start(wait_web)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, wait_web: float) -> None:
        import uvicorn

        from cloud.alarms.config import load_site_alarms
        from cloud.alarms.directory import RegistryDirectory
        from cloud.alarms.engine import AlarmEngine
        from cloud.alarms.store import AlarmStore
        from cloud.api.commands import Commander
        from cloud.api.estate import RegistrySource
        from cloud.api.server import build_app
        from cloud.api.settings import WebSettings
        from cloud.auth.models import make_engine, make_sessionmaker
        from cloud.broker_account import BrokerAccount, without_credentials
        from cloud.ingest.priority import PriorityGate
        from cloud.ingest.service import IngestConfig, IngestService
        from cloud.notify.dispatch import AppriseSender, Dispatcher
        from cloud.notify.links import AckSigner
        from cloud.site_config import alarm_configs, load_site
        from cloud.state.registry import Registry

        self._t0 = time.monotonic()
        c, d = self.cfg, self.cfg.data_dir
        d.mkdir(parents=True, exist_ok=True)
        if c.gil_switch_interval_s is not None:
            import sys

            sys.setswitchinterval(c.gil_switch_interval_s)
        web_kw: dict[str, Any] = {} if c.poll_ms is None else {"poll_ms": c.poll_ms}
        account = c.account or BrokerAccount()
        self.settings = settings = WebSettings(
            db_url=c.web_db or f"sqlite:///{d / 'web.db'}", secret=c.secret, mqtt_url=c.broker,
            mqtt_username=account.username, mqtt_password=account.password,
            gateway_broker_url=",".join(without_credentials(u) for u in (c.gateway_broker or c.broker).split(",")),
            **web_kw)
        secret = settings.secret_bytes()  # refuses a short or missing secret before anything starts
        site_files = [("(given)", s) for s in c.sites] + [(str(p), load_site(p)) for p in c.site_files]
        sites = [s for _, s in site_files]  # located errors before anything starts
        # An alarm file for a site, else the alarm keys of its site file (docs/alarms.md).
        alarm_sites = alarm_configs(site_files, [("(given)", a) for a in c.alarm_sites]
                                    + [(str(p), load_site_alarms(p)) for p in c.alarm_files])

        state_db = c.state_db or f"sqlite:///{d / 'state.db'}"
        self.registry = registry = Registry(state_db)
        self._started("registry", registry)
        for s in sites:
            registry.register_site(s)
        alarm_db = c.alarm_db or f"sqlite:///{d / 'alarms.db'}"
        self.store = AlarmStore(alarm_db)
        self._started("alarm store", self.store)
        self.dispatcher = Dispatcher(AppriseSender(), self.store.log_attempt)
        self._started("dispatcher", self.dispatcher)
        self.signer = AckSigner(secret)
        self.engine = AlarmEngine(self.store, RegistryDirectory(registry), alarm_sites, self.dispatcher,
                                  self.signer, tick_s=c.engine_tick_s).start()
        self._started("alarm engine", self.engine)
        # Status, events and device health go ahead of telemetry into the engine (the in-process
        # half of the safety lane; cloud/ingest/priority.py).
        # Telemetry is conflated per device, holding only the samples the engine's rules read.
        self.gate = PriorityGate(self.engine, depths=self.engine.point_depths).start()
        self._started("safety gate", self.gate)
        from cloud.history.service import HistoryService
        from cloud.ingest.jetstream import is_nats_url

        clustered = is_nats_url(c.broker)  # partitions come from leases (cloud/cluster/replica.py)
        if not clustered:  # alone it owns every gateway now; a replica re-sends at each takeover (adopt)
            log.info("pushes re-sent after a restart: %d", self.engine.resend())

        self.history = HistoryService().attach(self.engine)  # alarm, inspection, gateway_status, parking_stay
        self.ingest = ingest = IngestService(IngestConfig(
            broker=c.broker, mqtt_version=c.mqtt_version, mqtt_client=c.mqtt_client,
            tsdb=c.tsdb or f"sqlite:///{d / 'ts.db'}", state_db=state_db, spool_dir=str(d / "spool"),
            client_id=c.client_id, shared_group=None, metrics_port=c.metrics_port, safety_lane=c.safety_lane,
            housekeeping_interval=c.housekeeping_interval, directory_refresh=c.directory_refresh,
            partitions=c.partitions, partitions_owned=[] if clustered else None,
            account=account, **({} if c.time_policy is None else {"time_policy": c.time_policy})),
            safety=self.history.fan_out(self.gate), engine=self.engine)  # acks of events wait for the engine
        self.history.bind(ingest.storage, lambda: ingest.pipeline.directory).step()  # watching from message 1
        self._started("ingest", ingest.start())
        if c.remote_config:
            from cloud.remote_config.service import ConfigService
            from cloud.remote_config.store import ConfigStore
            from device_profiles.loader import catalog

            # On a NATS cluster a gateway's answers and births reach only its partition's owner, through
            # the ingester (acknowledged once recorded); the owner answers and steps rollouts. Wired before
            # the cluster member takes partitions, so no answer is read before it has somewhere to go.
            self.configs = ConfigService(ConfigStore(registry.engine), c.broker, catalog(),
                                         lambda site: [g.id for g in registry.gateways(site)],
                                         account.username, account.password,
                                         owns=self._owns if clustered else None,
                                         name=self._replica_id() if clustered else "",
                                         client_id=None if clustered else f"{c.client_id}-config",
                                         set_aside=ingest.set_aside, limits=self._edge_limits).start()
            if clustered:
                ingest.config_sink, ingest.on_birth = self.configs.handle, self.configs.birth
            self._started("remote config", self.configs)
        if clustered:
            from cloud.cluster.replica import ClusterMember

            self.member = ClusterMember(alarm_db, self._replica_id(), c.partitions,
                                        ingest, self.engine, self.history, ttl_s=c.lease_ttl_s,
                                        url=self.url).start()
            self._started("cluster member", self.member)
            if c.nats_users_file:
                from cloud.cluster.natsusers import UsersSync

                self._started("NATS accounts", UsersSync(
                    make_sessionmaker(make_engine(settings.db_url)), account, Path(c.nats_users_file),
                    list(c.nats_reload_pids), c.partitions).start())
        # stopped before ingest (parts stop newest first), so its last points still reach the storage
        self._started("history", self.history.start())
        self.commander = Commander(make_sessionmaker(make_engine(settings.db_url)), c.broker,
                                   account.username, account.password,
                                   timeout_s=settings.command_timeout_s).start()
        self._started("commander", self.commander)
        self.app = build_app(settings, RegistrySource(registry), alarm_engine=self.engine, ack_signer=self.signer,
                             commander=self.commander, db=self.commander.db, storage=ingest.storage_status,
                             configs=self.configs, sessions=self.history.sessions)
        self.server = uvicorn.Server(uvicorn.Config(self.app, host=c.host, port=c.port, log_level="warning",
                                                    lifespan="off"))
        web = threading.Thread(target=self.server.run, name="web", daemon=True)
        web.start()
        deadline = time.monotonic() + wait_web
        while wait_web and not self.server.started:
            if not web.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"web server did not start on {c.host}:{c.port}")
            time.sleep(0.02)

    def _edge_limits(self) -> dict[tuple[str, str], GatewayLimits]:
        """Every registered gateway's devices' overridden alarm limits, as the engine judges them
        (cloud/alarms/edge_limits.py): what remote configuration sends each gateway (`limits`)."""
        from cloud.alarms.edge_limits import device_overrides

        out: dict[tuple[str, str], GatewayLimits] = {(g.site_id, g.id): {} for g in self.registry.gateways()}
        for d in self.registry.devices():
            prof = self.engine.profiles.get(d.profile)
            if prof is None or (d.site_id, d.gateway_id) not in out:
                continue
            ov = device_overrides(prof, self.engine.rules_for(d.site_id, d.id, d.profile)[1])
            if ov:
                out[(d.site_id, d.gateway_id)][d.id] = ov
        return out

    def _replica_id(self) -> str:
        import socket

        return self.cfg.replica_id or f"{socket.gethostname()}-{self.cfg.port}"

    def _owns(self, site: str, gateway: str) -> bool:
        """This replica owns the gateway's partition (False until the cluster member runs)."""
        return self.member is not None and bool(self.member.owns(site, gateway))

    def _started(self, name: str, part: Any) -> None:
        """Record a started part (stopped newest first) and how long this start has taken so far."""
        self.parts.append((name, part))
        log.info("%s up after %.1f s", name, time.monotonic() - self._t0)

    def stop(self) -> None:
        """Newest first; every step runs even if an earlier one failed."""
        if self.server is not None:
            self.server.should_exit = True
        while self.parts:
            name, part = self.parts.pop()
            t0 = time.monotonic()
            try:
                (getattr(part, "stop", None) or part.close)()
            except Exception:
                log.exception("stopping %s failed", name)
            log.info("stopped %s in %.2f s", name, time.monotonic() - t0)
