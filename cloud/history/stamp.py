"""Timestamps that never go backwards within one series.

Snapshots are written at "now" by the history thread while transitions carry the time they happened
(engine clock, receive time). A transition stamped a few ms before a snapshot that was written just
ahead of it would lose to the snapshot in every "last value" panel; so a point is never stamped at or
before the last point of its series: it moves to 1 ms after it.
"""

from __future__ import annotations


class Monotonic:
    """Last written millisecond per series key."""

    def __init__(self) -> None:
        self._last: dict[object, int] = {}

    def stamp(self, key: object, ts_ms: int) -> int:
        last = self._last.get(key)
        if last is not None and ts_ms <= last:
            ts_ms = last + 1
        self._last[key] = ts_ms
        return ts_ms

    def forget(self, key: object) -> None:
        self._last.pop(key, None)


def ms(ts: float) -> int:
    return round(ts * 1000)
