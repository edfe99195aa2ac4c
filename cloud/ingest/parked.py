"""Messages parked on disk until their gateway's birth enrols it (sites with `auto_enrol: true`).

A new gateway's telemetry (main lane) can arrive before its birth (safety lane). The ingester holds
those messages until the birth enrols the gateway (cloud/ingest/service.py). They are acknowledged
to the broker like any other message, so they must survive a crash: each one is written here, and
the write is committed before the acknowledgement goes out (the ingester's durability point commits
this store). A row is deleted only after what its handling produced is durable; a crash in between
handles it again after the restart, which the replay check and the idempotent stores absorb.

Writes are buffered and committed in one transaction (`commit`), from the durability point's
group-commit thread; `add` and `forget` never touch the disk.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path


class ParkedStore:
    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # acknowledged to the broker: on disk, not in a page cache
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS parked (id INTEGER PRIMARY KEY, topic TEXT NOT NULL,"
            " payload BLOB NOT NULL, received REAL NOT NULL)"
        )
        self._db.commit()
        self._next = (self._db.execute("SELECT MAX(id) FROM parked").fetchone()[0] or 0) + 1
        self._adds: list[tuple[int, str, bytes, float]] = []
        self._drops: list[int] = []
        self.changes = 0  # moves on every add and forget (the durability point's "anything new?")

    def load(self) -> list[tuple[int, str, bytes, float]]:
        """Every parked message on disk, oldest first: (id, topic, payload, received)."""
        with self._lock:
            rows = self._db.execute("SELECT id, topic, payload, received FROM parked ORDER BY id").fetchall()
        return [(i, t, bytes(p), r) for i, t, p, r in rows]

    def add(self, topic: str, payload: bytes, received: float) -> int:
        """Park one message (written at the next commit); returns its id."""
        with self._lock:
            i = self._next
            self._next += 1
            self._adds.append((i, topic, bytes(payload), received))
            self.changes += 1
        return i

    def forget(self, ids: list[int]) -> None:
        """These were handled and what they produced is durable: delete them at the next commit."""
        with self._lock:
            self._drops.extend(ids)
            self.changes += 1

    def commit(self) -> None:
        with self._lock:
            adds, drops = self._adds, self._drops
            if not adds and not drops:
                return
            try:
                self._db.executemany("INSERT OR REPLACE INTO parked VALUES (?,?,?,?)", adds)
                self._db.executemany("DELETE FROM parked WHERE id = ?", [(i,) for i in drops])
                self._db.commit()
            except sqlite3.Error:
                self._db.rollback()
                raise  # kept buffered; the group commit retries
            self._adds, self._drops = [], []

    def close(self) -> None:
        self.commit()
        with self._lock:
            self._db.close()
