"""Pure escalation arithmetic: which tiers are due for an unacknowledged alarm, and when next.

The engine stores the result (`tier`, `next_notify_at`, absolute times) so a restart resumes.
"""

from __future__ import annotations

from cloud.notify.config import EscalationPolicy

SEVERITY_RANK = {"critical": 4, "major": 3, "minor": 2, "warning": 1}


def wants(policy: EscalationPolicy, severity: str) -> bool:
    return SEVERITY_RANK.get(severity, 0) >= SEVERITY_RANK[policy.min_severity]


def plan(
    policy: EscalationPolicy, raised_at: float, notified_tier: int, now: float
) -> tuple[list[int], int, float]:
    """→ (tiers to notify now, new highest tier, time of the next step).

    New tiers whose `after` has passed are notified; when none is new and the last step was
    more than `repeat` ago, the tiers reached so far are reminded (the caller decides that by
    calling at `next` time). `notified_tier` 0 means nobody has been notified yet."""
    reached = [t.tier for t in policy.tiers if raised_at + t.after_s <= now]
    new = [t for t in reached if t > notified_tier]
    top = max(reached, default=notified_tier)
    top = max(top, notified_tier)
    upcoming = [raised_at + t.after_s for t in policy.tiers if t.tier > top]
    nxt = min([*upcoming, now + policy.repeat_s])
    if new:
        return sorted(set(new)), top, nxt
    return sorted({t for t in reached if t <= top}), top, nxt
