"""Which pending push intents the next owner re-sends (cloud/notify/outbox.py), written from the rules
in docs/alarms.md ("Pushes across crashes and takeovers")."""

from __future__ import annotations

from typing import Any

from cloud.alarms.store import Alarm
from cloud.notify.config import Person
from cloud.notify.outbox import RESEND, chains, route_text, triage

NOW = 1_800_000_000.0


def alarm(**kw: Any) -> Alarm:
    base: dict[str, Any] = dict(id=7, site="s", gateway="g", device="d", rule="waterflow", instance="",
                                kind="state", severity="critical", name="W", name_zh="W", sprinkler=True,
                                active=True, acked=False, raised_at=NOW - 10, tier=1, next_notify_at=NOW + 290)
    base.update(kw)
    return Alarm(**base)


def intent(i: int, person: str = "vol", route: int = 0, purpose: str = "alarm") -> dict[str, Any]:
    return {"id": i, "person": person, "route": route, "purpose": purpose, "ts": NOW - 10}


def test_a_pending_push_of_an_active_unacknowledged_alarm_is_sent_again() -> None:
    assert triage([intent(1), intent(2, "li")], alarm(), NOW) == {1: RESEND, 2: RESEND}


def test_nothing_is_sent_for_an_alarm_that_is_over_acknowledged_or_silenced() -> None:
    assert triage([intent(1)], None, NOW) == {1: "alarm no longer active"}
    assert triage([intent(1)], alarm(active=False), NOW) == {1: "alarm no longer active"}
    assert triage([intent(1)], alarm(acked=True, next_notify_at=None), NOW) == {1: "acknowledged meanwhile"}
    assert triage([intent(1)], alarm(silenced_until=NOW + 60), NOW) == {1: "silenced meanwhile"}
    assert triage([intent(1)], alarm(silenced_until=NOW - 1), NOW) == {1: RESEND}  # the silence is over


def test_an_intent_older_than_the_escalations_next_step_gives_way_to_it() -> None:
    assert triage([intent(1)], alarm(next_notify_at=NOW), NOW) == {
        1: "the escalation's next step is due and notifies instead"}
    assert triage([intent(1)], alarm(next_notify_at=NOW + 0.5), NOW) == {1: RESEND}


def test_only_the_newest_step_per_person_and_route_goes_again() -> None:
    rows = [intent(3, route=0, purpose="reminder"), intent(1, route=0), intent(2, route=1)]
    assert triage(rows, alarm(), NOW) == {1: "superseded by a later step", 2: RESEND, 3: RESEND}


def test_routes_are_a_chain_per_channel_with_delivery_all_else_one_and_their_text_is_redacted() -> None:
    chans = [{"url": "wecombot://SECRETKEY"}, {"url": "mailto://u:pw@smtp.example.com?to=a@b.c"}]
    fallback = Person.model_validate({"id": "a", "name": "A", "channels": chans})
    every = Person.model_validate({"id": "b", "name": "B", "channels": chans, "delivery": "all"})
    assert [len(c) for c in chains(fallback)] == [2]
    assert [len(c) for c in chains(every)] == [1, 1]
    text = route_text(chains(fallback)[0])
    assert text == "wecombot://*** | mailto://smtp.example.com/…"
    assert "SECRETKEY" not in text and "pw" not in text
