"""Alarm state in SQL (SQLAlchemy Core): SQLite now, PostgreSQL when ingest scales out.

Why the shapes below:
- `alarms.active_key` is set while an alarm is active and NULL once cleared/resolved; a UNIQUE
  index on it makes "exactly one active alarm per (site, gateway, device, rule, instance)" a
  database fact, true under concurrent writers and replicas (NULLs never collide, in SQLite and
  PostgreSQL alike).
- Timers are absolute epoch seconds (`tracks.pending_since`, `alarms.next_notify_at`), so a
  restart resumes a half-elapsed retard delay or escalation instead of starting it again.
- `alarm_seen` keeps the last message time per gateway and device (written every few seconds),
  so a gateway that died while the cloud was down is still reported offline after a restart.
- Upserts go through `_upsert` (SQLite and PostgreSQL both have INSERT … ON CONFLICT), so two
  replicas writing the same timer or last-seen row never trip over a primary key.
- `audit` and `notify_log` are append-only: who did what, when, through which channel; every
  notification attempt with its outcome. The one exception is a push's *intent* (its outbox row,
  `attempt` 0): written with the escalation step, before the send is tried, and settled once (`state`
  pending → sent / failed / dropped), so whoever owns the alarm's gateway next (a survivor replica, a
  restarted process) re-sends what a dead process intended and never finished (cloud/notify/outbox.py).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

metadata = MetaData()

alarms = Table(
    "alarms",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("site", String(64), nullable=False, index=True),
    Column("gateway", String(64), nullable=False),
    Column("device", String(64), nullable=False),
    Column("rule", String(48), nullable=False),
    Column("instance", String(16), nullable=False, default=""),
    Column("kind", String(16), nullable=False),
    Column("severity", String(10), nullable=False),
    Column("name", Text, nullable=False, default=""),
    Column("name_zh", Text, nullable=False, default=""),
    Column("sprinkler", Boolean, nullable=False, default=False),
    Column("active", Boolean, nullable=False, default=True),
    Column("acked", Boolean, nullable=False, default=False),
    Column("acked_by", String(64)),
    Column("acked_at", Float),
    Column("acked_via", String(32)),
    Column("raised_at", Float, nullable=False),
    Column("cleared_at", Float),
    Column("resolved_by", String(64)),
    Column("value", Text),
    Column("detail", Text, nullable=False, default="{}"),
    Column("labels", Text, nullable=False, default="{}"),
    Column("suppressed", Text),  # why nobody was woken (inspection window), still recorded
    Column("silenced_until", Float),
    Column("silence_reason", Text),
    Column("tier", Integer, nullable=False, default=0),  # highest tier notified so far
    Column("next_notify_at", Float),
    Column("notified", Text, nullable=False, default="[]"),  # person ids notified (for resolution)
    Column("occurrences", Integer, nullable=False, default=1),
    Column("active_key", String(300), unique=True),
    # The ordering mark of the reading behind the row's last transition (its raise, then its clear),
    # JSON {"pid", "seq", "ts", "epoch"}: written in the transaction that raises or clears, so a
    # survivor (or a restart) knows which readings were judged already (`transition_marks`).
    Column("mark", Text),
)

audit = Table(
    "alarm_audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("alarm_id", Integer, nullable=False, index=True),
    Column("ts", Float, nullable=False),
    Column("action", String(24), nullable=False),
    Column("who", String(64), nullable=False, default="system"),
    Column("channel", String(32), nullable=False, default="engine"),
    Column("detail", Text, nullable=False, default=""),
)

tracks = Table(
    "alarm_tracks",
    metadata,
    Column("key", String(300), primary_key=True),
    Column("pending_since", Float, nullable=False),
)

# Last message per gateway (device "") and per device, so silence is still judged from the real
# last message after an engine restart (the engine writes it throttled, from its timer tick).
seen = Table(
    "alarm_seen",
    metadata,
    Column("site", String(64), primary_key=True),
    Column("gateway", String(64), primary_key=True),
    Column("device", String(64), primary_key=True),
    Column("seen", Float, nullable=False),
)

notify_log = Table(
    "notify_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("alarm_id", Integer, nullable=False, index=True),
    Column("ts", Float, nullable=False),
    Column("person", String(64), nullable=False),
    Column("channel", Text, nullable=False),
    Column("purpose", String(16), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("ok", Boolean, nullable=False),
    Column("error", Text, nullable=False, default=""),
    # Intent rows only (attempt 0): pending / sent / failed / dropped, and which of the person's
    # channel chains (`route`, cloud/notify/outbox.py); NULL on attempt rows.
    Column("state", String(12)),
    Column("route", Integer),
)
# What a takeover reads (`pending_intents`): the few unsettled intents, not the whole log.
pending_index = Index("ix_notify_log_pending", notify_log.c.state, postgresql_where=text("state = 'pending'"),
                      sqlite_where=text("state = 'pending'"))

windows = Table(
    "inspection_windows",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("site", String(64), nullable=False),
    Column("start", Float, nullable=False),
    Column("end", Float, nullable=False),
    Column("reason", Text, nullable=False, default=""),
    Column("by", String(64), nullable=False, default=""),
)


@dataclass(frozen=True)
class Intent:
    """A push an escalation step intends: to `person`, through their channel chain `route`, for
    `purpose` (alarm / reminder); `channel` is the chain, redacted (what the log may show)."""

    person: str
    route: int
    channel: str
    purpose: str


def _add_intent_columns(engine: Any) -> None:
    """A notify_log created before intents existed gets their two columns, an alarms table created
    before transition marks its `mark` (create_all adds tables, never columns). Replicas starting
    together may race: PostgreSQL's IF NOT EXISTS settles it."""
    insp = inspect(engine)
    pg = engine.dialect.name == "postgresql"
    if insp.has_table("alarms") and "mark" not in {c["name"] for c in insp.get_columns("alarms")}:
        with engine.begin() as c:
            c.execute(text(f"ALTER TABLE alarms ADD COLUMN {'IF NOT EXISTS ' if pg else ''}mark TEXT"))
    if not insp.has_table("notify_log"):
        return
    have = {c["name"] for c in insp.get_columns("notify_log")}
    with engine.begin() as c:
        for name, sql_type in (("state", "VARCHAR(12)"), ("route", "INTEGER")):
            if name not in have:
                c.execute(text(f"ALTER TABLE notify_log ADD COLUMN {'IF NOT EXISTS ' if pg else ''}{name} {sql_type}"))
    try:
        pending_index.create(engine, checkfirst=True)  # create_all adds indexes only with their table
    except Exception:  # another replica created it meanwhile
        if not any(i["name"] == pending_index.name for i in inspect(engine).get_indexes("notify_log")):
            raise


