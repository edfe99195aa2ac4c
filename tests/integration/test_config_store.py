"""The remote configuration store on SQLite and a real PostgreSQL: version numbers, desired and
running state, one history line per step, rollouts, and two replicas numbering at once."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import create_engine

from cloud.remote_config.store import ConfigStore

pytestmark = pytest.mark.integration


def test_versions_state_history_and_rollouts(db_url: str) -> None:
    s = ConfigStore(create_engine(db_url))
    imported = s.create_version("s1", "gw1", "site: s1\n", "a" * 64, "gateway gw1", "import", desire=False)
    assert imported.version == 1 and s.state("s1", "gw1") is None, "imported, not desired"
    v2 = s.create_version("s1", "gw1", "site: s1 # 2\n", "b" * 64, "installer:wang", "edit", "first edit")
    assert v2.version == 2 and s.state("s1", "gw1").desired == 2  # type: ignore[union-attr]
    assert s.create_version("s1", "gw2", "x", "c" * 64, "w", "edit").version == 1, "numbered per gateway"
    assert [v.version for v in s.versions("s1", "gw1")] == [2, 1]
    assert s.by_digest("s1", "gw1", "b" * 64) == v2
    s.mark_sent("s1", "gw1", 2)
    s.mark_sent("s1", "gw1", 2)
    assert s.record_result("s1", "gw1", 2, "applying", 0, "rebuilding", {}, [], ts=10.0)
    assert not s.record_result("s1", "gw1", 2, "applying", 0, "rebuilding", {}, [], ts=10.0), "a repeat is one line"
    assert s.record_result("s1", "gw1", 2, "applied", 2, "ok", {"chg1": "ok"}, [], ts=12.0)
    # `applying` again, late (left in the outbox by the uplink a trial replaced): not the state
    assert not s.record_result("s1", "gw1", 2, "applying", 0, "rebuilding", {}, [], ts=10.0)
    st = s.state("s1", "gw1")
    assert st is not None and (st.running_version, st.last_status, st.last_devices) == (2, "applied", {"chg1": "ok"})
    assert s.record_result("s1", "gw1", 1, "refused", 0, "late answer to v1", {}, [], ts=20.0), "a history line"
    assert s.state("s1", "gw1").last_status == "applied"  # type: ignore[union-attr]
    s.record_running("s1", "gw1", 2, "b" * 64, "site: s1\n", "shelterwatch-edge 0.1.0")
    s.record_running("s1", "gw1", 2, "b" * 64, None, "shelterwatch-edge 0.1.0")
    whats = [e.what for e in s.events("s1", "gw1")]
    assert whats == ["running", "refused", "applied", "applying", "sent", "desired", "edit", "import"], whats
    r = s.create_rollout("s1", ["gw1", "gw2"], "snapshot_s: 50", "manager:li", "c", 60, 5, 10)
    assert r.steps[0] == {"gateway": "gw1", "state": "pending", "version": None, "detail": "", "at": None}
    s.save_rollout(r.id, "stopped", "stopped at gw1", [{**r.steps[0], "state": "rolled_back"}, r.steps[1]])
    back = s.rollout(r.id)
    assert back is not None and back.state == "stopped" and back.steps[0]["state"] == "rolled_back"
    assert [x.id for x in s.rollouts("s1", state="stopped")] == [r.id]


def test_two_replicas_never_reuse_a_version_number(db_url: str) -> None:
    if db_url.startswith("sqlite"):
        pytest.skip("one SQLite file is one process's; replicas share PostgreSQL")
    stores = [ConfigStore(create_engine(db_url)) for _ in range(2)]
    got: list[int] = []
    lock = threading.Lock()

    def make(s: ConfigStore) -> None:
        for _ in range(10):
            v = s.create_version("s1", "gw1", "x", "d" * 64, "w", "edit")
            with lock:
                got.append(v.version)

    ts = [threading.Thread(target=make, args=(s,)) for s in stores]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert sorted(got) == list(range(1, 21))
