"""Parking bays that fill and empty over a day, battery-powered bay sensors, radio signal.

Occupancy follows a residential day curve (full at night, emptiest early afternoon): each bay is a
two-state Markov chain whose arrival and departure rates make the expected occupied fraction equal
the curve at that hour. `speedup` runs the day clock faster than real time so a test or demo sees
a whole day in minutes; `rush_hour()` makes arrivals dominate for a while (evening return home).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field


class ParkingParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start_hour: float = Field(default=8.0, ge=0, lt=24, description="time of day at start")
    speedup: float = Field(default=1.0, gt=0, le=100000, description="simulated seconds per real second")
    dwell_h: float = Field(default=2.0, gt=0, description="time scale of occupancy changes")
    night_fraction: float = Field(default=0.9, ge=0, le=1)
    day_fraction: float = Field(default=0.25, ge=0, le=1)
    battery_v: float = Field(default=3.4, gt=0, le=5)
    battery_drain_v_per_day: float = Field(default=0.002, ge=0)
    rssi_dbm: float = Field(default=-72, ge=-120, le=0)
    rssi_jitter_db: float = Field(default=2.0, ge=0)
    occupied: list[int] = Field(default_factory=list, description="bays occupied at start")
    random_start: bool = Field(default=True, description="fill other bays from the curve at start")


def day_fraction(hour: float, night: float = 0.9, day: float = 0.25) -> float:
    """Expected occupied fraction at `hour` (0..24): peak at 02:00, trough at 14:00 (cosine)."""
    mid, amp = (night + day) / 2, (night - day) / 2
    return mid + amp * math.cos(2 * math.pi * (hour - 2.0) / 24)


@dataclass
class Bay:
    number: int
    occupied: bool = False
    sensor_fault: bool = False
    battery: float = 3.4
    rssi: float = -72.0
    base_rssi: float = -72.0
    changed_at_s: float = 0.0


@dataclass
class ParkingModel:
    n_bays: int
    params: ParkingParams = field(default_factory=ParkingParams)
    seed: int = 0
    first: int = 1
    bays: dict[int, Bay] = field(default_factory=dict)
    elapsed_s: float = 0.0  # simulated seconds since start
    rush_until_s: float = -1.0
    changes: list[int] = field(default_factory=list)  # bays that changed since last drained

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        p = self.params
        f = day_fraction(p.start_hour, p.night_fraction, p.day_fraction)
        for n in range(self.first, self.first + self.n_bays):
            base = p.rssi_dbm + self.rng.uniform(-8, 8)
            occ = n in p.occupied or (p.random_start and self.rng.random() < f)
            self.bays[n] = Bay(n, occ, False, p.battery_v - self.rng.uniform(0, 0.3), base, base)

    @property
    def hour(self) -> float:
        return (self.params.start_hour + self.elapsed_s / 3600) % 24

    @property
    def occupied_count(self) -> int:
        return sum(1 for b in self.bays.values() if b.occupied)

    def bay(self, number: int) -> Bay:
        try:
            return self.bays[number]
        except KeyError:
            raise KeyError(f"no bay {number}; bays are {min(self.bays)}..{max(self.bays)}") from None

    def set_occupied(self, number: int, on: bool) -> None:
        b = self.bay(number)
        if b.occupied != on:
            b.occupied, b.changed_at_s = on, self.elapsed_s
            self.changes.append(number)

    def rush_hour(self, duration_s: float = 1800.0) -> None:
        """Arrivals dominate for `duration_s` simulated seconds."""
        self.rush_until_s = self.elapsed_s + duration_s

    def drain_changes(self) -> list[int]:
        out, self.changes = self.changes, []
        return out

    def step(self, dt: float) -> None:
        """Advance `dt` real seconds (× speedup simulated)."""
        if dt <= 0:
            return
        p, rng = self.params, self.rng
        sim_dt = dt * p.speedup
        self.elapsed_s += sim_dt
        f = day_fraction(self.hour, p.night_fraction, p.day_fraction)
        tau = p.dwell_h * 3600
        lam_in, lam_out = f / tau, (1 - f) / tau
        if self.elapsed_s < self.rush_until_s:
            lam_in, lam_out = 12 / tau, 0.2 / tau
        p_in, p_out = 1 - math.exp(-lam_in * sim_dt), 1 - math.exp(-lam_out * sim_dt)
        drain = p.battery_drain_v_per_day * sim_dt / 86400
        for b in self.bays.values():
            if not b.sensor_fault and rng.random() < (p_out if b.occupied else p_in):
                self.set_occupied(b.number, not b.occupied)
            b.battery = max(0.0, b.battery - drain)
            b.rssi = b.base_rssi + rng.gauss(0, p.rssi_jitter_db)
