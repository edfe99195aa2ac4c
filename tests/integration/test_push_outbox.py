"""A push in flight when its sender dies is sent by whoever owns the alarm's gateway next (issue 13).

Two alarm engines as two replicas on one real PostgreSQL, each with its own dispatcher sending real
HTTP (apprise `json://`) to the phone stand-in (tests/integration/cluster_support.py `PushReceiver`,
which can hold a request unanswered). Replica A raises and starts the push; the phone holds it; A
"dies": from then on its sender never completes a send (its threads cannot be killed inside one
test process; the real `kill -9` is test_push_outbox_restart.py). Replica B takes the gateway over
(`adopt`, what a takeover runs) and must re-send, or not, as cloud/notify/outbox.py says.
Injected clock for the escalation; the sends are real.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from cloud.alarms.config import AlarmSiteConfig
from cloud.alarms.directory import StaticDirectory
from cloud.alarms.engine import AlarmEngine
from cloud.alarms.store import Alarm, AlarmStore
from cloud.notify.dispatch import AppriseSender, Dispatcher, SendError
from cloud.notify.links import AckSigner
from cloud.safety import SafetyMessage
from device_profiles import wire
from tests.integration.cluster_support import PushReceiver
from tests.integration.test_alarm_engine import T0, Clock
from tests.polling import wait_until

pytestmark = pytest.mark.integration

SITE, GW, DEV = "demo", "gw-1", "riser-1"
SECRET = "push-outbox-test-secret-0123456789"


def mine(site: str, gw: str) -> bool:
    return gw == GW


def nothing(site: str, gw: str) -> bool:
    return False


def site_cfg(rec: PushReceiver, people: tuple[str, ...] = ("vol",), dead: tuple[str, ...] = ()) -> AlarmSiteConfig:
    """`dead` people's channel is a port nobody listens on (a route that now fails for good)."""
    return AlarmSiteConfig.model_validate({
        "site": SITE, "name": "Maple Court", "name_zh": "枫林苑",
        "people": [{"id": p, "name": p, "tier": 1,
                    "channels": [{"url": "json://127.0.0.1:9/dead" if p in dead else rec.url_for(p)}]}
                   for p in people],
        "escalation": {"tiers": [{"tier": 1, "after": 0}], "repeat": 300, "min_severity": "critical",
                       "retries": 1, "retry_delay": 0.05},
        "alarm_overrides": [{"rule": "waterflow", "for": 0}],
        "gateway_offline": {"silence": 100_000},
        "devices": [{"id": DEV, "profile": "nanfang-fsm8", "gateway": GW}],
    })


class DyingSender:
    """Replica A's apprise sender. After `die()` no send of A completes any more (a send already on
    the wire fails when the phone's socket times out, and its retry blocks), as if the process were
    gone; `bury()` at the end of the test lets the blocked threads fail and exit."""

    def __init__(self) -> None:
        self.inner = AppriseSender()
        self.dead = threading.Event()
        self.buried = threading.Event()

    def warm(self, urls: list[str]) -> None:
        self.inner.warm(urls)

    def send(self, url: str, title: str, body: str) -> None:
        if self.dead.is_set():
            self.buried.wait(60)
            raise SendError("replica is dead")
        self.inner.send(url, title, body)
        if self.dead.is_set():
            raise SendError("replica died before it could record the send")


@dataclass
class Replica:
    store: AlarmStore
    engine: AlarmEngine
    disp: Dispatcher
    sender: DyingSender

    def die(self) -> None:
        self.sender.dead.set()

    def close(self) -> None:
        self.sender.buried.set()
        self.disp.close()
        self.store.close()


@pytest.fixture
def make(postgres_url: str) -> Iterator[Any]:
    made: list[Replica] = []
    clock = Clock()

    def replica(cfg: AlarmSiteConfig, owns: Any = mine) -> Replica:
        store = AlarmStore(postgres_url)
        sender = DyingSender()
        disp = Dispatcher(sender, store.log_attempt)
        engine = AlarmEngine(store, StaticDirectory([cfg]), [cfg], disp, AckSigner(SECRET), clock=clock,
                             restart_grace_s=0)
        engine.owns = owns
        made.append(Replica(store, engine, disp, sender))
        return made[-1]

    replica.clock = clock  # type: ignore[attr-defined]
    yield replica
    for r in made:
        r.close()


def flow(r: Replica, on: bool = True) -> Alarm:
    """The riser's waterflow switch closes: replica `r` raises the alarm and starts its push."""
    msg = wire.Telemetry(ts=wire.now(), seq=1, values={"waterflow": on})
    r.engine.process(SafetyMessage(SITE, GW, DEV, wire.Kind.TELEMETRY, msg, time.time()))
    r.engine.tick()
    [a] = [a for a in r.store.list_alarms(active=True) if a.rule == "waterflow"]
    return a


