"""Pure rule logic: no I/O, no clock reads. The engine feeds values and times in and persists what
comes out, so every edge case (hysteresis, retard, restart mid-duration) is tested here fast.

A rule instance (device × rule × port/bay) is tracked by `Track`: `pending_since` is when the
raise condition started to hold (absolute epoch seconds, so it survives a restart), `active`
whether the alarm is raised. Clearing is immediate once the clear condition holds: a duration
delays the alarm, never the all-clear.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from device_profiles.limits import Scalar, clear_condition, num, raise_condition
from device_profiles.model import AlarmKind, AlarmRule, Profile


class Action(Enum):
    NONE = 0
    RAISE = 1
    CLEAR = 2


@dataclass(slots=True)
class Track:
    pending_since: float | None = None
    active: bool = False
    samples: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=64))

    def due_at(self, rule: AlarmRule) -> float | None:
        if self.pending_since is None or self.active:
            return None
        return self.pending_since + rule.for_s


RATE_WINDOW_S = 60.0
RATE_MIN_SPAN_S = 5.0


def rate_per_min(samples: deque[tuple[float, float]], now: float) -> float | None:
    """Rise per minute over the last minute of samples (oldest sample at least 5 s back): the
    newest value above the **lowest** of the window, over the window's span.

    From the lowest, not the oldest: a port that cooled in the last minute (a charge ended, a port
    cut off and switched back on) and then runs away rises from where it cooled to. Judged from the
    window's oldest, still-hot sample, that rise first had to climb back past it: in the e2e bench a
    port that ran away again 46-56 s after its last cut-off raised 5-13 s late (issue 11). Over the
    whole span, not the time since the low: a wobble of a few tenths at the bottom of a cooling curve
    is no faster rise than before. A port that only rose gives the same figure as before.

    The edge reports by exception (docs/profiles.md: a value is sent when it moved at least its
    deadband), so a quiet point's last sample still holds when the next one comes: the newest sample
    older than the window is kept as the window's baseline, at the window's start. Without it a port
    quiet for a minute that starts running away had no earlier sample, and the rule waited for 5 s
    of the rise itself before it could judge. Measured from the window's start the baseline can only
    understate the rise (by at most the deadband per minute), so it raises nothing a held sample
    would not justify."""
    base: tuple[float, float] | None = None
    while samples and now - samples[0][0] > RATE_WINDOW_S:
        base = samples.popleft()
    if base is not None and samples:
        samples.appendleft((now - RATE_WINDOW_S, base[1]))
    if len(samples) < 2:
        if base is not None:
            samples.appendleft(base)  # alone: kept as it was, for the next sample
        return None
    t0, t1, v1 = samples[0][0], samples[-1][0], samples[-1][1]
    if t1 - t0 < RATE_MIN_SPAN_S:
        return None
    low = min(v for _, v in samples)
    return (v1 - low) / (t1 - t0) * 60.0


def step(rule: AlarmRule, tr: Track, value: Scalar, now: float) -> Action:
    """Feed one value taken at time `now` (the sample's own time, cloud/ordering.py); mutates `tr`
    and says whether to raise or clear.

    With a duration, RAISE comes later from `due(...)`, called by the engine's timer."""
    if rule.kind is AlarmKind.RATE_OF_RISE:
        v = num(value)
        if v is None or rule.rate is None:
            return Action.NONE
        if tr.samples and now < tr.samples[-1][0]:
            now = tr.samples[-1][0]  # a clock stepped back: keep the window in time order
        tr.samples.append((now, v))
        r = rate_per_min(tr.samples, now)
        if r is None:
            return Action.NONE
        if not tr.active and r > rule.rate:
            return _hold(rule, tr, now)
        if not tr.active and r <= rule.rate:
            tr.pending_since = None
        if tr.active and r <= rule.rate / 2:
            tr.active, tr.pending_since = False, None
            return Action.CLEAR
        return Action.NONE
    if tr.active:
        if clear_condition(rule, value):
            tr.active, tr.pending_since = False, None
            return Action.CLEAR
        return Action.NONE
    cond = raise_condition(rule, value)
    if cond is None:
        return Action.NONE
    if not cond:
        tr.pending_since = None
        return Action.NONE
    return _hold(rule, tr, now)


def backfill(rule: AlarmRule, tr: Track, value: Scalar, t: float) -> Action:
    """A reading of a rate-of-rise point older (by seq) than one already judged, taken at `t`: a
    reading that another lane overtook (urgent telemetry on the safety lane, docs/wire.md, ahead of
    the same rise's routine readings on the main one). It is history for the point's state, but
    still evidence of how fast the point rose: it goes into the window in time order, and the rate
    at the window's newest sample is judged again. It may raise, never clear (clearing is the newest
    reading's word). Other kinds, and a reading outside the window, change nothing."""
    if rule.kind is not AlarmKind.RATE_OF_RISE or rule.rate is None or not tr.samples:
        return Action.NONE
    v = num(value)
    newest = tr.samples[-1][0]
    if v is None or t > newest or newest - t > RATE_WINDOW_S or len(tr.samples) == tr.samples.maxlen:
        return Action.NONE
    i = len(tr.samples)
    while i and tr.samples[i - 1][0] > t:
        i -= 1
    tr.samples.insert(i, (t, v))
    if tr.active:
        return Action.NONE
    r = rate_per_min(tr.samples, newest)
    if r is None or r <= rule.rate:
        return Action.NONE
    return _hold(rule, tr, newest)


def _hold(rule: AlarmRule, tr: Track, now: float) -> Action:
    if tr.pending_since is None:
        tr.pending_since = now
    if now - tr.pending_since >= rule.for_s:
        tr.active = True
        return Action.RAISE
    return Action.NONE


def due(rule: AlarmRule, tr: Track, now: float) -> Action:
    """Timer check: a condition held for its full duration raises even without a new message."""
    d = tr.due_at(rule)
    if d is not None and now >= d:
        tr.active = True
        return Action.RAISE
    return Action.NONE


@dataclass(slots=True)
class CommWindow:
    """Poll counters at the start of the current measuring window (device health, since agent start)."""

    polls: int
    errors: int


def comm_step(
    win: CommWindow | None,
    polls: int,
    errors: int,
    active: bool,
    raise_ratio: float,
    clear_ratio: float,
    min_polls: int,
) -> tuple[CommWindow | None, Action, float | None]:
    """Failed-poll ratio over at least `min_polls` polls → (new window, action, ratio).

    Counters going backwards mean the agent restarted: start a new window, judge nothing."""
    if win is None or polls < win.polls or errors < win.errors:
        return CommWindow(polls, errors), Action.NONE, None
    dp = polls - win.polls
    if dp < min_polls:
        return win, Action.NONE, None
    ratio = (errors - win.errors) / dp
    new = CommWindow(polls, errors)
    if not active and ratio >= raise_ratio:
        return new, Action.RAISE, ratio
    if active and ratio <= clear_ratio:
        return new, Action.CLEAR, ratio
    return new, Action.NONE, ratio


def apply_overrides(rule: AlarmRule, changes: dict[str, Any]) -> AlarmRule:
    """A site/device override: a validated copy of the rule (hysteresis is re-checked)."""
    if not changes:
        return rule
    data = rule.model_dump(by_alias=False)
    data.update(changes)
    return AlarmRule.model_validate(data)


def value_rules(profile: Profile) -> dict[str, list[AlarmRule]]:
    """Rules driven by a point's value, indexed by the point key (the engine's hot path)."""
    out: dict[str, list[AlarmRule]] = {}
    for r in profile.alarms:
        if r.kind in (AlarmKind.THRESHOLD, AlarmKind.STATE, AlarmKind.RATE_OF_RISE) and r.point:
            out.setdefault(r.point, []).append(r)
    return out
