"""The storage writer: batches, order, on-disk keeping while the store is down, restart safety.

The store here is a real SqliteSink behind a switch that makes it fail like an unreachable server
(the integration tests stop real InfluxDB/VictoriaMetrics servers for the same purpose)."""

from __future__ import annotations

import time
from pathlib import Path

from cloud.tsdb.base import SinkError
from cloud.tsdb.lineproto import Series, TsPoint
from cloud.tsdb.spool import StorageWriter, decode_batch, encode_batch
from cloud.tsdb.sqlite import SqliteSink


class SwitchableSink:
    name = "switchable"

    def __init__(self, path: Path) -> None:
        self.inner = SqliteSink(path)
        self.down = False
        self.refuse = False
        self.batches: list[list[int]] = []  # ts of each written batch, to check order

    def write(self, points: list[TsPoint]) -> None:
        if self.down:
            raise SinkError("connection refused")
        if self.refuse:
            raise SinkError("HTTP 400 field type conflict", retry=False)
        self.inner.write(points)
        self.batches.append([p.ts_ms for p in points])

    def close(self) -> None:
        pass


S = Series.make("m", {"device": "d1"})


def pts(a: int, b: int) -> list[TsPoint]:
    return [TsPoint(S, {"v": float(i)}, i) for i in range(a, b)]


def test_batch_codec_round_trip() -> None:
    p = [TsPoint(Series.make("m", {"a": "1", "b": "x y"}), {"v": 1.5, "s": "on", "b": True}, 5)]
    assert decode_batch(encode_batch(p)) == p


def test_outage_keeps_order_and_loses_nothing(tmp_path: Path) -> None:
    sink = SwitchableSink(tmp_path / "ts.db")
    w = StorageWriter(
        sink, tmp_path / "spool", batch_points=100, batch_interval=0.05, backoff_initial=0.05, backoff_max=0.2
    ).start()
    w.put(pts(0, 250))
    assert w.flush(5)
    sink.down = True
    for i in range(250, 1000, 50):
        w.put(pts(i, i + 50))
        time.sleep(0.01)
    time.sleep(0.3)
    assert w.stats.retries > 0 and w.pending == 750 and len(w.spool) > 0
    sink.down = False
    assert w.flush(10)
    w.stop()
    order = [ts for b in sink.batches for ts in b]
    assert order == list(range(1000))  # every point once, in order
    assert len(sink.inner.query()) == 1000


def test_spooled_batches_survive_a_restart(tmp_path: Path) -> None:
    sink = SwitchableSink(tmp_path / "ts.db")
    sink.down = True
    w = StorageWriter(sink, tmp_path / "spool", batch_points=100, batch_interval=0.05).start()
    w.put(pts(0, 300))
    time.sleep(0.3)
    w.stop()
    assert len(list((tmp_path / "spool").glob("*.batch"))) >= 1
    sink.down = False
    w2 = StorageWriter(sink, tmp_path / "spool", batch_points=100, batch_interval=0.05).start()
    assert w2.pending == 300
    assert w2.flush(5)
    w2.stop()
    assert [ts for b in sink.batches for ts in b] == list(range(300))


def test_refused_batch_is_set_aside_not_retried_forever(tmp_path: Path) -> None:
    sink = SwitchableSink(tmp_path / "ts.db")
    sink.refuse = True
    w = StorageWriter(sink, tmp_path / "spool", batch_points=10, batch_interval=0.05).start()
    w.put(pts(0, 10))
    time.sleep(0.3)
    sink.refuse = False
    w.put(pts(10, 20))
    assert w.flush(5)
    w.stop()
    assert w.stats.rejected == 10
    assert len(list((tmp_path / "spool" / "rejected").glob("*.batch"))) == 1
    assert [ts for b in sink.batches for ts in b] == list(range(10, 20))


def test_sqlite_sink_is_idempotent(tmp_path: Path) -> None:
    s = SqliteSink(tmp_path / "ts.db")
    s.write(pts(0, 10))
    s.write(pts(0, 10))
    assert len(s.query("m")) == 10


def test_sqlite_sink_moves_the_first_layout_over(tmp_path: Path) -> None:
    """A ts.db written before the series table (one `points` table, tags JSON in every row) is
    moved to the current layout when opened; nothing is lost and a rewrite stays idempotent."""
    import sqlite3

    db = tmp_path / "ts.db"
    con = sqlite3.connect(db)
    con.execute(
        "CREATE TABLE points (measurement TEXT NOT NULL, tags TEXT NOT NULL, field TEXT NOT NULL,"
        " ts INTEGER NOT NULL, value, PRIMARY KEY (measurement, tags, field, ts)) WITHOUT ROWID"
    )
    rows = [(i, float(i)) for i in range(5)]
    con.executemany("INSERT INTO points VALUES ('m', '{\"device\":\"d1\"}', 'v', ?, ?)", rows)
    con.commit()
    con.close()
    s = SqliteSink(db)
    assert sorted((r["ts"], r["value"], r["tags"]["device"]) for r in s.query("m")) == [
        (i, float(i), "d1") for i in range(5)
    ]
    s.write(pts(3, 8))  # same series (its tags JSON written the same way): 3 and 4 overwrite
    assert sorted(r["ts"] for r in s.query("m")) == list(range(8))
