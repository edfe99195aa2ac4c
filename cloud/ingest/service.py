"""The ingest service: MQTT client + pipeline + storage writer + housekeeping, in background
threads, with `start()`, `stop()` and `stats()` for the CLI, the demo and tests."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloud.ingest.dead_letter import DeadLetterStore
from cloud.ingest.dedupe import Deduper
from cloud.ingest.mqtt import IngestClient
from cloud.ingest.pipeline import Pipeline
from cloud.ingest.safety_queue import QueueSafetySink
from cloud.safety import SafetySink
from cloud.state.registry import Registry
from cloud.tsdb.base import open_sink
from cloud.tsdb.spool import StorageWriter
from device_profiles import wire

log = logging.getLogger(__name__)


@dataclass
class IngestConfig:
    broker: str = "mqtt://127.0.0.1:1883"
    mqtt_version: str = "auto"  # auto | 5 | 3.1.1
    mqtt_client: str = "gmqtt"  # gmqtt (fast, asyncio) | paho
    tsdb: str = "sqlite:///var/shelterwatch/ts.db"
    state_db: str = "sqlite:///var/shelterwatch/state.db"
    spool_dir: str = "var/shelterwatch/spool"
    dead_letter_db: str | None = None  # default: <spool_dir>/../dead-letters.db
    client_id: str | None = None  # stable per replica so the broker keeps its QoS 1 session
    shared_group: str | None = "ingest"
    site: str = "+"
    batch_points: int = 5000
    batch_interval: float = 0.5
    backoff_max: float = 10.0
    metrics_port: int | None = None  # serve /metrics on 127.0.0.1:<port>
    metrics_addr: str = "127.0.0.1"
    housekeeping_interval: float = 1.0
    directory_refresh: float = 5.0
    # Raise the GC's gen-0 threshold: at tens of thousands of messages a second the default (700
    # allocations) runs a collection every few messages; measured here it costs ~40 % of the
    # pipeline's CPU. Off for embedding in a process that tunes its own GC.
    tune_gc: bool = True


class IngestService:
    def __init__(self, config: IngestConfig, safety: SafetySink | None = None) -> None:
        self.config = config
        self.safety = safety if safety is not None else QueueSafetySink(maxsize=100_000)
        self.registry = Registry(config.state_db)
        spool = Path(config.spool_dir)
        spool.mkdir(parents=True, exist_ok=True)
        self.dead = DeadLetterStore(config.dead_letter_db or spool.parent / "dead-letters.db")
        self.storage = StorageWriter(
            open_sink(config.tsdb),
            spool,
            batch_points=config.batch_points,
            batch_interval=config.batch_interval,
            backoff_max=config.backoff_max,
        )
        deduper = Deduper()
        for (site, dev), st in self.registry.load_seq_states().items():
            deduper.load(f"{site}/{dev}", st)
        self.pipeline = Pipeline(
            self.registry.directory(),
            self.dead,
            self.safety,
            self.storage,
            deduper,
            on_status=self._on_status,
        )
        cid = config.client_id or f"sw-ingest-{socket.gethostname()[:20]}-{os.getpid()}"
        client_cls: Any = IngestClient
        if config.mqtt_client == "gmqtt":
            from cloud.ingest.mqtt_gmqtt import GmqttIngestClient

            client_cls = GmqttIngestClient
        self.client = client_cls(
            config.broker, self.pipeline.handle, cid, config.mqtt_version, config.shared_group, config.site
        )
        self._stop = threading.Event()
        self._house: threading.Thread | None = None
        self._metrics_server: Any = None
        self.started = 0.0

    # ------------------------------------------------------------------ status messages
    def _on_status(self, site: str, gateway: str, status: wire.Status) -> bool:
        """Birth / last will: enrol if allowed and unknown; record online state. True if the
        directory changed."""
        changed = False
        if (site, gateway) not in self.pipeline.directory.gateways:
            if status.state != "online" or self.registry.enrol_from_birth(site, gateway, status) < 0:
                return False
            self.pipeline.set_directory(self.registry.directory())
            changed = True
        self.registry.set_gateway_status(site, gateway, status)
        return changed

    # ------------------------------------------------------------------ lifecycle
    def start(self, wait: float = 15.0) -> IngestService:
        self.started = time.time()
        if self.config.tune_gc:
            import gc

            gc.freeze()  # what exists at start (profiles, registry) is never garbage
            gc.set_threshold(50_000, 20, 20)
        self.storage.start()
        self._house = threading.Thread(target=self._housekeeping, name="ingest-housekeeping", daemon=True)
        self._house.start()
        if self.config.metrics_port is not None:
            from cloud.metrics import make_registry, serve

            self._metrics_server = serve(
                make_registry(self.stats), self.config.metrics_port, self.config.metrics_addr
            )
        self.client.start()
        if wait and not self.client.wait_connected(wait):
            log.warning("not connected to %s after %.0fs; still trying", self.config.broker, wait)
        return self

    def stop(self) -> None:
        self.client.stop()
        self._stop.set()
        if self._house:
            self._house.join(10)
        self._persist()
        self.storage.stop()
        self.dead.close()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
        self.registry.close()

    def refresh_directory(self) -> None:
        self.pipeline.set_directory(self.registry.directory())

    def _persist(self) -> None:
        self.dead.flush()
        states = self.pipeline.dedupe.take_dirty()
        self.registry.save_seq_states({tuple(k.split("/", 1)): v for k, v in states.items()})  # type: ignore[misc]
        self.registry.save_last_values(self.pipeline.take_last_values())

    def _housekeeping(self) -> None:
        last_refresh = time.monotonic()
        while not self._stop.wait(self.config.housekeeping_interval):
            try:
                self._persist()
                if time.monotonic() - last_refresh >= self.config.directory_refresh:
                    self.refresh_directory()
                    last_refresh = time.monotonic()
            except Exception:
                log.exception("ingest housekeeping")

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every accepted point is in the store (tests, shutdown)."""
        ok = self.storage.flush(timeout)
        self._persist()
        return ok

    def stats(self) -> dict[str, Any]:
        p, s = self.pipeline.stats, self.storage.stats
        q = getattr(self.safety, "qsize", None)
        return {
            "received": p.received,
            "accepted": p.accepted,
            "duplicates": p.duplicates,
            "dead_letters": dict(p.dead),
            "by_kind": {k.value: n for k, n in p.by_kind.items() if n},
            "points": p.points,
            "written": s.written,
            "retries": s.retries,
            "rejected": s.rejected,
            "spooled": s.spooled,
            "pending": self.storage.pending,
            "spool_batches": len(self.storage.spool),
            "store_lag": s.last_write_lag,
            "edge_lag": p.last_edge_lag,
            "last_store_error": s.last_error,
            "safety_queue": q() if callable(q) else 0,
            "missing_seqs": self.pipeline.dedupe.missing(),
            "connected": self.client.connected.is_set(),
            "mqtt_protocol": self.client.protocol,
        }
