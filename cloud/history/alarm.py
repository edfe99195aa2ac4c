"""`alarm` (site, device, rule, severity, instance; active, acknowledged): one point on every
transition the engine reports (raise, acknowledge, clear or resolve) and, for every active alarm, a
repeat each snapshot period so the "active now" panels find it in every bucket. Pure.

A gateway-level alarm (`gateway_offline`) has no device; its `device` tag is the gateway id, so two
gateways' alarms stay two series (the panels group by device, rule, severity and instance).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from cloud.history.stamp import Monotonic, ms
from cloud.tsdb.lineproto import Series, TsPoint

MEASUREMENT = "alarm"


class AlarmLike(Protocol):
    """What is read of `cloud.alarms.store.Alarm`."""

    id: int
    site: str
    gateway: str
    device: str
    rule: str
    instance: str
    severity: str
    active: bool
    acked: bool


def series_of(a: AlarmLike) -> Series:
    return Series.make(
        MEASUREMENT,
        {
            "site": a.site,
            "device": a.device or a.gateway,
            "rule": a.rule,
            "severity": a.severity,
            "instance": a.instance,
        },
    )


@dataclass(slots=True)
class _Active:
    series: Series
    acked: bool
    next_at: float


class AlarmTracker:
    def __init__(self, period_s: float) -> None:
        self.period_s = period_s
        self.active: dict[int, _Active] = {}
        self._stamp = Monotonic()

    def _point(self, s: Series, active: bool, acked: bool, ts: float) -> TsPoint:
        return TsPoint(s, {"active": active, "acknowledged": acked}, self._stamp.stamp(s.key, ms(ts)))

    def change(self, a: AlarmLike, now: float) -> TsPoint:
        """The point for a transition of `a` at `now` (its state is already the new one)."""
        s = series_of(a)
        if a.active:
            self.active[a.id] = _Active(s, a.acked, now + self.period_s)
        else:
            self.active.pop(a.id, None)
        return self._point(s, a.active, a.acked, now)

    def known(self, a: AlarmLike, now: float) -> None:
        """An alarm already active when history starts (restored from the store): repeat it from now."""
        if a.active and a.id not in self.active:
            self.active[a.id] = _Active(series_of(a), a.acked, now)

    def due(self, now: float) -> list[TsPoint]:
        out = []
        for e in self.active.values():
            if e.next_at <= now:
                e.next_at = now + self.period_s
                out.append(self._point(e.series, True, e.acked, now))
        return out
