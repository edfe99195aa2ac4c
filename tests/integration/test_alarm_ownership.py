"""Two alarm engines sharing one store, as two replicas of a cluster do: each judges silence and
escalates only for the gateways it owns, takes gateways over with their state (`adopt`), and sees an
acknowledgement made on the other before it escalates. Real SQLite file, injected clock."""

from __future__ import annotations

from pathlib import Path

from cloud.alarms.config import AlarmSiteConfig
from cloud.alarms.directory import StaticDirectory
from cloud.alarms.engine import GATEWAY_RULE, AlarmEngine
from cloud.alarms.store import AlarmStore
from tests.integration.test_alarm_engine import T0, Clock


def cfg() -> AlarmSiteConfig:
    return AlarmSiteConfig.model_validate({
        "site": "demo",
        "people": [{"id": "v1", "name": "V1", "tier": 1, "channels": [{"url": "json://127.0.0.1:9/v1"}]}],
        "escalation": {"tiers": [{"tier": 1, "after": 0}], "repeat": 300, "min_severity": "minor"},
        "gateway_offline": {"silence": 45},
        "devices": [
            {"id": "riser-1", "profile": "nanfang-fsm8", "gateway": "gw-1"},
            {"id": "riser-2", "profile": "nanfang-fsm8", "gateway": "gw-2"},
        ],
    })


def test_owners_judge_their_own_gateways_and_take_over_with_state(tmp_path: Path) -> None:
    c, clock = cfg(), Clock()
    store = AlarmStore(f"sqlite:///{tmp_path / 'a.db'}")
    a = AlarmEngine(store, StaticDirectory([c]), [c], clock=clock, restart_grace_s=0)
    b = AlarmEngine(store, StaticDirectory([c]), [c], clock=clock, restart_grace_s=0)
    a.owns = lambda site, gw: gw == "gw-1"
    b.owns = lambda site, gw: gw == "gw-2"
    clock.t = T0 + 100  # both gateways silent for longer than 45 s
    a.tick()
    b.tick()
    offline = {x.gateway: x for x in store.list_alarms(active=True) if x.rule == GATEWAY_RULE}
    assert set(offline) == {"gw-1", "gw-2"}  # each raised once, by its owner (the store's key is unique)
    assert {x.gateway for x in a.active.values()} == {"gw-1"}
    # b dies; a takes gw-2 over: the alarm b raised (and its escalation schedule) comes with it
    a.adopt(lambda site, gw: gw == "gw-2")
    a.owns = lambda site, gw: True
    assert {x.gateway for x in a.active.values() if x.rule == GATEWAY_RULE} == {"gw-1", "gw-2"}
    # acknowledged on another replica's page: a does not remind anyone of it
    b.acknowledge(offline["gw-2"].id, "vol", "web")
    clock.t += 400  # past the 300 s repeat
    a.tick()
    assert store.get(offline["gw-2"].id).acked  # type: ignore[union-attr]
    adopted = next(x for x in a.active.values() if x.gateway == "gw-2")
    assert adopted.acked and adopted.next_notify_at is None
    # resolved on another replica: a's refresh drops it, so the condition can raise a new one
    b.resolve(offline["gw-1"].id, "vol", "web")
    a.refresh()
    assert {x.gateway for x in a.active.values()} == {"gw-2"}


def test_refresh_keeps_an_alarm_raised_while_it_read_the_store(tmp_path: Path) -> None:
    """The cluster's refresher reads the store's active alarms while the engine thread goes on: an
    alarm raised meanwhile is missing from that answer, and dropping it left its row active for ever
    (its clear found nothing to clear: a waterflow alarm that never cleared in bench/cluster.py)."""
    c, clock = cfg(), Clock()
    store = AlarmStore(f"sqlite:///{tmp_path / 'a.db'}")
    a = AlarmEngine(store, StaticDirectory([c]), [c], clock=clock, restart_grace_s=0)
    real = store.list_alarms

    def racing(*args: object, **kw: object) -> list[object]:
        rows = real(*args, **kw)  # type: ignore[arg-type]
        clock.t = T0 + 100
        a.tick()  # the engine raises the gateways' silence while the refresher holds the old answer
        return rows  # type: ignore[return-value]

    store.list_alarms = racing  # type: ignore[method-assignment]
    a.refresh()
    store.list_alarms = real  # type: ignore[method-assignment]
    raised = [x for x in store.list_alarms(active=True) if x.rule == GATEWAY_RULE]
    assert len(raised) == 2
    assert {x.key for x in raised} <= set(a.active), "refresh dropped alarms raised while it read the store"
