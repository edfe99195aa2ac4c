"""The normal variety a charging cabinet lives with, none of which is a fault: packs of every size
and age on slow and fast chargers, hot sunny afternoons and cold nights, ports warming each other
(the cabinet model does that), and sensors that glitch. Pure, seeded; the live simulator uses it
when a site asks for `variety` or a `weather`, the early-warning bench draws thousands of sessions
from it.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Literal, get_args

from simulators.physics.battery import Pack

WeatherKind = Literal["steady", "summer_afternoon", "cold_night", "mild_day"]
WEATHERS: tuple[str, ...] = get_args(WeatherKind)


def random_pack(rng: random.Random, soc: float, temp: float, fast_share: float = 0.15) -> Pack:
    """Any e-bike's battery and charger: 0.3-1.5 kWh, new to worn out, a slow brick (0.9-2 A AC)
    or a fast one (2.4-3 A), tapering from 75-92 % charge; ridden in warm or stood in the cold."""
    fast = rng.random() < fast_share
    return Pack(
        capacity_kwh=rng.uniform(0.3, 1.5),
        soc=soc,
        charger_a=rng.uniform(2.4, 3.0) if fast else rng.uniform(0.9, 2.0),
        taper_from=rng.uniform(0.75, 0.92),
        age=rng.random() ** 1.5,
        temp=temp + rng.uniform(-2.0, 6.0),
        ripple=0.01 if rng.random() < 0.2 else 0.0,
    )


@dataclass
class Weather:
    """Outside temperature and sunshine on the cabinet over time (seconds since it began).

    `summer_afternoon`: a sunny shelter from 13:00, 31 → 37 °C and back, the sun heating the
    cabinet and its sunny side, clouds passing. `cold_night`: 5 °C falling towards −6 °C, gusts.
    `mild_day`: 15-27 °C drifting. `steady`: `base_c`, no sun."""

    kind: WeatherKind = "steady"
    base_c: float = 24.0
    seed: int = 0
    clouds: list[tuple[float, float]] = field(default_factory=list)  # (start, end) seconds

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        if self.kind == "summer_afternoon" and not self.clouds:
            t = rng.uniform(600, 3600)
            while t < 12 * 3600:
                d = rng.uniform(300, 1500)
                self.clouds.append((t, t + d))
                t += d + rng.uniform(1200, 5400)
        self._phase = rng.uniform(0, 2 * math.pi)
        self._drift = rng.uniform(-3.0, 3.0)

    def sun(self, t: float) -> float:
        """0 (shade, night) … 1 (full sun on the cabinet)."""
        if self.kind != "summer_afternoon":
            return 0.0
        day = max(0.0, math.cos(math.pi * min(t, 7 * 3600) / (2 * 7 * 3600)))  # sets by 20:00
        cloudy = any(a <= t < b for a, b in self.clouds)
        return day * (0.25 if cloudy else 1.0)

    def outside(self, t: float) -> float:
        h = t / 3600.0
        if self.kind == "summer_afternoon":
            return self.base_c + 6.0 * math.sin(math.pi * min(h, 8.0) / 8.0) + 4.0 * self.sun(t)
        if self.kind == "cold_night":
            return self.base_c - 11.0 * (1.0 - math.exp(-h / 3.0)) + 0.6 * math.sin(h * 5.0 + self._phase)
        if self.kind == "mild_day":
            return self.base_c + self._drift * math.sin(math.pi * h / 6.0 + self._phase)
        return self.base_c

    @classmethod
    def typical(cls, kind: WeatherKind, rng: random.Random) -> Weather:
        base = {"summer_afternoon": rng.uniform(29, 32), "cold_night": rng.uniform(2, 8),
                "mild_day": rng.uniform(15, 24), "steady": 24.0}[kind]
        return cls(kind, base, rng.randrange(1 << 30))
