"""The ingest service: MQTT client + pipeline + storage writer + housekeeping, in background
threads, with `start()`, `stop()` and `stats()` for the CLI, the demo and tests.

`durable` is the durability point the MQTT client acknowledges behind (cloud/ingest/durability.py):
the storage writer, the dead letters and parked messages (one group commit) and, when the process
runs one, the alarm engine. The replay check's state is saved only for messages that are durable.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from cloud.broker_account import BrokerAccount, redact
from cloud.ingest import poison
from cloud.ingest.dead_letter import DeadLetterStore
from cloud.ingest.dedupe import Deduper
from cloud.ingest.durability import Barrier, Callback, DurabilityPoint, GroupCommit, Stage
from cloud.ingest.jetstream import JetStreamIngestClient, is_nats_url
from cloud.ingest.mqtt import IngestClient
from cloud.ingest.parked import ParkedStore
from cloud.ingest.pipeline import Pipeline
from cloud.ingest.safety_queue import QueueSafetySink
from cloud.ingest.timepolicy import TimePolicy
from cloud.safety import SafetySink
from cloud.state.registry import Registry
from cloud.tsdb.base import open_sink
from cloud.tsdb.spool import StorageWriter
from device_profiles import wire

log = logging.getLogger(__name__)
CONFIG_UPLINK = tuple(f"/{k}" for k in (wire.ConfigKind.RESULT, wire.ConfigKind.RUNNING))


@dataclass
class IngestConfig:
    broker: str = "mqtt://127.0.0.1:1883"
    account: BrokerAccount = field(default_factory=BrokerAccount)  # cloud/broker_account.py
    mqtt_version: str = "auto"  # auto | 5 | 3.1.1
    mqtt_client: str = "gmqtt"  # gmqtt (fast, asyncio) | paho
    tsdb: str = "sqlite:///var/shelterwatch/ts.db"
    state_db: str = "sqlite:///var/shelterwatch/state.db"
    spool_dir: str = "var/shelterwatch/spool"
    dead_letter_db: str | None = None  # default: <spool_dir>/../dead-letters.db
    client_id: str | None = None  # stable per replica so the broker keeps its QoS 1 session
    # A second connection (`<client_id>-safety`, its own session and broker queue) for status,
    # events and device health, so alarms never wait behind a telemetry backlog.
    safety_lane: bool = True
    shared_group: str | None = "ingest"
    site: str = "+"
    batch_points: int = 5000
    batch_interval: float = 0.5
    # While a transport waits to acknowledge, the storage writer gathers points this long after the
    # oldest waiting request, then writes (acknowledgements wait about this plus one write).
    ack_linger: float = 0.05
    # A NATS cluster (broker nats://…): the partitions the nodes split the uplink into (the nodes'
    # `mappings`, cloud/cluster/partition.py) and those this process consumes (None: all of them;
    # `cloud serve` replicas take theirs from partition leases, cloud/cluster/leases.py).
    partitions: int = 16
    partitions_owned: list[int] | None = None
    # MQTT 5 Receive Maximum per lane: unacknowledged messages the broker may send (cloud/ingest/mqtt.py).
    receive_maximum: int = 4096
    # `stop()`: how long points may take to reach the store; what has not by then goes to the spool.
    stop_wait: float = 2.0
    backoff_max: float = 10.0
    metrics_port: int | None = None  # serve /metrics on 127.0.0.1:<port>
    metrics_addr: str = "127.0.0.1"
    housekeeping_interval: float = 1.0
    directory_refresh: float = 5.0
    # Raise the GC's gen-0 threshold: at tens of thousands of messages a second the default (700
    # allocations) runs a collection every few messages; measured here it costs ~40 % of the
    # pipeline's CPU. Off for embedding in a process that tunes its own GC.
    tune_gc: bool = True
    # What a gateway's `ts` is worth (cloud/ingest/timepolicy.py); `TimePolicy.off()` for replays
    # of a simulated clock (benchmarks, tests with fixed dates).
    time_policy: TimePolicy = field(default_factory=TimePolicy)
    time_beacon_s: float | None = 5.0  # publish the cloud's clock on sw/v1/time this often (None: off)


class IngestService:
    """`engine`: the alarm engine when this process runs one (`cloud serve`); acknowledgements of
    status, events and device health then wait until it has processed them."""

    def __init__(
        self, config: IngestConfig, safety: SafetySink | None = None, engine: Barrier | None = None
    ) -> None:
        self.config = config
        self.safety = safety if safety is not None else QueueSafetySink(maxsize=100_000)
        self.registry = Registry(config.state_db)
        spool = Path(config.spool_dir)
        spool.mkdir(parents=True, exist_ok=True)
        self.dead = DeadLetterStore(config.dead_letter_db or spool.parent / "dead-letters.db")
        self.parked_store = ParkedStore(spool.parent / "parked.db")
        self.storage = StorageWriter(
            open_sink(config.tsdb),
            spool,
            batch_points=config.batch_points,
            batch_interval=config.batch_interval,
            backoff_max=config.backoff_max,
            linger=config.ack_linger,
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
            time_policy=config.time_policy,
        )
        self.side_commit = GroupCommit(self._commit_side, "ingest-commit")
        self.durable = DurabilityPoint(
            [
                Stage("storage", self.storage, lambda: self.storage.put_count),
                Stage("dead letters and parked", self.side_commit, self._side_changes),
            ]
        )
        if engine is not None:
            self.durable.add(Stage("alarm engine", engine, self._urgent_count))
        self.durable.on_barrier(self._checkpoint)
        self._want_checkpoint = False
        self._durable_states: deque[dict[str, dict[str, object]]] = deque()
        self._persist_lock = threading.Lock()  # the replay-check state is written by one thread at a time
        # A cluster replica (cloud/cluster/replica.py) writes the replay-check state only of the gateways
        # it owns: a snapshot taken before a hand-over must not overwrite what the next owner saved.
        self.owns: Callable[[str, str], bool] = lambda site, gateway: True
        # Remote configuration on a NATS cluster (cloud/remote_config/service.py): a gateway's
        # `config-result` / `config-running` arrive on its partition's safety lane and go to `config_sink`
        # instead of the pipeline (it raises when it could not record one: not acknowledged, delivered
        # again); births go to the pipeline and, once recorded, to `on_birth`. None elsewhere (then those
        # answers are dropped: remote configuration is off).
        self.config_sink: Callable[[str, bytes], None] | None = None
        self.on_birth: Callable[[str, str, wire.Status], None] | None = None
        self._unparked: list[int] = []  # parked rows handled; deleted once their results are durable
        # How often `config_sink` may fail on one answer before it is set aside (`_set_aside`).
        self.max_deliveries = poison.MAX_DELIVERIES
        cid = config.client_id or f"sw-ingest-{socket.gethostname()[:20]}-{os.getpid()}"
        client_cls: Any = IngestClient
        if config.mqtt_client == "gmqtt":
            from cloud.ingest.mqtt_gmqtt import GmqttIngestClient

            client_cls = GmqttIngestClient
        # Messages of a gateway not enrolled yet, held until its birth (safety lane) enrols it; on
        # disk too (parked.db), so a crash loses none. Those of a previous run come back first.
        self._parked: dict[tuple[str, str], list[tuple[str, bytes, float, int]]] = {}
        self._parked_n = 0
        self._parked_since = 0.0
        for i, topic, payload, received in self.parked_store.load():
            parts = topic.split("/", 4)
            self._parked.setdefault((parts[2], parts[3]), []).append((topic, payload, received, i))
            self._parked_since = min(self._parked_since or received, received)
            self._parked_n += 1
        self._enrol_dir: Any = None
        self._enrol_sites: frozenset[str] = frozenset()
        lanes = config.safety_lane
        if is_nats_url(config.broker):  # a NATS cluster: partitioned durable consumers, both lanes always
            self.client: Any = JetStreamIngestClient(
                config.broker,
                self._handle_main,
                cid,
                safety_handler=self._handle_safety,
                partitions=config.partitions,
                owned=config.partitions_owned,
                account=config.account or None,
                durable=self.durable,
            )
            self.client.on_failure = self._set_aside
        else:
            self.client = client_cls(
                config.broker,
                self._handle_main if lanes else self.pipeline.handle,
                cid,
                config.mqtt_version,
                config.shared_group,
                config.site,
                lanes=lanes,
                safety_handler=self._handle_safety if lanes else None,
                account=config.account or None,
                durable=self.durable,
                receive_maximum=config.receive_maximum,
            )
        self._stop = threading.Event()
        self._house: threading.Thread | None = None
        self._metrics_server: Any = None
        self.beacon: Any = None
        self._cid = cid
        self.started = 0.0

    # ------------------------------------------------------------------ the two lanes
    # Auto-enrolment needs a gateway's birth (safety lane) before its telemetry (main lane); the
    # lanes do not keep that order. On a site with `auto_enrol`, main-lane messages of a gateway not
    # enrolled yet are parked (bounded) and handled once a birth enrols it, or after PARK_S (then
    # dead-lettered as before). Sites without auto-enrolment cost one attribute check per message.
    # The client calls both handlers from one thread at a time (gmqtt: one loop; paho: a lock).
    PARK_S = 5.0
    PARK_MAX = 20_000

    def _enrolling_sites(self) -> frozenset[str]:
        d = self.pipeline.directory
        if d is not self._enrol_dir:
            self._enrol_dir = d
            self._enrol_sites = frozenset(site for site, auto in d.sites.items() if auto)
        return self._enrol_sites

    def _handle_main(self, topic: str, payload: bytes, received: float) -> None:
        sites = self._enrolling_sites()
        if sites:
            parts = topic.split("/", 4)
            if (
                len(parts) == 5
                and parts[2] in sites
                and (parts[2], parts[3]) not in self.pipeline.directory.gateways
                and self._parked_n < self.PARK_MAX
            ):
                if not self._parked_n:
                    self._parked_since = received
                row = self.parked_store.add(topic, payload, received)
                self._parked.setdefault((parts[2], parts[3]), []).append((topic, payload, received, row))
                self._parked_n += 1
                return
        self.pipeline.handle(topic, payload, received)
        if self._parked_n and received - self._parked_since > self.PARK_S:
            self._unpark(expired=True)

    def _handle_safety(self, topic: str, payload: bytes, received: float) -> None:
        if topic.endswith(CONFIG_UPLINK):  # never telemetry: remote configuration's, or nobody's (disabled)
            if self.config_sink is not None:
                self.config_sink(topic, payload)
            return
        self.pipeline.handle(topic, payload, received)
        if self._parked_n:
            self._unpark(expired=received - self._parked_since > self.PARK_S)

    def _set_aside(self, topic: str, payload: bytes, delivered: int | None, error: Exception) -> bool:
        """The NATS ingester's question when a handler raised (cloud/ingest/poison.py): a remote-config
        answer that failed on each of its `max_deliveries` deliveries is kept as a dead letter, counted and
        logged, then acknowledged (the dead letter is committed before: the durability point). Anything
        else, and an answer with tries left, is delivered again."""
        if not poison.gives_up(topic, delivered, self.max_deliveries):
            return False
        self._keep_failed(topic, payload, f"{type(error).__name__}: {error} (failed at each of {delivered} deliveries)",
                          error)
        return True

    def set_aside(self, topic: str, payload: bytes, detail: str, error: Exception) -> None:
        """One broker: remote configuration gave up an answer it could not record
        (cloud/remote_config/inbox.py). Kept as dead letter `handler_failed` and on disk when this
        returns (it acknowledges the message next); raises if it could not be written (then it is not
        acknowledged either)."""
        self._keep_failed(topic, payload, detail, error)
        self.dead.flush()

    def _keep_failed(self, topic: str, payload: bytes, detail: str, error: Exception) -> None:
        log.error("%s: set aside as dead letter %r, not delivered again: %s", topic, poison.HANDLER_FAILED,
                  detail, exc_info=error)
        self.dead.add(topic, poison.HANDLER_FAILED, detail, payload)
        self.pipeline.stats.dead[poison.HANDLER_FAILED] += 1

    def _unpark(self, expired: bool) -> None:
        """Handle parked messages of gateways now enrolled (all of them if they waited too long)."""
        gws = self.pipeline.directory.gateways
        for key in [k for k in self._parked if expired or k in gws]:
            msgs = self._parked.pop(key)
            self._parked_n -= len(msgs)
            for topic, payload, received, row in msgs:
                self.pipeline.handle(topic, payload, received)
                self._unparked.append(row)
        if self._parked_n:
            self._parked_since = min(m[2] for msgs in self._parked.values() for m in msgs)

    # ------------------------------------------------------------------ durability
    def _commit_side(self) -> None:
        """The group commit the acknowledgements wait for besides storage and the engine."""
        self.dead.flush()
        self.parked_store.commit()

    def _side_changes(self) -> int:
        return self.dead.added + self.parked_store.changes

    def _urgent_count(self) -> int:
        k = self.pipeline.stats.by_kind
        return k[wire.Kind.STATUS] + k[wire.Kind.EVENT] + k[wire.Kind.URGENT] + k[wire.Kind.HEALTH]

    def _checkpoint(self) -> Callback | None:
        """Runs inside `durable.after`, on the pipeline's thread. About once per housekeeping
        interval it takes the replay check's changes, to be saved once everything handled so far is
        durable: saved earlier, a restarted ingester would drop as a replay the redelivery of a
        message whose points died with the process. Parked rows handled so far are deleted then too."""
        rows, self._unparked = self._unparked, []
        forget = partial(self.parked_store.forget, rows) if rows else None
        if not self._want_checkpoint:
            return forget
        self._want_checkpoint = False
        states = self.pipeline.dedupe.take_dirty()

        def durable() -> None:
            if forget is not None:
                forget()
            if states:
                self._durable_states.append(states)

        return durable

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
        if self.on_birth is not None and status.state == "online":
            self.on_birth(site, gateway, status)
        return changed

    # ------------------------------------------------------------------ lifecycle
    def start(self, wait: float = 15.0) -> IngestService:
        self.started = time.time()
        if self.config.tune_gc:
            import gc

            gc.freeze()  # what exists at start (profiles, registry) is never garbage
            gc.set_threshold(50_000, 20, 20)
        self.storage.start()
        self.side_commit.start()
        self._house = threading.Thread(target=self._housekeeping, name="ingest-housekeeping", daemon=True)
        self._house.start()
        if self.config.metrics_port is not None:
            from cloud.metrics import make_registry, serve

            self._metrics_server = serve(
                make_registry(self.stats), self.config.metrics_port, self.config.metrics_addr
            )
        self.client.start()
        if self.config.time_beacon_s:
            from cloud.timebeacon import TimeBeacon

            self.beacon = TimeBeacon(
                self.config.broker, f"{self._cid}-time", self.config.time_beacon_s, self.config.account or None,
                send=self.client.publish_plain if is_nats_url(self.config.broker) else None,
            ).start()
        if wait and not self.client.wait_connected(wait):
            log.warning("not connected to %s after %.0fs; still trying", redact(self.config.broker), wait)
        return self

    def stop(self) -> None:
        """Disconnect, then write what is in memory to the store or the spool (parked messages stay
        on disk for the next start) and save the replay check's state."""
        if self.beacon is not None:
            self.beacon.stop()
        self.client.stop()
        self._stop.set()
        if self._house:
            self._house.join(10)
        # Nothing is handled any more: one last point for the replay check's state. Storage makes
        # everything durable within `stop_wait` (the store, else the spool); the point also waits
        # for the alarm engine when there is one and it still holds status, events or health.
        self._want_checkpoint = True
        durable = threading.Event()
        self.durable.after(durable.set)
        self.storage.stop(self.config.stop_wait)
        self.side_commit.stop()
        if not durable.wait(1.0):
            log.warning("stopping with messages not yet durable: the broker delivers them again at the next start")
        self._persist()
        self.parked_store.close()
        self.dead.close()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
        self.registry.close()

    def adopt(self, mine: Callable[[str, str], bool]) -> None:
        """Take gateways over from another replica (cloud/cluster): their devices' replay-check state as
        the shared registry holds it, before their partitions are read."""
        devices = self.pipeline.directory.devices
        for (site, dev), st in self.registry.load_seq_states().items():
            entry = devices.get((site, dev))
            if entry is not None and mine(site, entry.gateway):
                self.pipeline.dedupe.load(f"{site}/{dev}", st)

    def hand_over(self, mine: Callable[[str, str], bool]) -> None:
        """Hand gateways to another replica (cloud/cluster): save their devices' replay-check state now,
        before the lease is freed. Call it only once every message of theirs that this replica handled
        is acknowledged, hence durable, and once `owns` says no for them. The next owner loads it
        before reading (`adopt`), so what comes again from the stream (everything above the consumer's
        ack floor) is dropped as a replay; saved only by the regular checkpoint, up to its last second
        or two came back as news, and the alarm engine judged those old readings again."""
        devices = self.pipeline.directory.devices
        keys = [f"{site}/{dev}" for (site, dev), e in devices.items() if mine(site, e.gateway)]
        with self._persist_lock:
            states = self.pipeline.dedupe.states(keys)
            if states:
                self.registry.save_seq_states({tuple(k.split("/", 1)): v for k, v in states.items()})  # type: ignore[misc]

    def refresh_directory(self) -> None:
        self.pipeline.set_directory(self.registry.directory())

    def _persist(self) -> None:
        """Save the replay check's state that is durable and the last values; ask the pipeline's
        thread for the next checkpoint."""
        self.dead.flush()
        with self._persist_lock:
            while self._durable_states:
                states = self._durable_states.popleft()
                devices = self.pipeline.directory.devices
                keep = {}
                for k, v in states.items():
                    site, dev = k.split("/", 1)
                    entry = devices.get((site, dev))
                    if entry is None or self.owns(site, entry.gateway):
                        keep[(site, dev)] = v
                self.registry.save_seq_states(keep)
        self._want_checkpoint = True
        self.registry.save_last_values(self.pipeline.take_last_values())
        self.registry.save_gateway_clocks(self.pipeline.take_clocks())

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

    def storage_status(self) -> dict[str, Any]:
        """Is storage keeping up (health page, /metrics)? Points not yet in the store, how long the
        oldest has waited, batches on disk, and acknowledgements held back for it."""
        return {
            "points_waiting": self.storage.pending,
            "behind_s": self.storage.behind(),
            "spooled_batches": len(self.storage.spool),
            "acks_waiting": self.durable.pending(),
            "ack_wait_s": self.durable.oldest_wait(),
        }

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
            "batches": s.batches,
            "durable_points": self.durable.fired,  # `after` calls whose callbacks fired (acknowledgement bursts)
            "retries": s.retries,
            "rejected": s.rejected,
            "spooled": s.spooled,
            "pending": self.storage.pending,
            "spool_batches": len(self.storage.spool),
            "store_lag": s.last_write_lag,
            "store_behind": self.storage.behind(),
            "acks_waiting": self.durable.pending(),
            "ack_wait": self.durable.oldest_wait(),
            "edge_lag": p.last_edge_lag,
            "last_store_error": s.last_error,
            "safety_queue": q() if callable(q) else 0,
            "missing_seqs": self.pipeline.dedupe.missing(),
            "seq_gaps": self.pipeline.dedupe.gap_count(),
            "seq_lost": self.pipeline.dedupe.lost(),
            "rebased": p.rebased,
            "points_refused": dict(p.points_refused),
            "connected": self.client.connected.is_set(),
            "connected_lanes": self.client.connected_lanes(),
            "lane_received": self.client.received_by_lane(),
            "parked": self._parked_n,
            "mqtt_protocol": self.client.protocol,
        }
