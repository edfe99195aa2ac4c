"""A partition handed from one cluster replica to another carries its replay-check state (issue 13).

After a hand-over the next owner's consumers start from their ack floor, so it reads again what the
previous owner had handled (everything above the floor). The previous owner saved its replay-check
state only by the regular checkpoint, a second or two behind, so the last of those messages came back
as news: stored twice (harmless) and judged again by the new owner's alarm engine, whose ordering
marks of the adopted devices start afresh: old readings of a waterflow flip raised and cleared the
alarm a second time (seen in the chaos test). Two ingest services of replicas on one real SQLite
state database; no broker is needed (nothing is connected, messages are handed to the pipeline).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud.ingest.safety_queue import QueueSafetySink
from cloud.ingest.service import IngestConfig, IngestService
from cloud.site_config import load_site
from cloud.state.registry import Registry
from device_profiles import wire
from tests.integration.ingest_support import DEMO_SITE
from tests.polling import wait_until

pytestmark = pytest.mark.integration

SITE, GW, DEV = "demo-estate", "gw-shelter-a", "spk1"
TOPIC = wire.topic(SITE, GW, wire.Kind.TELEMETRY, DEV)


def replica(tmp: Path, name: str) -> IngestService:
    """The ingest part of a `cloud serve` replica on a NATS cluster (never connected here)."""
    (tmp / name).mkdir()
    cfg = IngestConfig(broker="nats://127.0.0.1:9", tsdb=f"sqlite:///{tmp}/{name}/ts.db",
                       state_db=f"sqlite:///{tmp}/state.db", spool_dir=str(tmp / name / "spool"), client_id=name,
                       tune_gc=False, time_beacon_s=None)
    svc = IngestService(cfg, safety=QueueSafetySink())
    svc.storage.start()
    svc.side_commit.start()
    return svc


def reading(seq: int) -> bytes:
    return wire.encode(wire.Telemetry(ts=wire.now(), seq=seq, values={"pipe_pressure": 4.2}, epoch="e1"))


def handle(svc: IngestService, seqs: range) -> list[str]:
    return [svc.pipeline.handle(TOPIC, reading(n), wire.now().timestamp()) for n in seqs]


def checkpoint(svc: IngestService) -> None:
    """The regular checkpoint: the replay-check state of what is durable, queued for the next save."""
    svc._want_checkpoint = True
    done: list[bool] = []
    svc.durable.after(lambda: done.append(True))
    wait_until(lambda: done, 10, "the checkpoint to be durable")


def test_the_next_owner_drops_what_the_previous_one_handled_before_the_hand_over(tmp_path: Path) -> None:
    reg = Registry(f"sqlite:///{tmp_path}/state.db")
    reg.register_site(load_site(DEMO_SITE))
    reg.close()
    a, b, c = replica(tmp_path, "a"), replica(tmp_path, "b"), replica(tmp_path, "c")
    mine = lambda site, gw: gw == GW  # noqa: E731
    try:
        assert handle(a, range(1, 4)) == ["ok"] * 3
        checkpoint(a)  # seqs 1-3, written at a's next save (after the hand-over below)
        assert handle(a, range(4, 6)) == ["ok"] * 2  # handled in its last moments as the owner
        assert a.storage.flush(10)  # acknowledged: durable (the lease manager waits for that: `drained`)
        # a hands the gateway's partition over: it no longer owns it, then saves its state
        a.owns = lambda site, gw: gw != GW
        a.hand_over(mine)
        b.adopt(mine)
        assert handle(b, range(1, 6)) == ["duplicate"] * 5  # read again above the ack floor: replays
        assert handle(b, range(6, 9)) == ["ok"] * 3
        checkpoint(b)
        b._persist()
        # a's own save comes late with its older snapshot (seqs 1-3): it must not overwrite b's
        a._persist()
        c.adopt(mine)
        assert handle(c, range(1, 9)) == ["duplicate"] * 8
        assert handle(c, range(9, 10)) == ["ok"]
    finally:
        for svc in (a, b, c):
            svc.storage.stop(1)
            svc.side_commit.stop()
            svc.parked_store.close()
            svc.dead.close()
            svc.registry.close()
