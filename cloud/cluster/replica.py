"""One `cloud serve` replica of a cluster: its partition leases wired to its ingester, alarm engine
and history.

What happens when partitions move (cloud/cluster/leases.py runs it, on its thread):
- taking partitions over (`prepare`, before a message of theirs is read): the ingester loads their
  devices' replay-check state, the engine their active alarms, escalation schedule, pending durations,
  last-seen times and comm-error windows (and re-sends the pushes the previous owner never finished),
  history their gateways' online state and active alarms —
  all from the shared database, as the previous owner left them (history's thread resumes their open
  parking stays and charge sessions before it handles any of their messages);
- then (`apply`) the ingester's consumers follow the held set (cloud/ingest/jetstream.py: what the
  previous owner had received but not acknowledged is delivered again once the consumers' ack wait,
  no longer than a lease, is over: by the takeover it is), safety lanes first;
- once the safety lanes have handled what was waiting (`before_bulk`, on a worker thread): the engine
  evaluates it (bounded, 1 s) and loads the rate-of-rise windows; then the partitions' telemetry is
  read. Split so because on a loaded survivor the state load took 0.3-1.2 s (bench/cluster.py at
  ~1,300 msg/s) and an event of the outage waited for all of it;
- handing partitions back: the consumers stop, the last acknowledgements and the pushes being sent
  go out (`drained`), the ingester saves their devices' replay-check state (`handed`), then the lease is freed.

The engine, history and ingester ask `owns(site, gateway)`: the gateway's partition is held and the
lease is still locally valid.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from cloud.cluster.leases import LeaseManager
from cloud.cluster.partition import partition_of

log = logging.getLogger(__name__)


class ClusterMember:
    def __init__(
        self,
        db_url: str,
        replica_id: str,
        partitions: int,
        ingest: Any,  # cloud.ingest.service.IngestService with a JetStream client
        engine: Any = None,  # cloud.alarms.engine.AlarmEngine
        history: Any = None,  # cloud.history.service.HistoryService
        ttl_s: float = 6.0,
        renew_s: float = 1.0,
        refresh_s: float = 5.0,
        url: str = "",
    ) -> None:
        self.partitions = partitions
        self.ingest, self.engine, self.history = ingest, engine, history
        self.refresh_s = refresh_s
        self._part: dict[tuple[str, str], int] = {}
        self.leases = LeaseManager(db_url, replica_id, partitions, apply=self._apply, prepare=self._prepare,
                                   drained=self._drained, handed=self._handed, ttl_s=ttl_s,
                                   renew_s=renew_s, url=url)
        ingest.client.valid = self.leases.valid
        ingest.client.before_bulk = self._before_bulk
        ingest.owns = self.owns
        if engine is not None:
            engine.owns = self.owns
        if history is not None:
            history.owns = self.owns
        self._stop = threading.Event()
        self._refresher: threading.Thread | None = None
        self.takeovers: list[tuple[float, frozenset[int], float]] = []  # (wall time, partitions, seconds to prepare)

    def partition(self, site: str, gateway: str) -> int:
        key = (site, gateway)
        p = self._part.get(key)
        if p is None:
            p = partition_of(site, gateway, self.partitions)
            if len(self._part) < 1_000_000:
                self._part[key] = p
        return p

    def owns(self, site: str, gateway: str) -> bool:
        return self.leases.owns(self.partition(site, gateway))

    def _mine(self, parts: frozenset[int]) -> Callable[[str, str], bool]:
        return lambda site, gateway: self.partition(site, gateway) in parts

    # ------------------------------------------------------------------ lease callbacks
    def _prepare(self, parts: frozenset[int]) -> None:
        t0 = time.monotonic()
        mine = self._mine(parts)
        self.ingest.adopt(mine)
        t1 = time.monotonic()
        if self.engine is not None:
            self.engine.adopt(mine, rate_windows=False)  # those in `_before_bulk`
        t2 = time.monotonic()
        if self.history is not None:
            gws = [(g.site_id, g.id, bool(g.online)) for g in self.ingest.registry.gateways() if g.online is not None]
            alarms = list(self.engine.active.values()) if self.engine is not None else []
            self.history.adopt(mine, gws, alarms, defer_resume=True)  # stays and sessions: its thread's
        dt = time.monotonic() - t0
        self.takeovers.append((time.time(), parts, dt))
        steps = " ".join(f"{k} {v:.2f}" for k, v in getattr(self.engine, "adopt_times", {}).items())
        log.info("partitions %s: state of their gateways loaded in %.2f s (replay check %.2f, alarms %.2f [%s], "
                 "history %.2f)", sorted(parts), dt, t1 - t0, t2 - t1, steps, dt - (t2 - t0))

    ENGINE_HEAD_START_S = 1.0  # `_before_bulk`'s bound on waiting for the engine

    def _before_bulk(self, parts: frozenset[int]) -> None:
        """New partitions' safety lanes have handed what was waiting to the engine; their telemetry
        comes next. First the engine evaluates what it was handed (bounded): a telemetry backlog read
        meanwhile would share the cores with it, and the outage's events are the alarms of the
        takeover. Then the state only telemetry needs."""
        if self.engine is None:
            return
        t0 = time.monotonic()
        seen = threading.Event()
        self.engine.after(seen.set)
        seen.wait(self.ENGINE_HEAD_START_S)
        t1 = time.monotonic()
        self.engine.adopt_rate_windows(self._mine(parts))
        log.info("partitions %s: engine caught up in %.2f s; rate-of-rise windows loaded in %.2f s", sorted(parts),
                 t1 - t0, time.monotonic() - t1)

    def _drained(self, parts: frozenset[int]) -> bool:
        """Handed back only once their messages are acknowledged and their pushes in flight here went
        out: the next owner re-sends pushes still pending (cloud/notify/outbox.py)."""
        return bool(self.ingest.client.drained(parts)) and (
            self.engine is None or self.engine.pushes_settled(self._mine(parts)))

    def _handed(self, parts: frozenset[int]) -> None:
        mine = self._mine(parts)
        self.ingest.hand_over(mine)
        if self.engine is not None:
            self.engine.hand_over(mine)  # timers, last-seen times, rule windows not flushed yet
        if self.history is not None:
            self.history.hand_over(mine)  # open stays and charge sessions

    def _apply(self, held: frozenset[int]) -> None:
        self.ingest.client.set_partitions(held)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> ClusterMember:
        self.leases.start()
        if self.engine is not None:
            self._refresher = threading.Thread(target=self._refresh, name="cluster-refresh", daemon=True)
            self._refresher.start()
        return self

    def _refresh(self) -> None:
        """The engine re-reads its gateways' active alarms now and then: people resolve alarms on
        whichever replica served their page."""
        while not self._stop.wait(self.refresh_s):
            try:
                self.engine.refresh()
            except Exception:
                log.exception("cluster: refreshing active alarms failed")

    def stop(self) -> None:
        self._stop.set()
        self.leases.stop()
        if self._refresher is not None:
            self._refresher.join(5)

    def stats(self) -> dict[str, Any]:
        return {"replica": self.leases.me, "held": sorted(self.leases.held()), "lease_errors": self.leases.errors,
                "takeovers": len(self.takeovers)}
