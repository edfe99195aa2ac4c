"""The store's own guarantee, without the engine: concurrent writers (threads here; replicas in
production) cannot create a second active alarm for one key, and a cleared key can be raised again.
Every test runs on SQLite and on a real PostgreSQL (`db_url`)."""

from __future__ import annotations

import threading

from cloud.alarms.store import Alarm, AlarmStore


def mk(instance: str = "3") -> Alarm:
    return Alarm(
        id=0,
        site="s",
        gateway="g",
        device="d",
        rule="smoke",
        instance=instance,
        kind="state",
        severity="critical",
        name="Smoke",
        name_zh="烟感",
        sprinkler=False,
        active=True,
        acked=False,
        raised_at=1.0,
    )


def test_concurrent_raises_make_one_active_alarm(db_url: str) -> None:
    stores = [AlarmStore(db_url) for _ in range(4)]  # four "processes" on one database
    created: list[bool] = []
    lock = threading.Lock()
    barrier = threading.Barrier(40)

    def worker(i: int) -> None:
        barrier.wait()
        _, new = stores[i % 4].raise_alarm(mk(), 1.0)
        with lock:
            created.append(new)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert created.count(True) == 1
    [a] = stores[0].list_alarms()
    assert a.occurrences == 40
    assert stores[1].clear(a.id, 2.0)
    assert not stores[2].clear(a.id, 3.0)  # already cleared
    b, new = stores[3].raise_alarm(mk(), 4.0)
    assert new and b.id != a.id
    assert [x["action"] for x in stores[0].audit_of(a.id)] == ["raised", "cleared"]
    for s in stores:
        s.close()


def test_first_ack_wins_and_is_audited(db_url: str) -> None:
    st = AlarmStore(db_url)
    a, _ = st.raise_alarm(mk(), 1.0)
    assert st.ack(a.id, "v1", "link", 2.0)
    assert not st.ack(a.id, "v2", "api", 3.0)
    got = st.get(a.id)
    assert got and got.acked_by == "v1" and got.acked_via == "link"
    assert [(x["action"], x["who"], x["channel"]) for x in st.audit_of(a.id)] == [
        ("raised", "system", "engine"),
        ("acknowledged", "v1", "link"),
        ("ack-repeat", "v2", "api"),
    ]
    st.close()


def test_every_field_round_trips(db_url: str) -> None:
    """Types PostgreSQL is strict about: float epoch seconds, booleans, long texts, JSON in text."""
    st = AlarmStore(db_url)
    a = mk()
    a.raised_at = 1_800_000_000.123456
    a.value = {"t": 71.5, "ok": False}
    a.detail = {"reason": "x" * 500, "nested": [1, 2]}
    a.labels = {"shelter": "北区"}
    a.suppressed = "inspection window: " + "annual NFPA 25 main drain and flow switch test " * 3
    a.sprinkler = True
    got, new = st.raise_alarm(a, a.raised_at)
    assert new
    back = st.get(got.id)
    assert back is not None
    assert back.raised_at == 1_800_000_000.123456 and back.value == {"t": 71.5, "ok": False}
    assert back.detail == a.detail and back.labels == a.labels and back.suppressed == a.suppressed
    assert back.sprinkler is True and back.active is True and back.acked is False
    wid = st.add_window("s", 1.5, 2.5, "test", "me")
    assert st.list_windows("s") == [{"id": wid, "site": "s", "start": 1.5, "end": 2.5, "reason": "test", "by": "me"}]
    st.close()


def test_tracks_upsert_and_delete(db_url: str) -> None:
    st = AlarmStore(db_url)
    st.save_track("s/g/d/r/", 10.5)
    st.save_track("s/g/d/r/", 12.25)  # a second writer (replica) restarting the same timer
    st.save_track("s/g/d/q/1", 3.0)
    assert st.load_tracks() == {"s/g/d/r/": 12.25, "s/g/d/q/1": 3.0}
    st.save_track("s/g/d/r/", None)
    st.save_track("s/g/d/none/", None)  # deleting a timer that does not exist is fine
    assert st.load_tracks() == {"s/g/d/q/1": 3.0}
    # the engine's batch: starts, restarts and stops in one transaction
    st.save_tracks({"s/g/d/q/1": None, "s/g/d/a/": 1.0, "s/g/d/b/2": 2.0, "s/g/d/none/": None})
    st.save_tracks({"s/g/d/a/": 1.5})
    st.save_tracks({})
    assert st.load_tracks() == {"s/g/d/a/": 1.5, "s/g/d/b/2": 2.0}
    st.close()


def test_last_seen_only_moves_forward(db_url: str) -> None:
    """Two replicas flush their last-seen times in any order; the newest always wins."""
    a, b = AlarmStore(db_url), AlarmStore(db_url)
    a.save_seen({("s", "g", ""): 100.0, ("s", "g", "d1"): 90.5})
    b.save_seen({("s", "g", ""): 80.0, ("s", "g", "d1"): 95.25, ("s", "g2", ""): 7.0})
    assert a.load_seen() == {("s", "g", ""): 100.0, ("s", "g", "d1"): 95.25, ("s", "g2", ""): 7.0}
    a.save_seen({})
    many = {("s", "g", f"d{i}"): float(i) for i in range(1200)}  # more than one batch
    b.save_seen(many)
    got = a.load_seen()
    assert len(got) == 1202 and got[("s", "g", "d1")] == 95.25 and got[("s", "g", "d1199")] == 1199.0
    a.close()
    b.close()
