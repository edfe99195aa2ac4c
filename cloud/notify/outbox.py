"""Pushes that outlive the process sending them: which intents the next owner re-sends (pure logic).

An escalation step writes its pushes as *intents* (notify log rows with `attempt` 0 and `state`
pending, cloud/alarms/store.py) in the same transaction as the step itself, before anything is sent;
the dispatcher settles each once its send succeeded (sent) or every channel of its chain failed
(failed). A process that dies between the two leaves intents pending. Whoever owns the alarm's
gateway next (a survivor replica at a takeover, the same machine's restarted `cloud serve`) calls
`triage` and re-sends what is still wanted through the normal dispatcher. So a push is sent exactly
once when nothing fails and at least once when something does: a push that reached the phone while
its success was not yet written goes twice. A duplicate is preferred to a silence.

What is not re-sent (settled `dropped`, the reason in the row's `error`):
- the alarm is no longer active, or was acknowledged or silenced meanwhile;
- the escalation's next step is already due: it notifies now (a reminder or the next tier), so the
  old intent is not replayed as if it were new;
- a later step intended a push to the same person and route (the older one is history);
- the person or their channel chain is no longer in the site's configuration.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cloud.alarms.store import Alarm
from cloud.notify.config import Channel, Person
from cloud.notify.dispatch import redact

RESEND = ""


def chains(person: Person) -> list[list[Channel]]:
    """A person's routes: every channel its own chain with `delivery: all`, else one fallback chain.
    An intent names its route by index into this list."""
    return [[c] for c in person.channels] if person.delivery == "all" else [list(person.channels)]


def route_text(chain: list[Channel]) -> str:
    """A chain as the log may show it (channel URLs hold secrets: redacted)."""
    return " | ".join(redact(c.url) for c in chain)


def triage(intents: Iterable[dict[str, Any]], alarm: Alarm | None, now: float) -> dict[int, str]:
    """Pending intents of one alarm → {intent id: RESEND ("") or why it is dropped}. `alarm` is the
    alarm as the shared store holds it now (None if it is gone)."""
    rows = sorted(intents, key=lambda r: r["id"])
    if alarm is None or not alarm.active:
        return {r["id"]: "alarm no longer active" for r in rows}
    if alarm.acked:
        return {r["id"]: "acknowledged meanwhile" for r in rows}
    if alarm.silenced_until is not None and now < alarm.silenced_until:
        return {r["id"]: "silenced meanwhile" for r in rows}
    if alarm.next_notify_at is not None and now >= alarm.next_notify_at:
        return {r["id"]: "the escalation's next step is due and notifies instead" for r in rows}
    newest: dict[tuple[str, int], int] = {}
    for r in rows:
        newest[(r["person"], r["route"] or 0)] = r["id"]
    return {r["id"]: RESEND if newest[(r["person"], r["route"] or 0)] == r["id"] else "superseded by a later step"
            for r in rows}
