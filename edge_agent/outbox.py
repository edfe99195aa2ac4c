"""The durable outbox: every message is committed to SQLite (WAL) before it is sent, and deleted
only after the broker's PUBACK. Per-device sequence numbers live in the same database and are
taken in the same transaction as the message, so a `kill -9` can neither lose a committed message
nor reuse a sequence number. A device's first number is 1. The database also holds its `epoch`, a
random id made when the file is created: a wiped or replaced outbox starts every device at 1 again
under a new epoch, which tells the cloud these are new messages, not replays (docs/wire.md).

Disk is bounded: when the payload bytes exceed `max_bytes`, the oldest *routine* rows (telemetry,
health) are dropped and counted; safety rows (events, command results) are never dropped.
This module does no network I/O; the uplink picks rows with `backlog()` and acknowledges them.
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

ROUTINE = 1  # droppable under disk pressure
SAFETY = 0  # never dropped

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  topic TEXT NOT NULL,
  payload BLOB NOT NULL,
  retain INTEGER NOT NULL DEFAULT 0,
  priority INTEGER NOT NULL,
  created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_drop ON outbox(priority, id);
CREATE TABLE IF NOT EXISTS seq (device TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class Row:
    id: int
    topic: str
    payload: bytes
    retain: bool
    priority: int


@dataclass(frozen=True, slots=True)
class New:
    """A message to store. `build(seq)` makes the payload once its sequence number is known;
    `device` None means the message carries no sequence number (seq passed as 0)."""

    topic: str
    build: Callable[[int], bytes]
    device: str | None
    priority: int = ROUTINE
    retain: bool = False


class Outbox:
    def __init__(self, path: Path | str, max_bytes: int = 256 * 1024 * 1024, synchronous: str = "normal") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()  # one connection, used from the agent thread and the CLI
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'full' else 'NORMAL'}")
        self.db.executescript(_SCHEMA)
        self.db.execute("INSERT OR IGNORE INTO meta(name, value) VALUES ('epoch', ?)", (secrets.token_hex(4),))
        self.epoch: str = self.db.execute("SELECT value FROM meta WHERE name = 'epoch'").fetchone()[0]
        self._seq: dict[str, int] = dict(self.db.execute("SELECT device, value FROM seq").fetchall())
        row = self.db.execute("SELECT COALESCE(SUM(LENGTH(payload)), 0), COUNT(*) FROM outbox").fetchone()
        self.bytes, self.count = int(row[0]), int(row[1])

    # ------------------------------------------------------------------ writing

    def put_many(self, items: Iterable[New]) -> list[Row]:
        """Store messages in one committed transaction; returns them with their row ids.

        Sequence numbers are assigned here, inside the transaction that stores the message."""
        rows: list[Row] = []
        now = time.time()
        with self._lock:
            cur = self.db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                touched: dict[str, int] = {}
                for it in items:
                    seq = 0
                    if it.device is not None:
                        seq = self._seq.get(it.device, 0) + 1
                        self._seq[it.device] = seq
                        touched[it.device] = seq
                    payload = it.build(seq)
                    cur.execute(
                        "INSERT INTO outbox(topic, payload, retain, priority, created) VALUES (?,?,?,?,?)",
                        (it.topic, payload, int(it.retain), it.priority, now),
                    )
                    rid = cur.lastrowid
                    assert rid is not None
                    rows.append(Row(rid, it.topic, payload, it.retain, it.priority))
                    self.bytes += len(payload)
                    self.count += 1
                cur.executemany(
                    "INSERT INTO seq(device, value) VALUES (?, ?) "
                    "ON CONFLICT(device) DO UPDATE SET value=excluded.value",
                    list(touched.items()),
                )
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")  # the numbers were not stored: reload them
                self._seq = dict(self.db.execute("SELECT device, value FROM seq").fetchall())
                self.bytes, self.count = self._totals()
                raise
        return rows

    def put(self, item: New) -> Row:
        return self.put_many([item])[0]

    def seq(self, device: str) -> int:
        """The last sequence number given to `device` (0 if none)."""
        return self._seq.get(device, 0)

    # ------------------------------------------------------------------ sending side

    def backlog(self, after: int, upto: int, limit: int, skip: set[int] | None = None) -> list[Row]:
        """Stored rows with after < id <= upto in id order (oldest first), minus `skip`."""
        with self._lock:
            cur = self.db.execute(
                "SELECT id, topic, payload, retain, priority FROM outbox WHERE id > ? AND id <= ? ORDER BY id LIMIT ?",
                (after, upto, limit + len(skip or ())),
            )
            rows = [Row(r[0], r[1], bytes(r[2]), bool(r[3]), r[4]) for r in cur.fetchall()]
        if skip:
            rows = [r for r in rows if r.id not in skip]
        return rows[:limit]

    def max_id(self) -> int:
        with self._lock:
            return int(self.db.execute("SELECT COALESCE(MAX(id), 0) FROM outbox").fetchone()[0])

    def ack(self, ids: Iterable[int]) -> int:
        """PUBACK received: the rows are safe at the broker and can go."""
        ids = list(ids)
        if not ids:
            return 0
        with self._lock:
            cur = self.db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            gone = 0
            for chunk in range(0, len(ids), 500):
                part = ids[chunk : chunk + 500]
                q = ",".join("?" * len(part))
                sizes = cur.execute(
                    f"SELECT COALESCE(SUM(LENGTH(payload)),0), COUNT(*) FROM outbox WHERE id IN ({q})", part
                ).fetchone()
                cur.execute(f"DELETE FROM outbox WHERE id IN ({q})", part)
                self.bytes -= int(sizes[0])
                self.count -= int(sizes[1])
                gone += int(sizes[1])
            cur.execute("COMMIT")
        return gone

    # ------------------------------------------------------------------ disk budget

    def enforce_budget(self, protect: set[int] | None = None) -> int:
        """Drop the oldest routine rows until under `max_bytes`; returns how many were dropped."""
        if self.bytes <= self.max_bytes:
            return 0
        dropped = 0
        with self._lock:
            cur = self.db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            while self.bytes > self.max_bytes:
                batch = cur.execute(
                    "SELECT id, LENGTH(payload) FROM outbox WHERE priority = ? ORDER BY id LIMIT 200", (ROUTINE,)
                ).fetchall()
                batch = [b for b in batch if not protect or b[0] not in protect]
                if not batch:
                    break  # only safety rows (or in-flight ones) left: keep them, over budget
                for rid, size in batch:
                    cur.execute("DELETE FROM outbox WHERE id = ?", (rid,))
                    self.bytes -= size
                    self.count -= 1
                    dropped += 1
                    if self.bytes <= self.max_bytes:
                        break
            cur.execute(
                "INSERT INTO counters(name, value) VALUES ('dropped', ?) "
                "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                (dropped,),
            )
            cur.execute("COMMIT")
        return dropped

    def set_limits(self, max_bytes: int, synchronous: str) -> None:
        """A new config's disk budget and commit durability, at once (remote configuration)."""
        with self._lock:
            self.max_bytes = max_bytes
            self.db.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'full' else 'NORMAL'}")

    def dropped(self) -> int:
        with self._lock:
            r = self.db.execute("SELECT value FROM counters WHERE name = 'dropped'").fetchone()
        return int(r[0]) if r else 0

    def oldest_created(self) -> float | None:
        with self._lock:
            r = self.db.execute("SELECT MIN(created) FROM outbox").fetchone()
        return float(r[0]) if r and r[0] is not None else None

    def _totals(self) -> tuple[int, int]:
        r = self.db.execute("SELECT COALESCE(SUM(LENGTH(payload)), 0), COUNT(*) FROM outbox").fetchone()
        return int(r[0]), int(r[1])

    def close(self) -> None:
        with self._lock:
            self.db.close()
