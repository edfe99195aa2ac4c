"""`parking_stay` (bay tags; dwell_s): one point per departure, at the departure time. Pure.

A stay is known only when both ends were seen: a bay's occupied false → true (arrival) and then
true → false (departure), in edge time. So:
- the first reading of a bay (after a cloud restart, or a new device) only sets its state: if it is
  occupied, the arrival time is unknown and no stay is invented when it is freed;
- snapshots and duplicates repeat the state and change nothing;
- a reading older than (or as old as) the bay's last known one is backfill of history already
  passed: it is ignored, so it can neither open nor close a stay. Stays therefore never overlap,
  and their sum never exceeds the span of the readings.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass


@dataclass(slots=True)
class _Bay:
    ts: float  # edge time of the newest reading
    occupied: bool
    since: float | None  # arrival time of the current stay, None when unknown or free


@dataclass(frozen=True, slots=True)
class Stay:
    arrived: float
    departed: float

    @property
    def dwell_s(self) -> float:
        return self.departed - self.arrived


class StayTracker:
    def __init__(self) -> None:
        self.bays: dict[Hashable, _Bay] = {}
        self.ignored_old = 0  # readings older than the bay's known state (backfill)
        # Bays that arrived or departed since the caller last took them (their state is saved so a
        # replica taking the gateway over knows the open stay's arrival: cloud/history/service.py)
        self.changed: set[Hashable] = set()

    def restore(self, bay: Hashable, ts: float, occupied: bool, since: float | None) -> bool:
        """A bay's state as a previous owner saved it; kept only if it is newer than what is known."""
        b = self.bays.get(bay)
        if b is not None and b.ts > ts:
            return False
        self.bays[bay] = _Bay(ts, occupied, since if occupied else None)
        return True

    def reading(self, bay: Hashable, ts: float, occupied: bool) -> Stay | None:
        """One `occupied` reading of `bay` at edge time `ts`; the stay it ends, if any."""
        b = self.bays.get(bay)
        if b is None:
            self.bays[bay] = _Bay(ts, occupied, None)
            return None
        if ts <= b.ts:
            if ts < b.ts:
                self.ignored_old += 1
            return None
        b.ts = ts
        if occupied == b.occupied:
            return None
        b.occupied = occupied
        self.changed.add(bay)
        if occupied:
            b.since = ts
            return None
        since, b.since = b.since, None
        return None if since is None else Stay(since, ts)
