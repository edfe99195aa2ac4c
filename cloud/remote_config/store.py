"""Versions, desired and running configs, history and rollouts of gateway configs (SQLAlchemy).

Versions are immutable and numbered per gateway (1, 2, …); a rollback is a NEW version carrying
an older one's text, so the version a gateway runs only ever grows and every change has its own
line in the history with who made it. The running side comes from the gateways themselves (birth,
`config-running`, `config-result`); drift is desired ≠ running, by content digest.

Tables live in the registry's database (`cloud serve --state-db`), created on first use.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import JSON, Engine, Float, Integer, String, Text, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

TERMINAL = ("applied", "rolled_back", "refused")


class ConfigBase(DeclarativeBase):
    pass


class VersionRow(ConfigBase):
    __tablename__ = "gw_config_versions"
    site: Mapped[str] = mapped_column(String(64), primary_key=True)
    gateway: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    digest: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[float] = mapped_column(Float)
    created_by: Mapped[str] = mapped_column(String(128))
    comment: Mapped[str] = mapped_column(String(500), default="")
    source: Mapped[str] = mapped_column(String(16))  # edit | rollback | import | rollout
    parent: Mapped[int | None] = mapped_column(Integer, nullable=True)
    probe_s: Mapped[float] = mapped_column(Float, default=20.0)
    confirm_s: Mapped[float] = mapped_column(Float, default=30.0)


class StateRow(ConfigBase):
    __tablename__ = "gw_config_state"
    site: Mapped[str] = mapped_column(String(64), primary_key=True)
    gateway: Mapped[str] = mapped_column(String(64), primary_key=True)
    desired: Mapped[int | None] = mapped_column(Integer, nullable=True)
    sent: Mapped[int | None] = mapped_column(Integer, nullable=True)
    running_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    running_digest: Mapped[str] = mapped_column(String(64), default="")
    running_text: Mapped[str] = mapped_column(Text, default="")
    running_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    agent: Mapped[str] = mapped_column(String(100), default="")
    last_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_status: Mapped[str] = mapped_column(String(16), default="")
    last_detail: Mapped[str] = mapped_column(Text, default="")
    last_devices: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    last_problems: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    last_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_ts: Mapped[float | None] = mapped_column(Float, nullable=True)  # the gateway's time of that result


class EventRow(ConfigBase):
    """The history and audit trail: who did what to which gateway's config, and what it did."""

    __tablename__ = "gw_config_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    site: Mapped[str] = mapped_column(String(64), index=True)
    gateway: Mapped[str] = mapped_column(String(64))
    version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    at: Mapped[float] = mapped_column(Float)
    who: Mapped[str] = mapped_column(String(128))
    what: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(Text, default="")


class RolloutRow(ConfigBase):
    __tablename__ = "gw_config_rollouts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    site: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[float] = mapped_column(Float)
    created_by: Mapped[str] = mapped_column(String(128))
    comment: Mapped[str] = mapped_column(String(500), default="")
    patch: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))  # running | done | stopped
    detail: Mapped[str] = mapped_column(Text, default="")
    step_timeout_s: Mapped[float] = mapped_column(Float, default=300.0)
    probe_s: Mapped[float] = mapped_column(Float, default=20.0)
    confirm_s: Mapped[float] = mapped_column(Float, default=30.0)
    steps: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)  # [{gateway, state, version, detail, at}]


# A version without its text (lists) and with it. Both are also the API's response models (FastAPI
# takes a dataclass), so there is one definition; no docstrings: they would become schema texts.
@dataclass(frozen=True)
class VersionInfo:
    site: str
    gateway: str
    version: int
    digest: str
    created_at: float
    created_by: str
    comment: str
    source: str  # edit | rollback | import | rollout
    parent: int | None  # the version rolled back to
    probe_s: float
    confirm_s: float


@dataclass(frozen=True)
class Version(VersionInfo):
    text: str

    def info(self) -> VersionInfo:
        info: VersionInfo = _of(VersionInfo, self)
        return info


@dataclass(frozen=True)
class State:
    site: str
    gateway: str
    desired: int | None
    sent: int | None
    running_version: int | None
    running_digest: str
    running_text: str
    running_at: float | None
    agent: str
    last_version: int | None
    last_status: str
    last_detail: str
    last_devices: dict[str, str]
    last_problems: list[dict[str, Any]]
    last_at: float | None
    last_ts: float | None


# Also the API's response models (no docstrings: they would become schema texts).
@dataclass(frozen=True)
class Event:
    id: int
    site: str
    gateway: str
    version: int | None
    at: float
    who: str
    what: str
    detail: str


