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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class ServeConfig:
    broker: str
    site_files: list[Path]
    alarm_files: list[Path]
    secret: str  # signs sessions and acknowledge links; at least 32 characters
    data_dir: Path = Path("var/shelterwatch")
    tsdb: str = ""  # default: SQLite in data_dir
    host: str = "127.0.0.1"
    port: int = 8000
    mqtt_client: str = "gmqtt"
    mqtt_version: str = "auto"
    metrics_port: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class CloudService:
    """Starts and stops the cloud parts in dependency order; each part is the one the tests use."""

    def __init__(self, cfg: ServeConfig) -> None:
        self.cfg = cfg
        self.parts: list[tuple[str, Any]] = []  # (name, object with stop/close), newest last
        self.server: Any = None
        self.ingest: Any = None
        self.engine: Any = None
        self.history: Any = None

    def start(self) -> CloudService:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        import uvicorn

        from cloud.alarms.config import load_site_alarms
        from cloud.alarms.directory import RegistryDirectory
        from cloud.alarms.engine import AlarmEngine
        from cloud.alarms.store import AlarmStore
        from cloud.api.commands import Commander
        from cloud.api.estate import RegistrySource
        from cloud.api.server import build_app
        from cloud.api.settings import WebSettings
        from cloud.ingest.service import IngestConfig, IngestService
        from cloud.notify.dispatch import AppriseSender, Dispatcher
        from cloud.notify.links import AckSigner
        from cloud.site_config import load_site
        from cloud.state.registry import Registry

        c, d = self.cfg, self.cfg.data_dir
        d.mkdir(parents=True, exist_ok=True)
        settings = WebSettings(db_url=f"sqlite:///{d / 'web.db'}", secret=c.secret, mqtt_url=c.broker,
                               gateway_broker_url=c.broker)
        secret = settings.secret_bytes()  # refuses a short or missing secret before anything starts
        sites = [load_site(p) for p in c.site_files]  # located errors before anything starts
        alarm_sites = [load_site_alarms(p) for p in c.alarm_files]

        state_db = f"sqlite:///{d / 'state.db'}"
        registry = Registry(state_db)
        self.parts.append(("registry", registry))
        for s in sites:
            registry.register_site(s)
        store = AlarmStore(f"sqlite:///{d / 'alarms.db'}")
        self.parts.append(("alarm store", store))
        dispatcher = Dispatcher(AppriseSender(), store.log_attempt)
        self.parts.append(("dispatcher", dispatcher))
        signer = AckSigner(secret)
        self.engine = AlarmEngine(store, RegistryDirectory(registry), alarm_sites, dispatcher, signer).start()
        self.parts.append(("alarm engine", self.engine))
        from cloud.history.service import HistoryService

        self.history = HistoryService().attach(self.engine)  # alarm, inspection, gateway_status, parking_stay
        self.ingest = IngestService(IngestConfig(
            broker=c.broker, mqtt_version=c.mqtt_version, mqtt_client=c.mqtt_client,
            tsdb=c.tsdb or f"sqlite:///{d / 'ts.db'}", state_db=state_db, spool_dir=str(d / "spool"),
            client_id="sw-cloud", shared_group=None, metrics_port=c.metrics_port),
            safety=self.history.fan_out(self.engine))
        ingest = self.ingest
        self.history.bind(ingest.storage, lambda: ingest.pipeline.directory).step()  # watching from message 1
        self.parts.append(("ingest", ingest.start()))
        # stopped before ingest (parts stop newest first), so its last points still reach the storage
        self.parts.append(("history", self.history.start()))
        from cloud.auth.models import make_engine, make_sessionmaker

        commander = Commander(make_sessionmaker(make_engine(settings.db_url)), c.broker,
                              timeout_s=settings.command_timeout_s).start()
        self.parts.append(("commander", commander))
        app = build_app(settings, RegistrySource(registry), alarm_engine=self.engine, ack_signer=signer,
                        commander=commander, db=commander.db)
        self.server = uvicorn.Server(uvicorn.Config(app, host=c.host, port=c.port, log_level="warning",
                                                    lifespan="off"))
        threading.Thread(target=self.server.run, name="web", daemon=True).start()

    def stop(self) -> None:
        """Newest first; every step runs even if an earlier one failed."""
        if self.server is not None:
            self.server.should_exit = True
        while self.parts:
            name, part = self.parts.pop()
            try:
                (getattr(part, "stop", None) or part.close)()
            except Exception:
                log.exception("stopping %s failed", name)