def active_key(site: str, gateway: str, device: str, rule: str, instance: str) -> str:
    return f"{site}/{gateway}/{device}/{rule}/{instance}"


@dataclass
class Alarm:
    id: int
    site: str
    gateway: str
    device: str
    rule: str
    instance: str
    kind: str
    severity: str
    name: str
    name_zh: str
    sprinkler: bool
    active: bool
    acked: bool
    raised_at: float
    acked_by: str | None = None
    acked_at: float | None = None
    acked_via: str | None = None
    cleared_at: float | None = None
    resolved_by: str | None = None
    value: Any = None
    detail: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    suppressed: str | None = None
    silenced_until: float | None = None
    silence_reason: str | None = None
    tier: int = 0
    next_notify_at: float | None = None
    notified: list[str] = field(default_factory=list)
    occurrences: int = 1

    @property
    def key(self) -> str:
        return active_key(self.site, self.gateway, self.device, self.rule, self.instance)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @staticmethod
    def from_row(r: Any) -> Alarm:
        m = dict(r._mapping)
        m.pop("active_key", None)
        m.pop("mark", None)  # the engine's bookkeeping (`AlarmStore.transition_marks`), not the alarm's
        m["value"] = json.loads(m["value"]) if m["value"] else None
        m["detail"] = json.loads(m["detail"] or "{}")
        m["labels"] = json.loads(m["labels"] or "{}")
        m["notified"] = json.loads(m["notified"] or "[]")
        return Alarm(**m)


