"""The embedded default store: a table of series (measurement + tags) and one of samples
(series, field, ts) → value.

The samples' primary key makes a repeated batch (a retry after a timeout, a replayed backlog, a
redelivery after an ingester was killed) overwrite itself instead of adding duplicates.

Why two tables: with the tags' JSON inside every sample's key (the first layout, table `points`),
each insert compared and stored ~150-byte keys and encoded the tags to JSON again; under the
2,300 msg/s fleet the writer fell minutes behind. A series is now written once and its id cached,
so a sample's key is (integer, field name, integer). A database in the first layout is moved over
when it is opened (`_migrate`).

Durable against a crash of the process (WAL; a committed batch survives `kill -9`); with
`synchronous=NORMAL` the last commits before a power loss may roll back.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from cloud.tsdb.base import SinkError
from cloud.tsdb.lineproto import Series, TsPoint


class SqliteSink:
    name = "sqlite"

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS series (id INTEGER PRIMARY KEY, measurement TEXT NOT NULL,"
            " tags TEXT NOT NULL, UNIQUE (measurement, tags))"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS samples (series INTEGER NOT NULL, field TEXT NOT NULL,"
            " ts INTEGER NOT NULL, value, PRIMARY KEY (series, field, ts)) WITHOUT ROWID"
        )
        self._migrate()
        self._db.commit()
        self._ids: dict[str, int] = {}  # Series.key (measurement + tags, unique) → series id

    def _migrate(self) -> None:
        """Move samples of the first layout (table `points`, tags JSON in every row) over."""
        if not self._db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='points'").fetchone():
            return
        self._db.execute(
            "INSERT OR IGNORE INTO series (measurement, tags) SELECT DISTINCT measurement, tags FROM points"
        )
        self._db.execute(
            "INSERT OR REPLACE INTO samples SELECT s.id, p.field, p.ts, p.value FROM points p"
            " JOIN series s ON s.measurement = p.measurement AND s.tags = p.tags"
        )
        self._db.execute("DROP TABLE points")

    def _series_id(self, s: Series) -> int:
        sid = self._ids.get(s.key)
        if sid is None:
            tags = json.dumps(dict(s.tags), sort_keys=True, separators=(",", ":"))
            self._db.execute("INSERT OR IGNORE INTO series (measurement, tags) VALUES (?, ?)", (s.measurement, tags))
            sid = self._db.execute(
                "SELECT id FROM series WHERE measurement = ? AND tags = ?", (s.measurement, tags)
            ).fetchone()[0]
            self._ids[s.key] = sid
        return sid

    def write(self, points: list[TsPoint]) -> None:
        try:
            with self._lock:
                ids, sid_of = self._ids, self._series_id
                rows = []
                for p in points:
                    s = p.series
                    sid = ids.get(s.key) or sid_of(s)
                    ts = p.ts_ms
                    for f, v in p.fields.items():
                        rows.append((sid, f, ts, v))
                self._db.executemany("INSERT OR REPLACE INTO samples VALUES (?,?,?,?)", rows)
                self._db.commit()
        except sqlite3.Error as e:
            with self._lock:
                self._db.rollback()
                self._ids = {}  # series rows of the failed transaction are gone with it
            raise SinkError(f"sqlite: {e}") from e

    def query(self, measurement: str | None = None) -> list[dict[str, Any]]:
        """Rows back as dicts {measurement, tags, field, ts, value} (tests, small sites)."""
        q = "SELECT s.measurement, s.tags, p.field, p.ts, p.value FROM samples p JOIN series s ON s.id = p.series"
        args: tuple[str, ...] = ()
        if measurement:
            q += " WHERE s.measurement = ?"
            args = (measurement,)
        with self._lock:
            rows = self._db.execute(q, args).fetchall()
        return [
            {"measurement": m, "tags": json.loads(t), "field": f, "ts": ts, "value": v}
            for m, t, f, ts, v in rows
        ]

    def close(self) -> None:
        with self._lock:
            self._db.close()
