"""Which telemetry goes on the safety lane: a message with a reading that crossed an alarm limit. Pure.

Why. Events overtake a telemetry backlog (their own lane, docs/wire.md), telemetry did not: after a
cluster takeover the surviving replica reads the dead one's backlog, thousands of readings, before
it reaches the one that raises "Charging port overheating" (4-6 s on bench/cluster.py, against a
2 s target). The edge knows its profile's alarm rules — the cloud's defaults — so it can tell which
readings the alarm engine must see at once: those that move a rule's point across its raise or its
clear limit. There are a few per incident, so the safety lane stays small; the message keeps its
payload and seq and is sent on `…/<device>/urgent` instead of `…/<device>/telemetry`.

What crosses. Per threshold or state rule of the point, a value either calls for the alarm (the
rule's raise condition: at or past `raise`, or matching a state rule's `value`) or not, and either
lets an active alarm clear (at or past `clear`) or not; the lines are drawn by
device_profiles/limits.py, the engine's own functions. A value crosses when, against the point's
previously *sent* value (the cloud sees only what is sent), it starts or stops calling for the alarm
(a hold starts or ends) or reaches the clear level (the alarm may clear). Leaving the clear level
into the hysteresis band changes nothing in the engine and is not urgent. A point's first value
crosses only when it calls for an alarm.

A site's overrides of a threshold rule's `raise`/`clear` live in the cloud (`alarm_overrides`); the
cloud sends each gateway those of its devices (`limits`, docs/wire.md). They are judged as extra
rules beside the profile's, not instead: a crossing of either is urgent, so limits that are stale or
never arrived cost a reading its head start at worst, never its alarm.

Not judged here: rate-of-rise rules (the engine keeps the window), composite and offline rules
(made of other rules, or of silence), points that emit events (their changes travel as events
already).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from device_profiles import wire
from device_profiles.limits import Scalar, clear_condition, raise_condition
from device_profiles.model import AlarmKind, AlarmRule, Profile, split_point_id

_JUDGED = (AlarmKind.THRESHOLD, AlarmKind.STATE)
Side = tuple[bool | None, bool | None]  # (raise condition, clear condition); None: the value says nothing


def side(rule: AlarmRule, value: Scalar) -> Side:
    """Where `value` lies for `rule`: does it call for the alarm, does it let the alarm clear."""
    return raise_condition(rule, value), clear_condition(rule, value)


def crosses(before: Side, after: Side) -> bool:
    """Does a point's move from `before` (its last sent value) to `after` matter to the alarm engine
    at once? It starts or stops calling for the alarm, or reaches the clear level."""
    return after[0] != before[0] or (after[1] is True and before[1] is not True)


@dataclass
class Limits:
    """The limits of one device's profile and where its points' last sent values lie."""

    by_point: dict[tuple[str | None, str], tuple[AlarmRule, ...]]
    skip: frozenset[str] = frozenset()  # point ids whose changes are events already
    last: dict[str, tuple[Side, ...]] = field(default_factory=dict)
    _rules: dict[str, tuple[AlarmRule, ...]] = field(default_factory=dict)

    @classmethod
    def for_profile(cls, profile: Profile, skip: frozenset[str] = frozenset(),
                    overrides: Sequence[wire.LimitOverride] = ()) -> Limits:
        """`overrides`: the site's limits for this device (wire `limits`), judged beside the profile's."""
        by: dict[tuple[str | None, str], list[AlarmRule]] = {}
        for r in (*profile.alarms, *overridden(profile, overrides)):
            if r.kind in _JUDGED and r.point:
                by.setdefault((r.block, r.point), []).append(r)
        return cls({k: tuple(v) for k, v in by.items()}, skip)

    def rules(self, pid: str) -> tuple[AlarmRule, ...]:
        rs = self._rules.get(pid)
        if rs is None:
            block, _, key = split_point_id(pid)
            rs = () if pid in self.skip else self.by_point.get((block, key), ())
            self._rules[pid] = rs
        return rs

    def crossed(self, values: Mapping[str, Scalar]) -> bool:
        """Fold in the values of a message about to be sent; True if one of them crossed a limit."""
        out = False
        for pid, v in values.items():
            rs = self.rules(pid)
            if not rs:
                continue
            now = tuple(side(r, v) for r in rs)
            before = self.last.get(pid)
            self.last[pid] = now
            if before is None:  # its first value: urgent only if it calls for an alarm
                out = out or any(a[0] is True for a in now)
            elif any(crosses(b, a) for b, a in zip(before, now, strict=True)):
                out = True
        return out


def overridden(profile: Profile, overrides: Sequence[wire.LimitOverride]) -> list[AlarmRule]:
    """The profile's threshold rules with the site's `raise`/`clear`. What does not fit is left out (a
    rule the profile lacks or that is no threshold, limits on the wrong side of each other, a repeat of
    the profile's own): the message comes from the broker, and the profile's limits stand regardless."""
    rules = {r.key: r for r in profile.alarms if r.kind is AlarmKind.THRESHOLD and r.point}
    out: list[AlarmRule] = []
    for o in overrides:
        r = rules.get(o.rule)
        if r is None or (o.raise_at, o.clear_at) == (r.raise_at, r.clear_at):
            continue
        try:
            out.append(AlarmRule.model_validate({**r.model_dump(), "raise_at": o.raise_at, "clear_at": o.clear_at}))
        except ValueError:
            continue
    return out
