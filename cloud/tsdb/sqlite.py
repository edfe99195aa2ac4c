"""The embedded default store: one SQLite table of (measurement, series, field, ts) → value.

The primary key makes a repeated batch (a retry after a timeout, a replayed backlog) overwrite
itself instead of adding duplicates.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from cloud.tsdb.base import SinkError
from cloud.tsdb.lineproto import TsPoint


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
            "CREATE TABLE IF NOT EXISTS points (measurement TEXT NOT NULL, tags TEXT NOT NULL,"
            " field TEXT NOT NULL,"
            " ts INTEGER NOT NULL, value, PRIMARY KEY (measurement, tags, field, ts)) WITHOUT ROWID"
        )
        self._db.commit()

    def write(self, points: list[TsPoint]) -> None:
        rows = []
        for p in points:
            tags = json.dumps(dict(p.series.tags), sort_keys=True, separators=(",", ":"))
            for f, v in p.fields.items():
                rows.append((p.series.measurement, tags, f, p.ts_ms, v))
        try:
            with self._lock:
                self._db.executemany("INSERT OR REPLACE INTO points VALUES (?,?,?,?,?)", rows)
                self._db.commit()
        except sqlite3.Error as e:
            raise SinkError(f"sqlite: {e}") from e

    def query(self, measurement: str | None = None) -> list[dict[str, Any]]:
        """Rows back as dicts {measurement, tags, field, ts, value} (tests, small sites)."""
        q = "SELECT measurement, tags, field, ts, value FROM points"
        args: tuple[str, ...] = ()
        if measurement:
            q += " WHERE measurement = ?"
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
