"""Remote configuration's cluster rules without a broker (cloud/remote_config/service.py): a rollout is
stepped only by the owner of the gateway it waits for, a step made by a replica that died before
saving it is reused (not made twice), `confirming` is answered once per version, and on a cluster a
confirmation that could not be sent is not recorded (the ingester then does not acknowledge it).
The end-to-end behaviour on a real cluster: tests/integration/test_nats_remote_config.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine

from cloud.remote_config.service import ConfigService
from cloud.remote_config.store import ConfigStore
from device_profiles import wire

SITE = "s"


def service(tmp_path: Path, owned: set[str], url: str | None = None) -> ConfigService:
    store = ConfigStore(create_engine(f"sqlite:///{tmp_path / 'state.db'}"))
    return ConfigService(store, url, {}, lambda site: ["gw1", "gw2"], owns=lambda site, gw: gw in owned, name="r1")


def test_a_rollout_is_stepped_by_the_owner_of_the_gateway_it_waits_for(tmp_path: Path) -> None:
    svc = service(tmp_path, owned={"gw2"})
    r = svc.store.create_rollout(SITE, ["gw1", "gw2"], "snapshot_s: 60", "ines", "", 300.0)
    assert svc.current_gateway(r) == "gw1" and not svc.steps(r)
    steps = [dict(s) for s in r.steps]
    steps[0].update(state="applied")
    svc.store.save_rollout(r.id, "running", "", steps)
    r2 = svc.store.rollout(r.id)
    assert r2 is not None and svc.current_gateway(r2) == "gw2" and svc.steps(r2)
    steps[1].update(state="applied")
    svc.store.save_rollout(r.id, "running", "", steps)
    r3 = svc.store.rollout(r.id)
    assert r3 is not None and svc.current_gateway(r3) == "gw2"  # all done: the last one's owner closes it


def test_a_step_made_by_a_replica_that_died_before_saving_it_is_reused(tmp_path: Path) -> None:
    svc = service(tmp_path, owned={"gw1"})
    r = svc.store.create_rollout(SITE, ["gw1"], "snapshot_s: 60", "ines", "move", 300.0)
    # the dead replica had made and sent the step's version, and died before saving the step
    made = svc.store.create_version(SITE, "gw1", "site: s\n", "d" * 64, "ines", "rollout",
                                    comment=f"rollout {r.id}: move")
    svc.rollout_step(r)
    after = svc.store.rollout(r.id)
    assert after is not None
    assert after.steps[0]["state"] == "sent" and after.steps[0]["version"] == made.version
    assert after.steps[0]["by"] == "r1"
    assert [v.version for v in svc.store.versions(SITE, "gw1")] == [made.version]  # none made twice


def test_confirming_is_answered_once_per_version(tmp_path: Path) -> None:
    svc = service(tmp_path, owned={"gw1"})  # no broker: the answer cannot go out, one broker records it
    res = wire.ConfigResult(ts=wire.now(), version=3, status="confirming", running=2, detail="connected")
    body = wire.encode(res)
    svc.handle(wire.config_topic(SITE, "gw1", wire.ConfigKind.RESULT), body)
    svc.handle(wire.config_topic(SITE, "gw1", wire.ConfigKind.RESULT), body)  # delivered again
    assert [e.who for e in svc.store.events(SITE, "gw1") if e.what == "confirmed"] == ["cloud r1"]


def test_on_a_cluster_a_confirmation_not_sent_is_not_recorded(tmp_path: Path) -> None:
    svc = service(tmp_path, owned={"gw1"}, url="nats://127.0.0.1:1")  # never started: not connected
    res = wire.ConfigResult(ts=wire.now(), version=3, status="confirming", running=2, detail="connected")
    with pytest.raises(RuntimeError, match="cannot send config-confirm"):
        svc.handle(wire.config_topic(SITE, "gw1", wire.ConfigKind.RESULT), wire.encode(res))
    assert not svc.store.has_event(SITE, "gw1", 3, "confirmed")
    # malformed or foreign answers are dropped, not raised (they would come again forever)
    svc.handle(wire.config_topic(SITE, "gw1", wire.ConfigKind.RESULT), b"{not json")
    svc.handle(wire.config_topic(SITE, "gw9", wire.ConfigKind.RESULT), wire.encode(res))
