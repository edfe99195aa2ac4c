"""Dead letters: messages the ingester refused, kept for a person to inspect.

Nothing is lost silently: every refused message is counted by reason (metrics) and its topic,
reason, detail and raw bytes (truncated) are kept in a small SQLite file, bounded in rows so a
flood of garbage cannot fill the disk. Writes are batched (one transaction per flush) because a
flood arrives at message rate.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

KEEP_BYTES = 4096


@dataclass(frozen=True, slots=True)
class DeadLetter:
    received: float
    topic: str
    reason: str
    detail: str
    payload: bytes
    size: int


class DeadLetterStore:
    def __init__(self, path: Path | str | None, max_rows: int = 100_000) -> None:
        self.path = str(path) if path else ":memory:"
        self.max_rows = max_rows
        self.counts: Counter[str] = Counter()
        self.added = 0  # rows added so far (the durability point's "anything new to commit?")
        self._pending: list[DeadLetter] = []
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS dead_letters (id INTEGER PRIMARY KEY AUTOINCREMENT, received REAL,"
            " topic TEXT, reason TEXT, detail TEXT, payload BLOB, size INTEGER)"
        )
        self._db.commit()

    def add(self, topic: str, reason: str, detail: str, payload: bytes) -> None:
        """Record one refused message (cheap: the row is written at the next flush)."""
        dl = DeadLetter(
            time.time(), topic[:512], reason, detail[:1000], bytes(payload[:KEEP_BYTES]), len(payload)
        )
        with self._lock:
            self.counts[reason] += 1
            self.added += 1
            self._pending.append(dl)

    def flush(self) -> int:
        """Commit what was added; when this returns, everything added before the call is on disk
        (flushes are serialised, and a failed one keeps its rows for the next)."""
        with self._flush_lock:
            with self._lock:
                rows, self._pending = self._pending, []
            if not rows:
                return 0
            with self._lock:
                try:
                    self._db.executemany(
                        "INSERT INTO dead_letters (received, topic, reason, detail, payload, size)"
                        " VALUES (?,?,?,?,?,?)",
                        [(r.received, r.topic, r.reason, r.detail, r.payload, r.size) for r in rows],
                    )
                    self._db.execute(
                        "DELETE FROM dead_letters WHERE id <= (SELECT MAX(id) FROM dead_letters) - ?",
                        (self.max_rows,),
                    )
                    self._db.commit()
                except sqlite3.Error:
                    self._db.rollback()
                    self._pending[:0] = rows
                    raise
            return len(rows)

    def recent(self, limit: int = 50, reason: str | None = None) -> list[DeadLetter]:
        self.flush()
        q = "SELECT received, topic, reason, detail, payload, size FROM dead_letters"
        args: tuple[object, ...] = ()
        if reason:
            q += " WHERE reason = ?"
            args = (reason,)
        q += " ORDER BY id DESC LIMIT ?"
        with self._lock:
            rows = self._db.execute(q, (*args, limit)).fetchall()
        return [DeadLetter(*r) for r in rows]

    def close(self) -> None:
        self.flush()
        with self._lock:
            self._db.close()


def open_readonly(path: Path | str) -> DeadLetterStore:
    return DeadLetterStore(path)
