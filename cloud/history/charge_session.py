"""`charge_session` (charger_port tags + `reason`): what each charge session was, for the estate page's
session curves and the dashboards' "sessions flagged" panel. Pure (no I/O, no clock).

The cloud runs the same session bookkeeping as the edge (`device_profiles.charge_session`) on the
telemetry it stores — start, phases, energy, peak temperature, the temperature the port's model
explains — but the verdict is the edge's: an `abnormal_charge` event flags the port's session
(the gateway judges on every poll; the cloud sees report-by-exception). Points:
- one when a session is flagged (`ended: false`), so a panel shows it while it is still charging;
- one when a session ends (`ended: true`), flagged or not.
Fields: duration_s, energy_kwh, peak_temp_c, peak_excess_c (°C above what the model explains),
cc_s (time at constant current), flagged, severe, ended; tag `reason` ("none" when not flagged).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cloud.history.session_resume import parse_session, resume_port, session_row
from cloud.history.stamp import ms
from cloud.tsdb.lineproto import Series, TsPoint
from device_profiles.charge_session import ChargeWatch, Session

MEASUREMENT = "charge_session"
FROM = "charger_port"  # a session point carries its port's charger_port tags
KEEP_ENDED = 4  # ended sessions kept per port for the pages


@dataclass(frozen=True, slots=True)
class SessionView:
    """A session as the pages show it (copied out of the tracker, safe to read in another thread)."""

    site: str
    device: str
    port: int
    start: float
    end: float | None
    phase: str
    energy_kwh: float
    peak_c: float
    peak_excess_c: float
    flagged: str
    severe: bool
    curve: tuple[tuple[float, float, float, float], ...]  # t, temperature, explained, current


@dataclass
class _Device:
    watch: ChargeWatch
    ended: dict[int, list[Session]] = field(default_factory=dict)


SeriesFor = Callable[[str, str, int, str], Series]  # site, device, port, reason → series


class ChargeSessions:
    """One `ChargeWatch` per charger, fed the stored telemetry in edge time."""

    def __init__(self, series_for: SeriesFor) -> None:
        self.series_for = series_for
        self.devices: dict[tuple[str, str], _Device] = {}
        self._lock = threading.Lock()  # the history thread writes, the web pages read
        # Sessions to save for a replica that takes the charger over (cloud/history/session_resume.py):
        # (site, device, port) → row. `urgent` once one started, ended or was flagged (saved at the
        # next history step); the rest (a bucket's bookkeeping) with the periodic save.
        self.dirty: dict[tuple[str, str, int], dict[str, Any]] = {}
        self.urgent = False
        self._open: dict[tuple[str, str, int], float] = {}  # start of each port's open session
        self._upto: dict[tuple[str, str], float] = {}  # a resumed charger: readings up to this are known
        self._last: dict[tuple[str, str], float] = {}  # each charger's newest reading (edge time)

    def telemetry(self, site: str, device: str, profile: Any, values: Mapping[str, Any], ts: float) -> list[TsPoint]:
        with self._lock:
            d = self.devices.get((site, device))
            if d is None:
                w = ChargeWatch.for_profile(profile, keep_curves=True, keep_ended=64, judge=False)
                d = self.devices[(site, device)] = _Device(w)
            w = d.watch
            if w.closed_at is not None and ts < w.closed_at - w.s.bucket_s:
                return []  # backfill older than what was judged: history, not a session
            if self._upto and (site, device) in self._upto:
                if ts <= self._upto[(site, device)]:
                    return []  # the previous owner's last readings, delivered again: in the resumed state
                del self._upto[(site, device)]
            closed = w.closed_at
            w.observe(values, ts)
            self._last[(site, device)] = ts
            out = []
            while w.ended:
                ses = w.ended.popleft()
                kept = d.ended.setdefault(ses.port, [])
                kept.append(ses)
                del kept[:-KEEP_ENDED]
                out.append(self._point(site, device, ses, ended=True))
                if ses.port in w.ports:
                    self.dirty[(site, device, ses.port)] = session_row(w, ses.port, ses, ts)
                    self._open.pop((site, device, ses.port), None)
                    self.urgent = True
            if w.closed_at != closed:  # a bucket closed: sessions may have started; bookkeeping moved
                for n, p in w.ports.items():
                    if p.session is not None:
                        key = (site, device, n)
                        self.dirty[key] = session_row(w, n, p.session, ts)
                        if self._open.get(key) != p.session.start:
                            self._open[key] = p.session.start
                            self.urgent = True
            return out

    def flag(self, site: str, device: str, port: int, reason: str, severe: bool, ts: float) -> list[TsPoint]:
        """The edge's `abnormal_charge` event: flag the port's session (the first reason stays)."""
        with self._lock:
            d = self.devices.get((site, device))
            ses = d.watch.session(port) if d is not None and port in d.watch.ports else None
            if ses is None:
                return []
            first = not ses.flagged
            ses.flagged = ses.flagged or reason
            ses.severe = ses.severe or severe
            ses.warned_at = ses.warned_at if ses.warned_at is not None else ts
            if first and d is not None:
                self.dirty[(site, device, port)] = session_row(d.watch, port, ses, self._last.get((site, device), ts))
                self.urgent = True
            return [self._point(site, device, ses, ended=False, at=ts)] if first else []

    def take_dirty(self, urgent_only: bool) -> dict[tuple[str, str, int], dict[str, Any]]:
        """The rows to save now: all if something urgent happened or `urgent_only` is False."""
        with self._lock:
            if urgent_only and not self.urgent:
                return {}
            rows, self.dirty, self.urgent = self.dirty, {}, False
            return rows

    def restore(self, site: str, device: str, profile: Any, port: int, data: dict[str, Any],
                reemit_after: float) -> TsPoint | bool | None:
        """A port's session as a previous owner saved it. An open one replaces what this tracker holds
        for the port; an ended one is only noted, and its `ended` point is given back if it ended
        after `reemit_after` (the previous owner may have died before it reached the store: the
        same series and timestamp overwrite, so a second write changes nothing). False: the row no
        longer fits (port gone, malformed)."""
        ses = parse_session(port, data)
        with self._lock:
            d = self.devices.get((site, device))
            if d is None:
                w = ChargeWatch.for_profile(profile, keep_curves=True, keep_ended=64, judge=False)
                d = self.devices[(site, device)] = _Device(w)
            if ses is None or port not in d.watch.ports:
                return False
            if ses.end is not None:
                cur = d.watch.ports[port].session
                if cur is not None and cur.start <= ses.start:
                    d.watch.ports[port].session = None  # ended meanwhile, on the previous owner
                self._open.pop((site, device, port), None)
                return self._point(site, device, ses, ended=True) if ses.end >= reemit_after else None
            if not resume_port(d.watch, port, ses, data):
                return False
            self._open[(site, device, port)] = ses.start
            self._upto[(site, device)] = max(self._upto.get((site, device), 0.0), float(data["at"]))
            return None

    def _point(self, site: str, device: str, ses: Session, ended: bool, at: float | None = None) -> TsPoint:
        end = ses.end if ses.end is not None else (at if at is not None else ses.start)
        fields: dict[str, Any] = {
            "duration_s": float(end - ses.start),
            "energy_kwh": float(round(ses.energy_kwh, 4)),
            "peak_temp_c": float(round(ses.peak_c, 2)),
            "peak_excess_c": float(round(ses.peak_excess_c, 2)),
            "cc_s": float(ses.cc_s),
            "flagged": bool(ses.flagged),
            "severe": bool(ses.severe),
            "ended": ended,
        }
        return TsPoint(self.series_for(site, device, ses.port, ses.flagged or "none"), fields, ms(end))

    def view(self, site: str) -> list[SessionView]:
        """Each port's current session, else its last one, of every charger of `site`."""
        out: list[SessionView] = []
        with self._lock:
            for (s, dev), d in sorted(self.devices.items()):
                if s != site:
                    continue
                for n in sorted(d.watch.ports):
                    ses = d.watch.session(n)
                    if ses is None and d.ended.get(n):
                        ses = d.ended[n][-1]
                    if ses is not None:
                        out.append(_view(site, dev, ses))
        return out


def _view(site: str, device: str, ses: Session) -> SessionView:
    return SessionView(site, device, ses.port, ses.start, ses.end, ses.phase, ses.energy_kwh, ses.peak_c,
                       ses.peak_excess_c, ses.flagged, ses.severe, tuple(ses.curve))