class AlarmStore:
    """Thread-safe (one lock around each transaction): the engine worker writes, the API acks."""

    def __init__(self, url: str) -> None:
        kw: dict[str, Any] = {}
        if url.startswith("sqlite"):
            kw["connect_args"] = {"check_same_thread": False, "timeout": 30}
        self.engine = create_engine(url, **kw)
        if url.startswith("sqlite"):

            @event.listens_for(self.engine, "connect")
            def _pragmas(dbapi_conn: Any, _rec: Any) -> None:
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.close()

        _add_intent_columns(self.engine)
        metadata.create_all(self.engine)
        self._lock = threading.RLock()

    @contextmanager
    def tx(self) -> Iterator[Connection]:
        with self._lock, self.engine.begin() as c:
            yield c

    def close(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------------ alarms
    def raise_alarm(self, a: Alarm, now: float, mark: str | None = None) -> tuple[Alarm, bool]:
        """Insert an active alarm; if one is already active for the key, return it (created False).
        `mark`: the reading that raised it (column `mark`), committed with the row."""
        row = {k: v for k, v in a.__dict__.items() if k != "id"}
        row["mark"] = mark
        row["value"] = json.dumps(a.value)
        row["detail"] = json.dumps(a.detail, default=str)
        row["labels"] = json.dumps(a.labels)
        row["notified"] = json.dumps(a.notified)
        row["active_key"] = a.key
        try:
            with self.tx() as c:
                new_id = c.execute(insert(alarms).values(**row)).inserted_primary_key[0]  # type: ignore[index]
                c.execute(
                    insert(audit).values(
                        alarm_id=new_id,
                        ts=now,
                        action="raised",
                        detail=json.dumps({"value": a.value}, default=str),
                    )
                )
                a.id = int(new_id)
                return a, True
        except IntegrityError:
            with self.tx() as c:
                r = c.execute(select(alarms).where(alarms.c.active_key == a.key)).first()
                c.execute(
                    update(alarms)
                    .where(alarms.c.active_key == a.key)
                    .values(occurrences=alarms.c.occurrences + 1)
                )
            if r is None:  # cleared between the two statements: try once more
                return self.raise_alarm(a, now)
            return Alarm.from_row(r), False

    def transition_marks(self, since: float) -> list[tuple[str, str, str, str]]:
        """(site, gateway, device, mark JSON) of the transitions of active alarms and of alarms cleared
        since `since`, oldest row first: what a survivor restores before reading (engine `adopt`)."""
        q = (select(alarms.c.site, alarms.c.gateway, alarms.c.device, alarms.c.mark)
             .where(alarms.c.mark.is_not(None), (alarms.c.active.is_(True)) | (alarms.c.cleared_at >= since))
             .order_by(alarms.c.id))
        with self.tx() as c:
            return [(r.site, r.gateway, r.device, r.mark) for r in c.execute(q)]

    def get(self, alarm_id: int) -> Alarm | None:
        with self.tx() as c:
            r = c.execute(select(alarms).where(alarms.c.id == alarm_id)).first()
        return Alarm.from_row(r) if r else None

    def list_alarms(
        self, site: str | None = None, active: bool | None = None, limit: int = 500
    ) -> list[Alarm]:
        q = select(alarms).order_by(alarms.c.id.desc()).limit(limit)
        if site:
            q = q.where(alarms.c.site == site)
        if active is not None:
            q = q.where(alarms.c.active == active)
        with self.tx() as c:
            return [Alarm.from_row(r) for r in c.execute(q)]

    def clear(
        self,
        alarm_id: int,
        now: float,
        who: str = "system",
        channel: str = "engine",
        action: str = "cleared",
        detail: str = "",
        mark: str | None = None,
    ) -> bool:
        """Cleared by the condition, or resolved by a person: no longer active either way. `mark`: the
        reading that cleared it (replaces the raise's in column `mark`), committed with the clear."""
        vals: dict[str, Any] = {
            "active": False,
            "active_key": None,
            "cleared_at": now,
            "next_notify_at": None,
        }
        if mark is not None:
            vals["mark"] = mark
        if action == "resolved":
            vals["resolved_by"] = who
        with self.tx() as c:
            n = c.execute(
                update(alarms).where(alarms.c.id == alarm_id, alarms.c.active.is_(True)).values(**vals)
            ).rowcount
            if n:
                c.execute(
                    insert(audit).values(
                        alarm_id=alarm_id, ts=now, action=action, who=who, channel=channel, detail=detail
                    )
                )
        return bool(n)

    def ack(self, alarm_id: int, who: str, via: str, now: float) -> bool:
        """First acknowledgement wins; later ones are audited but change nothing."""
        with self.tx() as c:
            n = c.execute(
                update(alarms)
                .where(alarms.c.id == alarm_id, alarms.c.acked.is_(False))
                .values(acked=True, acked_by=who, acked_at=now, acked_via=via, next_notify_at=None)
            ).rowcount
            c.execute(
                insert(audit).values(
                    alarm_id=alarm_id,
                    ts=now,
                    action="acknowledged" if n else "ack-repeat",
                    who=who,
                    channel=via,
                )
            )
        return bool(n)

    def silence(self, alarm_id: int, until: float, reason: str, who: str, via: str, now: float) -> bool:
        with self.tx() as c:
            n = c.execute(
                update(alarms)
                .where(alarms.c.id == alarm_id)
                .values(silenced_until=until, silence_reason=reason)
            ).rowcount
            if n:
                c.execute(
                    insert(audit).values(
                        alarm_id=alarm_id,
                        ts=now,
                        action="silenced",
                        who=who,
                        channel=via,
                        detail=json.dumps({"until": until, "reason": reason}),
                    )
                )
        return bool(n)

    def set_notify(
        self,
        alarm_id: int,
        tier: int,
        next_at: float | None,
        notified: list[str],
        intents: list[Intent] | None = None,
        now: float = 0.0,
    ) -> list[int]:
        """The escalation step taken, and the pushes it intends (outbox rows, `state` pending), in one
        transaction: either both survive a crash or neither (then the alarm looks never notified and
        its next owner notifies it). → the intents' row ids, in order."""
        with self.tx() as c:
            c.execute(
                update(alarms)
                .where(alarms.c.id == alarm_id)
                .values(tier=tier, next_notify_at=next_at, notified=json.dumps(notified))
            )
            return [
                int(c.execute(insert(notify_log).values(
                    alarm_id=alarm_id, ts=now, person=i.person, channel=i.channel[:2000], purpose=i.purpose,
                    attempt=0, ok=False, error="", state="pending", route=i.route,
                )).inserted_primary_key[0])  # type: ignore[index]
                for i in intents or []
            ]

    def update(self, alarm_id: int, **vals: Any) -> None:
        with self.tx() as c:
            c.execute(update(alarms).where(alarms.c.id == alarm_id).values(**vals))

    def add_audit(
        self,
        alarm_id: int,
        now: float,
        action: str,
        who: str = "system",
        channel: str = "engine",
        detail: str = "",
    ) -> None:
        with self.tx() as c:
            c.execute(
                insert(audit).values(
                    alarm_id=alarm_id, ts=now, action=action, who=who, channel=channel, detail=detail
                )
            )

    def audit_of(self, alarm_id: int) -> list[dict[str, Any]]:
        with self.tx() as c:
            return [
                dict(r._mapping)
                for r in c.execute(select(audit).where(audit.c.alarm_id == alarm_id).order_by(audit.c.id))
            ]

    # ------------------------------------------------------------------ tracks (persisted timers)
    def save_track(self, key: str, pending_since: float | None) -> None:
        with self.tx() as c:
            if pending_since is None:
                c.execute(delete(tracks).where(tracks.c.key == key))
            else:
                ins = self._insert(tracks).values(key=key, pending_since=pending_since)
                c.execute(ins.on_conflict_do_update(index_elements=["key"], set_={"pending_since": pending_since}))

    def save_tracks(self, rows: dict[str, float | None]) -> None:
        """Many timers in one transaction (the engine batches them: one commit per pending start
        or stop cost it ~40 % of its time under a fleet whose port states change often)."""
        if not rows:
            return
        gone = [k for k, v in rows.items() if v is None]
        up = [{"key": k, "pending_since": v} for k, v in sorted(rows.items()) if v is not None]
        with self.tx() as c:
            if gone:
                c.execute(delete(tracks).where(tracks.c.key.in_(gone)))
            if up:
                ins = self._insert(tracks)
                c.execute(ins.on_conflict_do_update(index_elements=["key"],
                                                    set_={"pending_since": ins.excluded.pending_since}), up)

    def load_tracks(self) -> dict[str, float]:
        with self.tx() as c:
            return {r.key: r.pending_since for r in c.execute(select(tracks))}

    # ------------------------------------------------------------------ last seen (offline timers)
    def save_seen(self, rows: dict[tuple[str, str, str], float]) -> None:
        """Upsert last-seen times; a row only moves forward, so a replica (or a late flush) holding
        an older time never makes a live gateway look silent."""
        if not rows:
            return
        values = [{"site": s, "gateway": g, "device": d, "seen": t} for (s, g, d), t in sorted(rows.items())]
        ins = self._insert(seen)
        newer = self._greatest(seen.c.seen, ins.excluded.seen)
        stmt = ins.on_conflict_do_update(index_elements=["site", "gateway", "device"], set_={"seen": newer})
        with self.tx() as c:
            for i in range(0, len(values), 500):
                c.execute(stmt, values[i : i + 500])

    def load_seen(self) -> dict[tuple[str, str, str], float]:
        """(site, gateway, device) → last message (device "" for the gateway itself)."""
        with self.tx() as c:
            return {(r.site, r.gateway, r.device): r.seen for r in c.execute(select(seen))}

    def _insert(self, table: Table) -> Any:
        """INSERT with ON CONFLICT support for this database (SQLite or PostgreSQL)."""
        if self.engine.dialect.name == "postgresql":
            return pg_insert(table)
        return sqlite_insert(table)

    def _greatest(self, a: Any, b: Any) -> Any:
        # SQLite's two-argument max() is a scalar; PostgreSQL spells it greatest()
        return func.greatest(a, b) if self.engine.dialect.name == "postgresql" else func.max(a, b)

    # ------------------------------------------------------------------ notifications
    def log_attempt(
        self,
        alarm_id: int,
        ts: float,
        person: str,
        channel: str,
        purpose: str,
        attempt: int,
        ok: bool,
        error: str = "",
    ) -> None:
        with self.tx() as c:
            c.execute(
                insert(notify_log).values(
                    alarm_id=alarm_id,
                    ts=ts,
                    person=person,
                    channel=channel,
                    purpose=purpose,
                    attempt=attempt,
                    ok=ok,
                    error=error[:500],
                )
            )

    def attempts(self, alarm_id: int | None = None) -> list[dict[str, Any]]:
        """Send attempts (not the intents: `intents`)."""
        q = select(notify_log).where(notify_log.c.attempt > 0).order_by(notify_log.c.id)
        if alarm_id is not None:
            q = q.where(notify_log.c.alarm_id == alarm_id)
        with self.tx() as c:
            return [dict(r._mapping) for r in c.execute(q)]

    def intents(self, alarm_id: int | None = None, pending: bool = False) -> list[dict[str, Any]]:
        """Intent rows (outbox), oldest first; only those not settled yet with `pending`."""
        q = select(notify_log).where(notify_log.c.attempt == 0).order_by(notify_log.c.id)
        if pending:
            q = q.where(notify_log.c.state == "pending")
        if alarm_id is not None:
            q = q.where(notify_log.c.alarm_id == alarm_id)
        with self.tx() as c:
            return [dict(r._mapping) for r in c.execute(q)]

    def pending_intents(self) -> list[dict[str, Any]]:
        """Every intent not settled yet, with its alarm's site and gateway (who owns it decides)."""
        q = (select(notify_log, alarms.c.site, alarms.c.gateway)
             .join(alarms, alarms.c.id == notify_log.c.alarm_id)
             .where(notify_log.c.state == "pending").order_by(notify_log.c.id))
        with self.tx() as c:
            return [dict(r._mapping) for r in c.execute(q)]

    def settle(self, intent_id: int, state: str, why: str = "") -> bool:
        """pending → `state` (sent, failed, dropped), once: the first outcome recorded stays (a frozen
        replica waking up after its successor re-sent does not overwrite it). False if already settled."""
        with self.tx() as c:
            return bool(c.execute(
                update(notify_log).where(notify_log.c.id == intent_id, notify_log.c.state == "pending")
                .values(state=state, error=why[:500])  # `ok` stays an attempt's outcome: counts of ok rows are pushes
            ).rowcount)

    # ------------------------------------------------------------------ inspection windows
    def add_window(self, site: str, start: float, end: float, reason: str, by: str) -> int:
        with self.tx() as c:
            res = c.execute(insert(windows).values(site=site, start=start, end=end, reason=reason, by=by))
            return int(res.inserted_primary_key[0])  # type: ignore[index]

    def end_window(self, window_id: int, now: float) -> dict[str, Any] | None:
        """Close a window now (end = now; one that has not started yet ends at its start, so it
        never opens). The row as it is now, plus `was_end`; None if there is no such window."""
        with self.tx() as c:
            r = c.execute(select(windows).where(windows.c.id == window_id)).first()
            if r is None:
                return None
            end = min(r.end, max(now, r.start))
            c.execute(update(windows).where(windows.c.id == window_id).values(end=end))
            return {**dict(r._mapping), "end": end, "was_end": r.end}

    def list_windows(self, site: str | None = None) -> list[dict[str, Any]]:
        q = select(windows).order_by(windows.c.start)
        if site:
            q = q.where(windows.c.site == site)
        with self.tx() as c:
            return [dict(r._mapping) for r in c.execute(q)]
