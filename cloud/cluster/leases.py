"""Partition leases in the shared database: each partition is owned by one live replica at a time.

Why leases in PostgreSQL rather than NATS's pinned consumers: a replica must *know* which gateways
it owns even while they are silent (judging silence is the point of the offline alarms), and it must
resume their rule state from the shared store before it reads their first message. With a lease
table both are explicit: `held()` is the answer, and the hand-over runs `prepare(partitions)` before
the consumers start. PostgreSQL already holds the alarm state every replica shares.

Tables (created if missing): `cluster_replicas` (one row per replica: alive until) and
`partition_leases` (one row per partition: owner, expires, epoch). Times are the database's own
clock (`now()` of PostgreSQL, SQLite's julianday), so replicas on machines with skewed clocks agree.

Every `renew_s` a replica: refreshes its heartbeat and its leases (`UPDATE … WHERE owner = me`),
learns which it lost (a lease that lapsed was taken by another), computes its fair share of the
partitions among the live replicas (cloud/cluster/assign.py), claims free or expired partitions up
to it (`UPDATE … WHERE owner IS NULL OR expires < now`: one winner), and hands back extra ones one
at a time when another replica is short (after its consumers stopped and acknowledged what they
handled: `drained`).

Fencing: a lease is trusted locally only until `renew started + ttl − margin` on the monotonic clock
(`valid()`); a replica that was paused (SIGSTOP, a VM freeze) or cut off from the database stops
handling its partitions by itself before any other replica can take them, so two replicas never
handle one partition's messages at the same time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import Column, Float, Integer, MetaData, String, Table, create_engine, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from cloud.cluster import assign

log = logging.getLogger(__name__)

metadata = MetaData()
replicas_t = Table(
    "cluster_replicas",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("alive_until", Float, nullable=False),
    Column("started", Float, nullable=False),
    Column("url", String(256), nullable=False, default=""),
)
leases_t = Table(
    "partition_leases",
    metadata,
    Column("partition", Integer, primary_key=True),
    Column("owner", String(128)),
    Column("expires", Float, nullable=False, default=0.0),
    Column("epoch", Integer, nullable=False, default=0),
)


class LeaseManager:
    """Holds this replica's partitions. Callbacks run on the lease thread, in this order:
    `prepare(new)` before new partitions are consumed (load their state), `apply(held)` whenever
    the set changes (start / stop consumers), `drained(parts)` → True once released partitions'
    messages are all acknowledged, then `handed(parts)` (only when drained: save what the next owner
    needs) just before their leases are freed."""

    def __init__(
        self,
        db_url: str,
        replica_id: str,
        partitions: int,
        apply: Callable[[frozenset[int]], None],
        prepare: Callable[[frozenset[int]], None] | None = None,
        drained: Callable[[frozenset[int]], bool] | None = None,
        handed: Callable[[frozenset[int]], None] | None = None,
        ttl_s: float = 6.0,
        renew_s: float = 1.0,
        margin_s: float = 1.0,
        url: str = "",
    ) -> None:
        kw: dict[str, Any] = {}
        if db_url.startswith("sqlite"):
            kw["connect_args"] = {"check_same_thread": False, "timeout": 30}
        else:
            kw["pool_pre_ping"] = True
        self.engine = create_engine(db_url, **kw)
        metadata.create_all(self.engine)
        self.pg = self.engine.dialect.name == "postgresql"
        self.me = replica_id
        self.partitions = partitions
        self._apply, self._prepare, self._drained, self._handed = apply, prepare, drained, handed
        self.ttl_s, self.renew_s, self.margin_s = ttl_s, renew_s, margin_s
        self.url = url
        self._held: frozenset[int] = frozenset()
        self._valid_until = 0.0  # monotonic
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.started_at = 0.0
        self.acquired: list[tuple[float, int]] = []  # (wall time, partition) of every claim: takeover figures
        self.errors = 0
        self.last_error = ""
        self._ensure_rows()

    # ------------------------------------------------------------------ what callers read
    def held(self) -> frozenset[int]:
        """Partitions this replica may handle now (empty once the local lease time ran out)."""
        return self._held if time.monotonic() < self._valid_until else frozenset()

    def valid(self) -> bool:
        return time.monotonic() < self._valid_until

    def owns(self, part: int) -> bool:
        return part in self._held and time.monotonic() < self._valid_until

    def owners(self) -> dict[int, str | None]:
        """partition → owner whose lease has not expired (for /metrics, tests and the bench)."""
        with self.engine.begin() as c:
            now = self._now(c)
            return {r.partition: (r.owner if r.expires > now else None) for r in c.execute(select(leases_t))}

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> LeaseManager:
        self.started_at = time.time()
        self.step()  # the first claim before anything is consumed
        self._thread = threading.Thread(target=self._run, name="partition-leases", daemon=True)
        self._thread.start()
        return self

    def stop(self, release: bool = True) -> None:
        """Stop renewing; hand every partition back at once (a clean stop: survivors need not wait
        for the leases to expire)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        held, self._held = self._held, frozenset()
        self._apply(frozenset())
        if release and held:
            self._hand_over(held, wait_s=2.0)
            try:
                with self.engine.begin() as c:
                    c.execute(update(leases_t).where(leases_t.c.owner == self.me)
                              .values(owner=None, expires=0.0))
                    c.execute(replicas_t.delete().where(replicas_t.c.id == self.me))
            except Exception:
                log.exception("could not hand the partitions back; they expire in %.0f s", self.ttl_s)
        self.engine.dispose()

    def _run(self) -> None:
        while not self._stop.wait(self.renew_s):
            self.step()

    # ------------------------------------------------------------------ one round
    def step(self) -> None:
        t0 = time.monotonic()
        try:
            self._step(t0)
        except Exception as e:
            self.errors += 1
            self.last_error = str(e)
            log.warning("partition leases: %s", e)
            if time.monotonic() >= self._valid_until and self._held:
                log.error("partition leases lapsed (database unreachable): handing %d partitions back",
                          len(self._held))
                self._set(frozenset())

    def _step(self, t0: float) -> None:
        with self.engine.begin() as c:
            now, mine = self._renew_in(c)
            live = [r.id for r in c.execute(select(replicas_t.c.id).where(replicas_t.c.alive_until > now))]
            rows = list(c.execute(select(leases_t)))
        self._valid_until = t0 + self.ttl_s - self.margin_s
        lost = self._held - mine
        if lost:
            log.warning("partitions %s were taken over by another replica", sorted(lost))
            self._set(self._held & mine)
        orphans = mine - self._held  # leased to us, not being read (a `prepare` that failed): finish it
        if orphans:
            if self._prepare is not None:
                self._prepare(frozenset(orphans))
            self._set(self._held | frozenset(orphans))
        want = assign.share(self.partitions, live, self.me)
        counts: dict[str, int] = {}
        free = []
        for r in rows:
            if r.owner is None or r.expires <= now:
                free.append(r.partition)
            else:
                counts[r.owner] = counts.get(r.owner, 0) + 1
        claim = assign.to_claim(set(self._held), free, want, self.me, self.partitions)
        if claim:
            got = self._claim(claim)
            if got:
                if self._prepare is not None:
                    self._prepare(frozenset(got))
                self._set(self._held | frozenset(got))
            return
        starving = any(counts.get(r, 0) < assign.share(self.partitions, live, r) for r in live if r != self.me)
        give = assign.to_release(set(self._held), want, self.me, self.partitions, starving)[:1]
        if give:
            self._release(frozenset(give))

    def _renew_in(self, c: Any) -> tuple[float, set[int]]:
        """In transaction `c`: our heartbeat and every lease still ours extended by a lease time.
        → (the database's now, the partitions still ours)"""
        now = self._now(c)
        until = now + self.ttl_s
        self._upsert_me(c, now, until)
        mine = {r.partition for r in c.execute(
            update(leases_t).where(leases_t.c.owner == self.me, leases_t.c.expires > now)
            .values(expires=until).returning(leases_t.c.partition))}
        return now, mine

    def _renew(self) -> None:
        """Heartbeat and leases only (no claims, no hand-backs): for the lease thread's long waits.
        The local fence moves only if every partition held is still ours."""
        t0 = time.monotonic()
        with self.engine.begin() as c:
            _now, mine = self._renew_in(c)
        if self._held <= mine:
            self._valid_until = t0 + self.ttl_s - self.margin_s

    def _claim(self, parts: Iterable[int]) -> list[int]:
        got = []
        with self.engine.begin() as c:
            now = self._now(c)
            for p in parts:
                n = c.execute(
                    update(leases_t)
                    .where(leases_t.c.partition == p,
                           (leases_t.c.owner.is_(None)) | (leases_t.c.expires <= now) | (leases_t.c.owner == self.me))
                    .values(owner=self.me, expires=now + self.ttl_s, epoch=leases_t.c.epoch + 1)
                ).rowcount
                if n:
                    got.append(p)
        wall = time.time()
        self.acquired.extend((wall, p) for p in got)
        if got:
            log.info("replica %s took partitions %s", self.me, got)
        return got

    def _release(self, parts: frozenset[int]) -> None:
        """Stop consuming, wait until what was handled is acknowledged, then free the leases."""
        self._set(self._held - parts)
        self._hand_over(parts, wait_s=min(5.0, self.ttl_s), renew=True)
        with self.engine.begin() as c:
            c.execute(update(leases_t).where(leases_t.c.owner == self.me, leases_t.c.partition.in_(parts))
                      .values(owner=None, expires=0.0))
        log.info("replica %s handed partitions %s back", self.me, sorted(parts))

    def _hand_over(self, parts: frozenset[int], wait_s: float, renew: bool = False) -> None:
        """Wait (up to `wait_s`) until what was handled on `parts` is acknowledged; then `handed`.
        Not drained in time: the next owner gets those messages again after the consumers' ack wait.

        `renew`: keep the other partitions' leases (and `valid()`) fresh meanwhile. The wait can be
        as long as a lease; without renewing, every partition this replica kept lapsed locally near its
        end (nothing handled for a moment) and could be taken by another replica."""
        deadline = time.monotonic() + wait_s
        renewed = time.monotonic()
        while self._drained is not None and not self._drained(parts):
            now = time.monotonic()
            if now >= deadline:
                log.warning("partitions %s handed back with acknowledgements still outstanding", sorted(parts))
                return
            if renew and now - renewed >= self.renew_s:
                renewed = now
                try:
                    self._renew()
                except Exception as e:  # the next step finds out what this means
                    self.errors += 1
                    self.last_error = str(e)
            time.sleep(0.02)
        if self._handed is not None:
            try:
                self._handed(parts)
            except Exception:
                log.exception("handing partitions %s over", sorted(parts))

    def _set(self, held: frozenset[int]) -> None:
        if held != self._held:
            self._held = held
            self._apply(held)

    # ------------------------------------------------------------------ database details
    def _now(self, c: Any) -> float:
        if self.pg:
            return float(c.execute(select(func.extract("epoch", func.clock_timestamp()))).scalar_one())
        return float(c.execute(text("SELECT (julianday('now') - 2440587.5) * 86400.0")).scalar_one())

    def _insert(self) -> Any:
        return pg_insert if self.pg else sqlite_insert

    def _upsert_me(self, c: Any, now: float, until: float) -> None:
        ins = self._insert()(replicas_t).values(id=self.me, alive_until=until, started=now, url=self.url)
        c.execute(ins.on_conflict_do_update(index_elements=["id"], set_={"alive_until": until, "url": self.url}))

    def _ensure_rows(self) -> None:
        with self.engine.begin() as c:
            ins = self._insert()(leases_t)
            c.execute(ins.on_conflict_do_nothing(index_elements=["partition"]),
                      [{"partition": p, "owner": None, "expires": 0.0, "epoch": 0} for p in range(self.partitions)])
