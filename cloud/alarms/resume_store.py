"""What a replica that takes gateways over (or a restarted `cloud serve`) resumes beyond alarms and
timers: in-memory rule and history state, in one small table of the alarm store's database
(PostgreSQL on a cluster, SQLite on one machine).

`resume_state` holds one row per (kind, site, gateway, key) with its state as JSON:
- `rate`: a rate-of-rise window (the track key; its samples and the point's ordering mark),
- `comm`: a comm-error window (the device; poll counters at the window's start and the mark of the
  health message that set them),
- `stay`: a parking bay (the bay; its state, the open stay's arrival, the last stay it closed),
- `session`: a charger port's charge session (open, or the one that just ended).

Why one generic table rather than one per kind: every kind is written in batches by its owner and
read whole at a takeover, filtered by the gateways adopted; none is queried by its content. Who writes
when is the callers' business (cloud/alarms/engine.py: with the periodic flush; cloud/history: on
transitions); rows are upserts, so two replicas writing the same key never trip over the key.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import msgspec
from sqlalchemy import Column, MetaData, String, Table, Text, delete, select, tuple_

from cloud.alarms.store import AlarmStore

log = logging.getLogger(__name__)

metadata = MetaData()

resume_state = Table(
    "resume_state",
    metadata,
    Column("kind", String(16), primary_key=True),
    Column("site", String(64), primary_key=True),
    Column("gateway", String(64), primary_key=True),
    Column("key", String(300), primary_key=True),
    Column("data", Text, nullable=False),
)

Row = tuple[str, str, str]  # (site, gateway, key)


class ResumeStore:
    """Rows of `resume_state` on the alarm store's database (and its lock)."""

    def __init__(self, store: AlarmStore) -> None:
        self.store = store
        self._enc = msgspec.json.Encoder()
        metadata.create_all(store.engine)

    def save(self, kind: str, rows: dict[Row, dict[str, Any] | None]) -> None:
        """Upsert rows (None: delete), in one transaction."""
        if not rows:
            return
        gone = [k for k, v in rows.items() if v is None]
        enc = self._enc.encode  # msgspec: ~10x json.dumps on windows of 60 samples
        up = [{"kind": kind, "site": s, "gateway": g, "key": k, "data": enc(v).decode()}
              for (s, g, k), v in sorted(rows.items()) if v is not None]
        ins = self.store._insert(resume_state)
        stmt = ins.on_conflict_do_update(index_elements=["kind", "site", "gateway", "key"],
                                         set_={"data": ins.excluded.data})
        with self.store.tx() as c:
            for i in range(0, len(gone), 500):
                c.execute(delete(resume_state).where(
                    resume_state.c.kind == kind,
                    tuple_(resume_state.c.site, resume_state.c.gateway, resume_state.c.key).in_(gone[i:i + 500])))
            for i in range(0, len(up), 500):
                c.execute(stmt, up[i:i + 500])

    def load(self, kind: str, mine: Callable[[str, str], bool]) -> dict[Row, dict[str, Any]]:
        """The rows of `kind` whose gateway is `mine`; a row that is not a JSON object is skipped
        (logged): whatever is in the table, a takeover goes on."""
        with self.store.tx() as c:
            rows = list(c.execute(select(resume_state).where(resume_state.c.kind == kind)))
        out: dict[Row, dict[str, Any]] = {}
        for r in rows:
            if not mine(r.site, r.gateway):
                continue
            try:
                data = json.loads(r.data)
            except ValueError:
                data = None
            if not isinstance(data, dict):
                log.warning("resume_state: %s row %s/%s/%s is not a JSON object; ignored", kind, r.site,
                            r.gateway, r.key)
                continue
            out[(r.site, r.gateway, r.key)] = data
        return out