def held_then_dead(make: Any, cfg: AlarmSiteConfig, rec: PushReceiver, pushes: int = 1) -> tuple[Replica, Alarm]:
    """Replica A raises the alarm, its push(es) reach the phone, which holds them unanswered; A dies."""
    a = make(cfg)
    alarm = flow(a)
    wait_until(lambda: len(rec.held) == pushes, 10, "replica A's pushes to reach the phone")
    a.die()  # killed while the phone had not answered: the push is not known to have arrived
    return a, alarm


def states(store: AlarmStore, alarm_id: int) -> list[tuple[str, str]]:
    return [(i["person"], i["state"]) for i in store.intents(alarm_id)]


def test_a_push_held_when_its_replica_dies_is_sent_by_the_next_owner(make: Any) -> None:
    rec = PushReceiver(hold=1)
    try:
        a, alarm = held_then_dead(make, site_cfg(rec), rec)
        assert states(a.store, alarm.id) == [("vol", "pending")]
        b = make(site_cfg(rec), owns=nothing)
        t0 = time.time()
        b.engine.adopt(mine)  # the takeover
        b.engine.owns = mine
        [push] = wait_until(lambda: rec.got, 10, "the survivor's push")
        print(f"re-sent push at the phone {push.at - t0:.3f} s after the takeover started")
        assert "Sprinkler waterflow" in push.title and push.path == "/push/vol"
        wait_until(lambda: states(b.store, alarm.id) == [("vol", "sent")], 10, "the intent settled as sent")
        ok = [(x["purpose"], x["attempt"]) for x in b.store.attempts(alarm.id) if x["ok"]]
        assert ok == [("alarm", 1)]  # the one successful attempt: B's
        assert "push-resent" in [e["action"] for e in b.store.audit_of(alarm.id)]
        assert b.engine.counters["pushes_resent"] == 1
    finally:
        rec.stop()


def test_no_push_is_sent_twice_without_a_failure(make: Any) -> None:
    rec = PushReceiver()
    try:
        a = make(site_cfg(rec, people=("vol", "li")))
        alarm = flow(a)
        wait_until(lambda: sorted(states(a.store, alarm.id)) == [("li", "sent"), ("vol", "sent")], 10, "both sent")
        # a hand-over after the pushes went out (a replica starting takes its share back): nothing again
        b = make(site_cfg(rec, people=("vol", "li")), owns=nothing)
        b.engine.adopt(mine)
        b.disp.close()
        a.disp.close()
        assert sorted(p.path for p in rec.got) == ["/push/li", "/push/vol"]
        assert b.engine.counters["pushes_resent"] == 0
    finally:
        rec.stop()


def test_a_voluntary_hand_over_waits_for_the_push_in_flight(make: Any) -> None:
    """The giver hands the gateway back only once its pushes went out (ClusterMember's `drained`)."""
    rec = PushReceiver(hold=1)
    try:
        a = make(site_cfg(rec))
        alarm = flow(a)
        wait_until(lambda: rec.held, 10, "replica A's push to reach the phone")
        assert not a.engine.pushes_settled(mine) and a.engine.pushes_settled(nothing)
        rec.release()  # the phone drops the held request unanswered: A retries and gets through
        wait_until(lambda: a.engine.pushes_settled(mine), 15, "A's push to settle")
        assert states(a.store, alarm.id) == [("vol", "sent")]
        b = make(site_cfg(rec), owns=nothing)
        b.engine.adopt(mine)
        b.disp.close()
        assert b.engine.counters["pushes_resent"] == 0 and len(rec.got) == 1
    finally:
        rec.stop()


def test_an_alarm_acknowledged_meanwhile_is_not_pushed_again(make: Any) -> None:
    rec = PushReceiver(hold=1)
    try:
        _, alarm = held_then_dead(make, site_cfg(rec), rec)
        b = make(site_cfg(rec), owns=nothing)
        assert b.engine.acknowledge(alarm.id, "vol", "web")  # on B's page, before B owns the gateway
        b.engine.adopt(mine)
        b.disp.close()
        assert rec.got == [] and b.engine.counters["pushes_resent"] == 0
        [intent] = b.store.intents(alarm.id)
        assert (intent["state"], intent["error"]) == ("dropped", "acknowledged meanwhile")
    finally:
        rec.stop()


def test_an_old_intent_gives_way_to_the_escalations_next_step(make: Any) -> None:
    """Taken over after the reminder was due: one reminder goes, not the raise replayed as if new."""
    rec = PushReceiver(hold=1)
    try:
        _, alarm = held_then_dead(make, site_cfg(rec), rec)
        make.clock.t = T0 + 400  # the 300 s reminder is due
        b = make(site_cfg(rec), owns=nothing)
        b.engine.adopt(mine)
        b.engine.owns = mine
        b.engine.tick()
        [push] = wait_until(lambda: rec.got, 10, "the reminder")
        assert "REMINDER" in push.title
        b.disp.close()
        assert len(rec.got) == 1
        first, reminder = b.store.intents(alarm.id)
        assert first["state"] == "dropped" and "next step" in first["error"]
        assert (reminder["purpose"], reminder["state"]) == ("reminder", "sent")
    finally:
        rec.stop()