@dataclass(frozen=True)
class Rollout:
    id: int
    site: str
    created_at: float
    created_by: str
    comment: str
    patch: str
    state: str
    detail: str
    step_timeout_s: float
    probe_s: float
    confirm_s: float
    steps: list[dict[str, Any]]


def _of(cls: Any, row: Any) -> Any:
    return cls(**{k: getattr(row, k) for k in cls.__dataclass_fields__})


class ConfigStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        ConfigBase.metadata.create_all(engine)
        self.session = sessionmaker(engine, expire_on_commit=False)
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ versions
    def create_version(self, site: str, gateway: str, text: str, digest: str, by: str, source: str,
                       comment: str = "", parent: int | None = None, probe_s: float = 20.0,
                       confirm_s: float = 30.0, desire: bool = True) -> Version:
        """The next version of this gateway's config (and, with `desire`, its desired config).
        Two replicas creating one at the same instant: the loser retries with the next number."""
        for attempt in range(30):
            if attempt:
                time.sleep(random.uniform(0.001, 0.02) * attempt)  # let the winner commit
            try:
                with self._lock, self.session.begin() as s:
                    n = (s.scalar(select(func.max(VersionRow.version)).where(
                        VersionRow.site == site, VersionRow.gateway == gateway)) or 0) + 1
                    row = VersionRow(site=site, gateway=gateway, version=n, text=text, digest=digest,
                                     created_at=time.time(), created_by=by[:128], comment=comment[:500], source=source,
                                     parent=parent, probe_s=probe_s, confirm_s=confirm_s)
                    s.add(row)
                    s.add(EventRow(site=site, gateway=gateway, version=n, at=row.created_at, who=by[:128],
                                   what=source, detail=comment[:500]))
                    if desire:
                        st = self._state_row(s, site, gateway)
                        st.desired = n
                        s.add(EventRow(site=site, gateway=gateway, version=n, at=row.created_at, who=by[:128],
                                       what="desired", detail=f"version {n} is the desired config"))
                return _of(Version, row)
            except IntegrityError:
                continue
        raise RuntimeError(f"could not number a new config version of {site}/{gateway}")

    def versions(self, site: str, gateway: str) -> list[Version]:
        with self.session() as s:
            q = select(VersionRow).where(VersionRow.site == site, VersionRow.gateway == gateway)
            return [_of(Version, r) for r in s.scalars(q.order_by(VersionRow.version.desc()))]

    def version(self, site: str, gateway: str, n: int) -> Version | None:
        with self.session() as s:
            r = s.get(VersionRow, (site, gateway, n))
            return _of(Version, r) if r else None

    def by_digest(self, site: str, gateway: str, digest: str) -> Version | None:
        """The newest version with this content (to name a gateway's local config)."""
        with self.session() as s:
            q = select(VersionRow).where(VersionRow.site == site, VersionRow.gateway == gateway,
                                         VersionRow.digest == digest).order_by(VersionRow.version.desc()).limit(1)
            r = s.scalars(q).first()
            return _of(Version, r) if r else None

    # ------------------------------------------------------------------ state
    @staticmethod
    def _state_row(s: Any, site: str, gateway: str) -> StateRow:
        st = s.get(StateRow, (site, gateway))
        if st is None:
            st = StateRow(site=site, gateway=gateway, running_digest="", running_text="", agent="", last_status="",
                          last_detail="", last_devices={}, last_problems=[], last_ts=None)
            s.add(st)
        return st

    def state(self, site: str, gateway: str) -> State | None:
        with self.session() as s:
            r = s.get(StateRow, (site, gateway))
            return _of(State, r) if r else None

    def states(self, site: str | None = None) -> list[State]:
        with self.session() as s:
            q = select(StateRow)
            if site is not None:
                q = q.where(StateRow.site == site)
            return [_of(State, r) for r in s.scalars(q.order_by(StateRow.site, StateRow.gateway))]

    def set_desired(self, site: str, gateway: str, version: int | None, by: str, detail: str = "") -> None:
        with self._lock, self.session.begin() as s:
            self._state_row(s, site, gateway).desired = version
            s.add(EventRow(site=site, gateway=gateway, version=version, at=time.time(), who=by[:128], what="desired",
                           detail=detail or f"version {version} is the desired config"))

    def mark_sent(self, site: str, gateway: str, version: int, how: str = "retained") -> None:
        with self._lock, self.session.begin() as s:
            st = self._state_row(s, site, gateway)
            first = st.sent != version
            st.sent = version
            if first:
                s.add(EventRow(site=site, gateway=gateway, version=version, at=time.time(), who="cloud",
                               what="sent", detail=f"published to the gateway ({how})"))

    def record_result(self, site: str, gateway: str, version: int, status: str, running: int, detail: str,
                      devices: dict[str, str], problems: list[dict[str, Any]], ts: float = 0.0) -> bool:
        """A gateway's config-result, `ts` its time on the gateway. Results may arrive late and out of
        order (an `applying` left in the outbox by the uplink a trial replaced goes out behind the
        newer `applied`): only a result newer than the recorded one, by (version, ts), becomes the
        gateway's state; a late one only adds its history line if that step has none yet. False when
        nothing was recorded (a result the gateway sent again)."""
        who = f"gateway {gateway}"
        detail = detail[:2000]
        with self._lock, self.session.begin() as s:
            st = self._state_row(s, site, gateway)
            newer = st.last_version is None or (version, ts) > (st.last_version, st.last_ts or 0.0)
            if not newer or (st.last_version, st.last_status, st.last_detail) == (version, status, detail):
                seen = s.scalar(select(EventRow.id).where(
                    EventRow.site == site, EventRow.gateway == gateway, EventRow.version == version,
                    EventRow.what == status, EventRow.detail == detail).limit(1))
                if seen is not None:
                    return False
            if newer:
                st.last_version, st.last_status, st.last_detail, st.last_ts = version, status, detail, ts
                st.last_devices, st.last_problems, st.last_at = dict(devices), list(problems), time.time()
                if status in TERMINAL:
                    st.running_version = running
            s.add(EventRow(site=site, gateway=gateway, version=version, at=time.time(), who=who, what=status,
                           detail=detail))
        return True

    def record_running(self, site: str, gateway: str, version: int, digest: str, text: str | None,
                       agent: str) -> None:
        with self._lock, self.session.begin() as s:
            st = self._state_row(s, site, gateway)
            changed = (st.running_version, st.running_digest) != (version, digest)
            st.running_version, st.running_digest, st.running_at = version, digest, time.time()
            if text is not None:
                st.running_text = text
            if agent:
                st.agent = agent[:100]
            if changed:
                s.add(EventRow(site=site, gateway=gateway, version=version or None, at=time.time(),
                               who=f"gateway {gateway}", what="running",
                               detail=f"runs {'version ' + str(version) if version else 'a local config'} "
                                      f"(digest {digest[:12]})"))

    def add_event(self, site: str, gateway: str, version: int | None, who: str, what: str, detail: str) -> None:
        with self._lock, self.session.begin() as s:
            s.add(EventRow(site=site, gateway=gateway, version=version, at=time.time(), who=who[:128], what=what,
                           detail=detail[:2000]))

    def has_event(self, site: str, gateway: str, version: int, what: str) -> bool:
        with self.session() as s:
            return s.scalar(select(EventRow.id).where(
                EventRow.site == site, EventRow.gateway == gateway, EventRow.version == version,
                EventRow.what == what).limit(1)) is not None

    def events(self, site: str, gateway: str | None = None, limit: int = 100) -> list[Event]:
        with self.session() as s:
            q = select(EventRow).where(EventRow.site == site)
            if gateway is not None:
                q = q.where(EventRow.gateway == gateway)
            return [_of(Event, r) for r in s.scalars(q.order_by(EventRow.id.desc()).limit(limit))]

    # ------------------------------------------------------------------ rollouts
    def create_rollout(self, site: str, gateways: list[str], patch: str, by: str, comment: str,
                       step_timeout_s: float, probe_s: float = 20.0, confirm_s: float = 30.0) -> Rollout:
        with self._lock, self.session.begin() as s:
            row = RolloutRow(site=site, created_at=time.time(), created_by=by[:128], comment=comment[:500],
                             patch=patch, state="running", detail="", step_timeout_s=step_timeout_s,
                             probe_s=probe_s, confirm_s=confirm_s,
                             steps=[{"gateway": g, "state": "pending", "version": None, "detail": "", "at": None}
                                    for g in gateways])
            s.add(row)
            s.flush()
            return _of(Rollout, row)

    def rollout(self, rid: int) -> Rollout | None:
        with self.session() as s:
            r = s.get(RolloutRow, rid)
            return _of(Rollout, r) if r else None

    def rollouts(self, site: str | None = None, state: str | None = None, limit: int = 50) -> list[Rollout]:
        with self.session() as s:
            q = select(RolloutRow)
            if site is not None:
                q = q.where(RolloutRow.site == site)
            if state is not None:
                q = q.where(RolloutRow.state == state)
            return [_of(Rollout, r) for r in s.scalars(q.order_by(RolloutRow.id.desc()).limit(limit))]

    def save_rollout(self, rid: int, state: str, detail: str, steps: list[dict[str, Any]]) -> None:
        with self._lock, self.session.begin() as s:
            r = s.get(RolloutRow, rid)
            if r is not None:
                r.state, r.detail, r.steps = state, detail[:2000], [dict(x) for x in steps]
