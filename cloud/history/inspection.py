"""`inspection` (site; active): true when a site's inspection window opens, false when it closes. Pure.

Windows may be added ahead of time, back-dated, or overlap. Per site, the points wanted are the
boundaries of the union of its windows that have already happened (a point is not written before its
time, so "last value" is never a future one). If a later window merges two intervals whose boundary
was already written, that point is written again at the same timestamp with the right value: InfluxDB
(and the SQLite sink) keep the newer value of a series at one timestamp.
"""

from __future__ import annotations

from cloud.tsdb.lineproto import Series, TsPoint

MEASUREMENT = "inspection"


def union(windows: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Merged [start, end) intervals; empty or inverted windows dropped."""
    out: list[tuple[float, float]] = []
    for s, e in sorted(w for w in windows if w[1] > w[0]):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def active_at(intervals: list[tuple[float, float]], t: float) -> bool:
    return any(s <= t < e for s, e in intervals)


class InspectionTracker:
    def __init__(self) -> None:
        self.windows: dict[str, list[tuple[float, float]]] = {}
        self.written: dict[str, dict[int, bool]] = {}  # site → ms → value written
        self._series: dict[str, Series] = {}

    def add(self, site: str, start: float, end: float) -> None:
        self.windows.setdefault(site, []).append((start, end))

    def end(self, site: str, start: float, was_end: float, end: float) -> None:
        """A window ended early (a manager ended it over the API): it now closes at `end`."""
        wins = self.windows.setdefault(site, [])
        if (start, was_end) in wins:
            wins.remove((start, was_end))
        wins.append((start, end))

    def due(self, now: float) -> list[TsPoint]:
        out: list[TsPoint] = []
        for site, wins in self.windows.items():
            iv = union(wins)
            want: dict[int, bool] = {}
            for s, e in iv:
                if s <= now:
                    want[round(s * 1000)] = True
                if e <= now:
                    want[round(e * 1000)] = False
            done = self.written.setdefault(site, {})
            for t_ms in done:  # a boundary written earlier that a merge has moved inside a window
                want.setdefault(t_ms, active_at(iv, t_ms / 1000))
            ser = self._series.get(site)
            if ser is None:
                ser = self._series[site] = Series.make(MEASUREMENT, {"site": site})
            for t_ms, v in sorted(want.items()):
                if done.get(t_ms) is not v:
                    done[t_ms] = v
                    out.append(TsPoint(ser, {"active": v}, t_ms))
        return out

    def prune(self, before: float) -> None:
        """Forget windows (and their written points) that ended before `before`: bounded memory."""
        for site, wins in self.windows.items():
            keep = [w for w in wins if w[1] >= before]
            self.windows[site] = keep
            cut = round(before * 1000)
            self.written[site] = {t: v for t, v in self.written.get(site, {}).items() if t >= cut}
