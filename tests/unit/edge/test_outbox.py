"""The SQLite outbox: committed before sent, sequence numbers in the same transaction, bounded disk
that drops the oldest routine rows and never a safety row."""

from __future__ import annotations

import multiprocessing
import os
import signal
from pathlib import Path

from edge_agent.outbox import ROUTINE, SAFETY, New, Outbox


def msg(dev: str | None, prio: int = ROUTINE, size: int = 100) -> New:
    return New(f"t/{dev}", lambda seq: f"{seq:08d}".encode() + b"x" * (size - 8), dev, prio)


def test_sequences_are_per_device_and_persist(tmp_path: Path) -> None:
    o = Outbox(tmp_path / "o.db")
    rows = o.put_many([msg("a"), msg("b"), msg("a"), msg(None)])
    assert [r.payload[:8] for r in rows] == [b"00000001", b"00000001", b"00000002", b"00000000"]
    o.close()
    o = Outbox(tmp_path / "o.db")
    assert o.seq("a") == 2 and o.seq("b") == 1 and o.count == 4
    assert o.put(msg("a")).payload[:8] == b"00000003"


def test_an_outbox_has_one_epoch_a_new_one_another(tmp_path: Path) -> None:
    """docs/wire.md: seq starts at 1 per device; a restart continues it under the same epoch, a
    wiped outbox starts at 1 again under a new epoch."""
    o = Outbox(tmp_path / "o.db")
    first = o.epoch
    assert first and o.put(msg("a")).payload.startswith(b"00000001")
    o.close()
    o = Outbox(tmp_path / "o.db")  # a restart
    assert o.epoch == first and o.put(msg("a")).payload.startswith(b"00000002")
    o.close()
    (tmp_path / "o.db").unlink()  # wiped
    for f in tmp_path.glob("o.db-*"):
        f.unlink()
    o = Outbox(tmp_path / "o.db")
    assert o.epoch != first and o.put(msg("a")).payload.startswith(b"00000001")
    o.close()


def test_ack_deletes_and_backlog_is_in_order(tmp_path: Path) -> None:
    o = Outbox(tmp_path / "o.db")
    rows = o.put_many([msg("a") for _ in range(10)])
    got = o.backlog(0, rows[-1].id, 4, skip={rows[1].id})
    assert [r.id for r in got] == [rows[0].id, rows[2].id, rows[3].id, rows[4].id]
    assert o.ack([rows[0].id, rows[2].id]) == 2
    assert o.count == 8 and o.bytes == 800
    assert next(r.id for r in o.backlog(0, rows[-1].id, 100)) == rows[1].id


def test_disk_budget_drops_oldest_routine_never_safety(tmp_path: Path) -> None:
    o = Outbox(tmp_path / "o.db", max_bytes=64 * 1024)
    safety = o.put_many([msg("a", SAFETY, 1000) for _ in range(20)])
    o.put_many([msg("a", ROUTINE, 1000) for _ in range(100)])
    dropped = o.enforce_budget()
    assert dropped > 0 and o.bytes <= 64 * 1024 and o.dropped() == dropped
    left = o.backlog(0, 10**9, 1000)
    assert {r.id for r in safety} <= {r.id for r in left}
    routine_left = [r.id for r in left if r.priority == ROUTINE]
    assert routine_left == sorted(routine_left) and routine_left[-1] == o.max_id()  # newest kept
    # only safety left and still over budget: keep it all
    o2 = Outbox(tmp_path / "o2.db", max_bytes=64 * 1024)
    o2.put_many([msg("a", SAFETY, 1000) for _ in range(80)])
    assert o2.enforce_budget() == 0 and o2.count == 80


def _writer(path: str, n: int) -> None:
    o = Outbox(path)
    for _ in range(n):
        o.put(msg("a"))
    os.kill(os.getpid(), signal.SIGKILL)


def test_committed_rows_survive_sigkill(tmp_path: Path) -> None:
    p = str(tmp_path / "o.db")
    proc = multiprocessing.get_context("spawn").Process(target=_writer, args=(p, 200))
    proc.start()
    proc.join(30)
    assert proc.exitcode == -signal.SIGKILL
    o = Outbox(p)
    assert o.count == 200 and o.seq("a") == 200
    assert o.put(msg("a")).payload[:8] == b"00000201"
