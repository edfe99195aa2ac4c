"""Acceptance: the store stopped for 60 s and restarted — nothing lost, nothing duplicated, and the
safety path kept delivering during the outage. Also: a replayed backlog is stored once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from cloud.site_config import load_site
from simulators.fleet import FleetConfig, FleetModel, publish_fleet
from tests.integration.ingest_support import (
    DEMO_SITE,
    SIM_START,
    Publisher,
    expected_points,
    running_ingester,
    vm_points,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NOT_TELEMETRY = '{__name__!~"device_health.*|gateway_health.*"}'


def _has_seq(topic: str) -> bool:
    return topic.count("/") == 5  # device-level topics: telemetry, event, health


def _check_store(vm, sent, site) -> None:
    expected = expected_points(sent, site)
    export = vm.export(NOT_TELEMETRY)
    samples = sum(len(s["timestamps"]) for s in export)
    got = vm_points(export)
    want = {(f"{m}_{f}", "", tags, ts): v for (m, f, tags, ts), v in expected.items()}
    assert set(got) == set(want), (len(set(want) - set(got)), len(set(got) - set(want)))
    assert samples == len(want), f"{samples - len(want)} duplicated samples"
    for k, v in want.items():
        if not isinstance(v, str):
            assert got[k] == pytest.approx(float(v)), k


def test_store_down_60s_nothing_lost_safety_keeps_flowing(tmp_path: Path, mosquitto, victoriametrics) -> None:
    site = load_site(DEMO_SITE)
    url = f"influx2://127.0.0.1:{victoriametrics.port}?bucket=sw&org=sw"
    cfg = FleetConfig(
        broker=mosquitto.url,
        site_file=str(DEMO_SITE),
        rate=0,
        duration=None,
        ticks=200,
        tick_s=2.0,
        sim_start=SIM_START,
        client_prefix="gw-outage",
    )
    model = FleetModel(cfg)
    sent: list[tuple[str, bytes]] = []
    with running_ingester(tmp_path, mosquitto.url, url, backoff_max=2.0) as (svc, safety):
        sent += publish_fleet(cfg, record=True, model=model).sent
        wait_for(lambda: svc.stats()["received"] >= len(sent), 30, "first part received")
        assert svc.flush(30)
        written_before = svc.stats()["written"]

        victoriametrics.stop()
        outage_start = time.monotonic()
        safety_before = safety.put_count
        # 60 s of live traffic at ~40 msg/s while the store is down.
        cfg.ticks, cfg.rate, cfg.duration = 10_000, 40.0, 55.0
        res = publish_fleet(cfg, record=True, model=model)
        sent += res.sent
        wait_for(lambda: svc.stats()["received"] >= len(sent), 30, "outage traffic received")
        during = svc.stats()
        # The safety path delivered every message that arrived while storage was down...
        assert safety.put_count - safety_before == res.published
        # ...while nothing reached the store, and the batches wait on disk.
        assert during["written"] == written_before
        assert during["retries"] > 0
        assert during["pending"] > 0 and during["spool_batches"] > 0
        time.sleep(max(0.0, 60.0 - (time.monotonic() - outage_start)))

        victoriametrics.start()
        assert svc.flush(60), svc.stats()
        # Traffic after the outage is stored too, behind the backlog.
        cfg.ticks, cfg.rate, cfg.duration = model.tick + 100, 0, None
        sent += publish_fleet(cfg, record=True, model=model).sent
        wait_for(lambda: svc.stats()["received"] >= len(sent), 30, "last part received")
        assert svc.flush(60)
        assert svc.stats()["dead_letters"] == {}
    _check_store(victoriametrics, sent, site)


def test_replayed_backlog_is_stored_once(tmp_path: Path, mosquitto, victoriametrics) -> None:
    """The edge sends live data first and backfills behind it; then (e.g. after losing its PUBACKs)
    it sends the whole backlog again, also to a restarted ingester. Every reading is stored once."""
    site = load_site(DEMO_SITE)
    url = f"influx2://127.0.0.1:{victoriametrics.port}?bucket=sw&org=sw"
    model = FleetModel(FleetConfig(site_file=str(DEMO_SITE), ticks=300, tick_s=2.0, sim_start=SIM_START))
    msgs = [(t, p) for t, p, _ in model.messages()]
    backlog, live = msgs[: len(msgs) // 2], msgs[len(msgs) // 2 :]

    def send(batch: list[tuple[str, bytes]]) -> None:
        pub = Publisher(mosquitto.port, "gw-replay")
        for t, p in batch:
            pub.send(t, p)
        pub.close()

    with running_ingester(tmp_path, mosquitto.url, url) as (svc, _):
        send(live)  # live first
        send(backlog)  # then the backlog, out of order w.r.t. sequence numbers
        send(backlog[::3])  # and part of it again
        total = len(live) + len(backlog) + len(backlog[::3])
        wait_for(lambda: svc.stats()["received"] >= total, 30, "everything received")
        assert svc.flush(30)
        st = svc.stats()
        assert st["duplicates"] == sum(1 for t, _ in backlog[::3] if _has_seq(t))
        assert st["missing_seqs"] == 0  # the gap the live data opened was filled by the backfill
        assert st["seq_gaps"] == 0  # and the `sequence_gaps` metric is back to 0
    # A restarted ingester (same state DB) still recognises the whole history as replays.
    with running_ingester(tmp_path, mosquitto.url, url, site_file=None) as (svc, _):
        send(msgs)
        wait_for(lambda: svc.stats()["received"] >= len(msgs), 30, "replay received")
        assert svc.flush(30)
        st = svc.stats()
        # Every device message is a replay; only gateway-level messages (status, gateway health)
        # carry no sequence number and pass again. (The broker may also redeliver a message the
        # first ingester had not acknowledged yet: at-least-once, hence >=.)
        assert st["duplicates"] >= sum(1 for t, _ in msgs if _has_seq(t))
        assert st["accepted"] == st["received"] - st["duplicates"]
        assert st["by_kind"].keys() <= {"status", "gateway-health"}
    _check_store(victoriametrics, msgs, site)


def test_safety_does_not_wait_on_a_hung_store(tmp_path: Path, mosquitto) -> None:
    """A store that accepts connections but never answers (worst case) must not slow the safety
    path: messages reach the safety sink while the writer is stuck in its request."""
    import socket

    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(16)
    port = hung.getsockname()[1]
    try:
        with running_ingester(tmp_path, mosquitto.url, f"influx1://127.0.0.1:{port}/db") as (svc, safety):
            model = FleetModel(FleetConfig(site_file=str(DEMO_SITE), ticks=50, sim_start=SIM_START))
            msgs = [(t, p) for t, p, _ in model.messages()]
            t0 = time.monotonic()
            pub = Publisher(mosquitto.port, "gw-hung2")
            for t, p in msgs:
                pub.send(t, p)
            pub.close()
            wait_for(lambda: safety.put_count >= len(msgs), 10, "safety path")
            assert time.monotonic() - t0 < 10
            assert svc.stats()["written"] == 0
    finally:
        hung.close()