def test_a_route_that_now_fails_does_not_hold_up_the_others(make: Any) -> None:
    rec = PushReceiver(hold=2)
    try:
        _, alarm = held_then_dead(make, site_cfg(rec, people=("v1", "v2")), rec, pushes=2)
        # B's configuration: v1's channel is gone for good (a phone number changed, a bot removed)
        b = make(site_cfg(rec, people=("v1", "v2"), dead=("v1",)), owns=nothing)
        b.engine.adopt(mine)
        [push] = wait_until(lambda: rec.got, 10, "v2's push")
        assert push.path == "/push/v2"
        wait_until(lambda: sorted(states(b.store, alarm.id)) == [("v1", "failed"), ("v2", "sent")], 15,
                   "v1's push given up, v2's sent")
    finally:
        rec.stop()


def test_an_alarm_raised_by_a_replica_that_died_before_notifying_is_pushed(make: Any) -> None:
    """Killed between the alarm's commit and its escalation step: no intent, no schedule."""
    rec = PushReceiver()
    try:
        b = make(site_cfg(rec), owns=nothing)
        row = Alarm(id=0, site=SITE, gateway=GW, device=DEV, rule="waterflow", instance="", kind="state",
                    severity="critical", name="Sprinkler waterflow", name_zh="喷淋水流报警", sprinkler=True,
                    active=True, acked=False, raised_at=T0)
        alarm, created = b.store.raise_alarm(row, T0)  # all the dead replica left behind
        assert created and alarm.next_notify_at is None
        b.engine.adopt(mine)
        [push] = wait_until(lambda: rec.got, 10, "the push")
        assert "Sprinkler waterflow" in push.title
        wait_until(lambda: states(b.store, alarm.id) == [("vol", "sent")], 10, "the intent settled")
        assert b.store.get(alarm.id).tier == 1
    finally:
        rec.stop()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_notify_log_from_before_intents_gets_their_columns(tmp_path: Any, backend: str, request: Any) -> None:
    """A database written by an older `cloud serve` (create_all adds tables, never columns)."""
    from sqlalchemy import create_engine, inspect, text

    url = f"sqlite:///{tmp_path / 'old.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    old = create_engine(url)
    with old.begin() as c:  # notify_log as it was, with one attempt in it
        c.execute(text("CREATE TABLE notify_log (id INTEGER PRIMARY KEY, alarm_id INTEGER NOT NULL, ts FLOAT NOT "
                       "NULL, person VARCHAR(64) NOT NULL, channel TEXT NOT NULL, purpose VARCHAR(16) NOT NULL, "
                       "attempt INTEGER NOT NULL, ok BOOLEAN NOT NULL, error TEXT NOT NULL)"))
        c.execute(text("INSERT INTO notify_log VALUES (1, 5, 1.0, 'vol', 'json://h/…', 'alarm', 1, true, '')"))
    old.dispose()
    stores = [AlarmStore(url), AlarmStore(url)]  # two replicas starting on it
    try:
        insp = inspect(stores[0].engine)
        assert {"state", "route"} <= {c["name"] for c in insp.get_columns("notify_log")}
        assert "ix_notify_log_pending" in {i["name"] for i in insp.get_indexes("notify_log")}
        assert [(x["attempt"], x["ok"], x["state"]) for x in stores[1].attempts(5)] == [(1, True, None)]
        assert stores[1].intents(5) == []
    finally:
        for s in stores:
            s.close()


def test_the_takeovers_later_step_leaves_the_survivors_own_pushes_alone(make: Any) -> None:
    """A cluster's takeover loads the rate-of-rise windows once the safety lanes are read
    (`adopt_rate_windows`). The survivor's own push of an alarm raised meanwhile, still unanswered,
    must not be taken for one the previous owner left and sent again: it was, while the re-sending
    ran in that step (tests/integration/test_cluster_chaos.py, 2026-12-02)."""
    rec = PushReceiver(hold=1)
    try:
        b = make(site_cfg(rec), owns=nothing)
        b.engine.adopt(mine, rate_windows=False)  # the takeover's first step
        b.engine.owns = mine
        alarm = flow(b)  # the outage's event, raised by the survivor; the phone holds its push
        wait_until(lambda: rec.held, 10, "the survivor's push at the phone")
        b.engine.adopt_rate_windows(mine)  # the later step
        time.sleep(1.0)  # a second push would be on its way now
        assert states(b.store, alarm.id) == [("vol", "pending")]
        assert len(rec.held) + len(rec.got) == 1, "the survivor's own push sent twice"
    finally:
        rec.release()
        rec.stop()
