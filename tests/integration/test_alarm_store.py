"""The store's own guarantee, without the engine: concurrent writers (threads here; replicas in
production) cannot create a second active alarm for one key, and a cleared key can be raised again."""

from __future__ import annotations

import threading
from pathlib import Path

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


def test_concurrent_raises_make_one_active_alarm(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    stores = [AlarmStore(url) for _ in range(4)]  # four "processes" on one database
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


def test_first_ack_wins_and_is_audited(tmp_path: Path) -> None:
    st = AlarmStore(f"sqlite:///{tmp_path / 'a.db'}")
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
