"""Energy charged today per port, from the ports' cumulative meters.

The registry keeps only the latest reading, so the API records the first reading it sees each
local day (estates are in China: UTC+8 by default) and reports the difference. Before the API has
seen a port today the figure starts at 0 — it undercounts, never overcounts.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from cloud.auth.models import EnergyBaseline


class EnergyToday:
    def __init__(self, db: sessionmaker[Session], utc_offset_h: float = 8.0) -> None:
        self.db = db
        self.tz = timezone(timedelta(hours=utc_offset_h))
        self._cache: dict[tuple[str, str, int, str], float] = {}
        self._lock = threading.Lock()

    def day(self, now: datetime | None = None) -> str:
        return (now or datetime.now(self.tz)).astimezone(self.tz).date().isoformat()

    def today(self, site: str, device: str, port: int, kwh: float, now: datetime | None = None) -> float:
        key = (site, device, port, self.day(now))
        with self._lock:
            base = self._cache.get(key)
            if base is None or kwh < base:
                base = self._baseline(key, kwh)
                self._cache[key] = base
        return round(max(0.0, kwh - base), 3)

    def _baseline(self, key: tuple[str, str, int, str], kwh: float) -> float:
        site, device, port, day = key
        with self.db.begin() as s:
            row = s.scalar(select(EnergyBaseline).where(
                EnergyBaseline.site == site, EnergyBaseline.device == device, EnergyBaseline.port == port,
                EnergyBaseline.day == day))
            if row is None:
                try:
                    with s.begin_nested():
                        s.add(EnergyBaseline(site=site, device=device, port=port, day=day, kwh=kwh))
                except IntegrityError:
                    return kwh
                return kwh
            if kwh < row.kwh:
                row.kwh = kwh
            return row.kwh
