"""Local interlocks: rules from the profile (thresholds overridable per site) → write actions. Pure.

The edge must cut a charger port at its cut-off temperature, or the cabinet on smoke, whether the
cloud is reachable or not. A rule fires once when its condition starts to hold; if the write fails
it fires again on the next poll; while the condition keeps holding it re-asserts the write every
`rearm_s` (someone may have switched the port back on), and re-arms when the condition clears.

Every action carries its `trip`: one id per episode of the condition holding (from the reading that
crossed the cut-off until a reading below it). Retries and re-asserts of one episode share it, so
the cloud tells "the edge cut this port again because it is still hot" (same trip: one alarm) from
"the port was switched back on and overheated again" (new trip: a new alarm, pushed again).
"""

from __future__ import annotations

import operator
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from device_profiles.model import Interlock, Profile, point_id

Value = bool | int | float | str

_OPS: dict[str, Callable[[Any, Any], Any]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}


@dataclass(frozen=True, slots=True)
class Rule:
    key: str
    block: str | None
    point: str
    op: str
    threshold: Value
    command: str
    value: bool | int | None
    reason: str


@dataclass(frozen=True, slots=True)
class Action:
    rule: str
    command: str
    index: int | None
    value: bool | int | None
    point: str
    reading: Value
    threshold: Value
    reason: str
    trip: str = ""  # one id per episode of the condition holding (retries and re-asserts share it)

    @property
    def slot(self) -> tuple[str, int | None]:
        return (self.rule, self.index)


def rules_for(profile: Profile, overrides: dict[str, tuple[Value | None, bool]] | None = None) -> list[Rule]:
    """Profile interlocks with per-site overrides {key: (threshold or None, enabled)}."""
    out: list[Rule] = []
    for il in profile.interlocks:
        thr: Value = il.when.value
        if overrides and il.key in overrides:
            value, enabled = overrides[il.key]
            if not enabled:
                continue
            if value is not None:
                thr = value
        out.append(_rule(il, thr))
    return out


def _rule(il: Interlock, thr: Value) -> Rule:
    return Rule(il.key, il.block, il.when.point, il.when.op, thr, il.command, il.value, il.reason or il.name)


def holds(op: str, reading: Value, threshold: Value) -> bool:
    try:
        return _OPS[op](reading, threshold)
    except TypeError:
        return False


@dataclass
class Interlocks:
    rules: list[Rule]
    instances: dict[str, range]
    rearm_s: float = 30.0
    done: dict[tuple[str, int | None], float] = field(default_factory=dict)  # slot → time written
    pending: set[tuple[str, int | None]] = field(default_factory=set)
    trips: dict[tuple[str, int | None], str] = field(default_factory=dict)  # slot → current episode

    @classmethod
    def for_profile(cls, profile: Profile, overrides: dict[str, tuple[Value | None, bool]] | None = None) -> Interlocks:
        rules = rules_for(profile, overrides)
        inst = {r.block: profile.instance_range(r.block) for r in rules if r.block}
        return cls(rules, inst)

    def evaluate(self, values: dict[str, Value], now: float) -> list[Action]:
        """Actions to take now, given freshly read values (absent points are not judged)."""
        acts: list[Action] = []
        for r in self.rules:
            indexes = list(self.instances[r.block]) if r.block else [None]
            for i in indexes:
                pid = point_id(r.point, r.block, i)
                if pid not in values:
                    continue
                slot = (r.key, i)
                reading = values[pid]
                if not holds(r.op, reading, r.threshold):
                    self.done.pop(slot, None)
                    self.trips.pop(slot, None)
                    continue
                if slot in self.pending:
                    continue
                t = self.done.get(slot)
                if t is not None and now - t < self.rearm_s:
                    continue
                self.pending.add(slot)
                trip = self.trips.setdefault(slot, uuid.uuid4().hex[:16])
                acts.append(Action(r.key, r.command, i, r.value, pid, reading, r.threshold, r.reason, trip))
        return acts

    def result(self, action: Action, ok: bool, now: float) -> None:
        """The write finished: success latches the rule, failure lets the next poll try again."""
        self.pending.discard(action.slot)
        if ok:
            self.done[action.slot] = now
