"""The registry: what is registered where, gateway online state, last known values.

The database is the truth (shared by ingester replicas, the API and the alarm engine); the hot
path reads an immutable in-memory `Directory` snapshot instead, refreshed after every change and
periodically, because an identity check per message must cost a dict lookup, not a query.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import JSON, Table, and_, bindparam, create_engine, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from cloud.site_config import SiteFile
from cloud.state.models import Base, DeviceRow, GatewayClockRow, GatewayRow, SeqStateRow, SiteRow
from device_profiles import wire

T = TypeVar("T")


def _retry_race(fn: Callable[[], T], attempts: int = 3) -> T:
    """Replicas (PostgreSQL) may insert the same new row at the same instant; the loser's
    transaction fails on the primary key and is simply run again, now seeing the winner's row."""
    for i in range(attempts):
        try:
            return fn()
        except IntegrityError:
            if i == attempts - 1:
                raise
    raise AssertionError("unreachable")


@dataclass(frozen=True, slots=True)
class DeviceEntry:
    site: str
    id: str
    gateway: str
    profile: str
    labels: dict[str, str] = field(default_factory=dict)
    instance_labels: dict[int, dict[str, str]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Directory:
    """Read-only snapshot for identity checks."""

    sites: dict[str, bool]  # site → auto_enrol
    gateways: frozenset[tuple[str, str]]
    devices: dict[tuple[str, str], DeviceEntry]  # (site, device)
    gateway_labels: dict[tuple[str, str], dict[str, str]]


class Registry:
    def __init__(self, url: str = "sqlite:///shelterwatch-state.db") -> None:
        kw: dict[str, Any] = {}
        if url.startswith("sqlite"):
            kw["connect_args"] = {"check_same_thread": False, "timeout": 30}
        self.engine = create_engine(url, **kw)
        Base.metadata.create_all(self.engine)
        self.session = sessionmaker(self.engine, expire_on_commit=False)
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ registration
    def register_site(self, site: SiteFile) -> dict[str, int]:
        """Make the registry match the site file: upsert its gateways and devices, remove devices
        and gateways of this site that the file no longer lists (but keep auto-enrolled ones)."""
        extra = site.model_dump(mode="json", by_alias=True, exclude_none=True,
                                include={"people", "escalation", "alarm_overrides", "inspection_windows"})
        with self._lock, self.session.begin() as s:
            row = s.get(SiteRow, site.site) or SiteRow(id=site.site)
            row.name, row.name_zh, row.auto_enrol, row.extra = site.name, site.name_zh, site.auto_enrol, extra
            s.add(row)
            gw_ids, dev_ids = set(), set()
            for g in site.gateways:
                gw_ids.add(g.id)
                grow = s.get(GatewayRow, (site.site, g.id)) or GatewayRow(site_id=site.site, id=g.id)
                grow.name, grow.location, grow.labels, grow.enrolled_by = (
                    g.name,
                    g.location,
                    dict(g.labels),
                    "site-file",
                )
                s.add(grow)
                for d in g.devices:
                    dev_ids.add(d.id)
                    drow = s.get(DeviceRow, (site.site, d.id)) or DeviceRow(site_id=site.site, id=d.id)
                    drow.gateway_id, drow.profile, drow.name = g.id, d.profile, d.name
                    drow.labels = dict(d.labels)
                    drow.instance_labels = {str(k): dict(v) for k, v in d.instance_labels.items()}
                    drow.enrolled_by = "site-file"
                    s.add(drow)
            removed = 0
            for drow in s.scalars(select(DeviceRow).where(DeviceRow.site_id == site.site)):
                if drow.id not in dev_ids and drow.enrolled_by == "site-file":
                    s.delete(drow)
                    removed += 1
            for grow in s.scalars(select(GatewayRow).where(GatewayRow.site_id == site.site)):
                if grow.id not in gw_ids and grow.enrolled_by == "site-file":
                    s.delete(grow)
        return {"gateways": len(gw_ids), "devices": len(dev_ids), "removed_devices": removed}

    def enrol_from_birth(self, site: str, gateway: str, status: wire.Status) -> int:
        """Auto-enrolment: register the gateway and the devices its birth message lists, if the
        site allows it. A device already registered to another gateway is never moved."""
        return _retry_race(lambda: self._enrol_from_birth(site, gateway, status))

    def _enrol_from_birth(self, site: str, gateway: str, status: wire.Status) -> int:
        from device_profiles.loader import catalog

        known = catalog()
        added = 0
        with self._lock, self.session.begin() as s:
            srow = s.get(SiteRow, site)
            if srow is None or not srow.auto_enrol:
                return -1
            if s.get(GatewayRow, (site, gateway)) is None:
                s.add(GatewayRow(site_id=site, id=gateway, enrolled_by="birth"))
                added += 1
            for d in status.devices:
                if d.profile not in known or not wire.ID_RE.match(d.id):
                    continue
                if s.get(DeviceRow, (site, d.id)) is None:
                    s.add(
                        DeviceRow(
                            site_id=site,
                            id=d.id,
                            gateway_id=gateway,
                            profile=d.profile,
                            labels=dict(d.labels),
                            instance_labels={},
                            enrolled_by="birth",
                        )
                    )
                    added += 1
        return added

    def directory(self) -> Directory:
        with self.session() as s:
            sites = {r.id: r.auto_enrol for r in s.scalars(select(SiteRow))}
            gws = list(s.scalars(select(GatewayRow)))
            devs = {
                (r.site_id, r.id): DeviceEntry(
                    r.site_id,
                    r.id,
                    r.gateway_id,
                    r.profile,
                    dict(r.labels or {}),
                    {int(k): dict(v) for k, v in (r.instance_labels or {}).items()},
                )
                for r in s.scalars(select(DeviceRow))
            }
        return Directory(
            sites,
            frozenset((g.site_id, g.id) for g in gws),
            devs,
            {(g.site_id, g.id): dict(g.labels or {}) for g in gws},
        )

    # ------------------------------------------------------------------ live state
    def set_gateway_status(self, site: str, gateway: str, status: wire.Status) -> None:
        with self._lock, self.session.begin() as s:
            g = s.get(GatewayRow, (site, gateway))
            if g is None:
                return
            ts = status.ts.timestamp()
            # An older retained status arriving late must not win; a stored time in the future
            # (kept before the time policy existed) never blocks a newer one.
            if g.status_ts is not None and ts < g.status_ts <= time.time() + wire.CLOCK_TOLERANCE_S:
                return
            g.online, g.status_ts, g.status_reason = status.state == "online", ts, status.reason[:200]
            if status.agent:
                g.agent = status.agent[:100]

    def save_last_values(self, updates: dict[tuple[str, str], tuple[dict[str, Any], float]]) -> None:
        """Merge the newest values into each device's row, skipping values older than what is stored.

        The ingester calls this every second with what changed since (one entry per device that
        reported). An ORM get + flush per device cost ~15 % of its CPU at a few hundred devices, so:
        on SQLite one executemany UPDATE merges in SQL (`json_patch`; values are never null, which a
        JSON merge patch would read as "delete"); elsewhere one SELECT, merge here, one UPDATE."""
        if not updates:
            return
        t = DeviceRow.__table__
        assert isinstance(t, Table)
        # `t` never passes the receive time (cloud/ingest/pipeline.py); a stored time in the future
        # (kept before the time policy existed) never blocks newer values.
        future = time.time() + wire.CLOCK_TOLERANCE_S
        newer = or_(t.c.last_ts.is_(None), t.c.last_ts <= bindparam("t"), t.c.last_ts > future)
        key = and_(t.c.site_id == bindparam("k_site"), t.c.id == bindparam("k_id"))
        with self._lock, self.session.begin() as s:
            if s.get_bind().dialect.name == "sqlite":
                patch = func.json_patch(func.coalesce(t.c.last_values, "{}"), bindparam("v", type_=JSON))
                rows = [{"k_site": k[0], "k_id": k[1], "v": v, "t": ts} for k, (v, ts) in updates.items()]
                s.execute(update(t).where(key, newer).values(last_values=patch, last_ts=bindparam("t")), rows)
                return
            current: dict[tuple[str, str], dict[str, Any]] = {}
            for site in {site for site, _ in updates}:
                ids = [dev for st, dev in updates if st == site]
                for i in range(0, len(ids), 500):
                    q = select(t.c.id, t.c.last_values).where(t.c.site_id == site, t.c.id.in_(ids[i : i + 500]))
                    current.update({(site, dev): lv or {} for dev, lv in s.execute(q)})
            rows = [
                {"k_site": k[0], "k_id": k[1], "v": {**current[k], **v}, "t": ts}
                for k, (v, ts) in updates.items()
                if k in current
            ]
            if rows:
                s.execute(update(t).where(key, newer).values(last_values=bindparam("v"), last_ts=bindparam("t")), rows)

    def save_gateway_clocks(self, clocks: dict[tuple[str, str], Any]) -> None:
        """Upsert what the ingester learnt of gateways' clocks (`timepolicy.GatewayClock`s). With
        replicas, each writes its own figures and counts; the latest write wins (a trouble flag)."""
        if clocks:
            _retry_race(lambda: self._save_gateway_clocks(clocks))

    def _save_gateway_clocks(self, clocks: dict[tuple[str, str], Any]) -> None:
        with self._lock, self.session.begin() as s:
            for (site, gw), c in clocks.items():
                row = s.get(GatewayClockRow, (site, gw)) or GatewayClockRow(site_id=site, gateway_id=gw)
                row.skew_s, row.source, row.measured = c.skew_s, c.source, c.measured
                row.rebased, row.last_rebased = c.rebased, c.last_rebased
                s.add(row)

    def gateway_clocks(self, site: str) -> dict[str, GatewayClockRow]:
        with self.session() as s:
            q = select(GatewayClockRow).where(GatewayClockRow.site_id == site)
            return {r.gateway_id: r for r in s.scalars(q)}

    def save_seq_states(self, states: dict[tuple[str, str], dict[str, Any]]) -> None:
        """Upsert replay windows: executemany UPDATE for the rows that exist, INSERT for the others
        (retried if another replica inserted the same row meanwhile)."""
        if states:
            _retry_race(lambda: self._save_seq_states(states))

    def _save_seq_states(self, states: dict[tuple[str, str], dict[str, Any]]) -> None:
        t = SeqStateRow.__table__
        assert isinstance(t, Table)
        with self._lock, self.session.begin() as s:
            existing = {(a, b) for a, b in s.execute(select(t.c.site_id, t.c.device_id))}
            upd = [{"k_site": k[0], "k_dev": k[1], "st": st} for k, st in states.items() if k in existing]
            new = [{"site_id": k[0], "device_id": k[1], "state": st} for k, st in states.items() if k not in existing]
            if upd:
                s.execute(
                    update(t)
                    .where(t.c.site_id == bindparam("k_site"), t.c.device_id == bindparam("k_dev"))
                    .values(state=bindparam("st")),
                    upd,
                )
            if new:
                s.execute(insert(t), new)

    def load_seq_states(self) -> dict[tuple[str, str], dict[str, Any]]:
        with self.session() as s:
            return {(r.site_id, r.device_id): dict(r.state) for r in s.scalars(select(SeqStateRow))}

    # ------------------------------------------------------------------ reading (API, CLI, tests)
    def gateways(self, site: str | None = None) -> list[GatewayRow]:
        with self.session() as s:
            q = select(GatewayRow)
            if site:
                q = q.where(GatewayRow.site_id == site)
            return list(s.scalars(q.order_by(GatewayRow.site_id, GatewayRow.id)))

    def gateway(self, site: str, gateway: str) -> GatewayRow | None:
        with self.session() as s:
            return s.get(GatewayRow, (site, gateway))

    def device(self, site: str, device: str) -> DeviceRow | None:
        with self.session() as s:
            return s.get(DeviceRow, (site, device))

    def devices(self, site: str | None = None) -> list[DeviceRow]:
        with self.session() as s:
            q = select(DeviceRow)
            if site:
                q = q.where(DeviceRow.site_id == site)
            return list(s.scalars(q.order_by(DeviceRow.site_id, DeviceRow.id)))

    def forget_site(self, site: str) -> None:
        with self._lock, self.session.begin() as s:
            for model in (DeviceRow, GatewayRow, SeqStateRow, GatewayClockRow):
                s.execute(delete(model).where(model.site_id == site))
            s.execute(delete(SiteRow).where(SiteRow.id == site))

    def close(self) -> None:
        self.engine.dispose()
