"""`gateway_status` (site, gateway; online): from each retained status message (birth says online,
the broker-published last will says offline), and again every snapshot period while known, because
the panels take the last value per 10-minute bucket (dashboards/schema.py). Pure."""

from __future__ import annotations

from cloud.history.stamp import Monotonic, ms
from cloud.tsdb.lineproto import Series, TsPoint

MEASUREMENT = "gateway_status"


class GatewayStatusTracker:
    def __init__(self, period_s: float) -> None:
        self.period_s = period_s
        self.online: dict[tuple[str, str], bool] = {}
        self._series: dict[tuple[str, str], Series] = {}
        self._next: dict[tuple[str, str], float] = {}
        self._stamp = Monotonic()

    def _point(self, key: tuple[str, str], ts: float) -> TsPoint:
        s = self._series.get(key)
        if s is None:
            s = self._series[key] = Series.make(MEASUREMENT, {"site": key[0], "gateway": key[1]})
        self._next[key] = ts + self.period_s
        return TsPoint(s, {"online": self.online[key]}, self._stamp.stamp(key, ms(ts)))

    def status(self, site: str, gateway: str, online: bool, ts: float) -> TsPoint:
        """A status message received at `ts` (receive time: a last will carries the time the
        gateway connected, not the time it was lost)."""
        key = (site, gateway)
        self.online[key] = online
        return self._point(key, ts)

    def due(self, now: float) -> list[TsPoint]:
        """The repeat of every known gateway whose last point is a period old."""
        return [self._point(k, now) for k, t in list(self._next.items()) if t <= now]
