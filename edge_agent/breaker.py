"""Per-slave circuit breaker. Pure (time is passed in).

A silent slave on RS-485 costs a full timeout (times retries) every poll, stealing the bus from
every healthy device on it. After `threshold` consecutive failures the breaker opens and the slave
is left alone for a back-off that doubles up to `max_backoff_s`; then one probe (half-open) decides.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

State = Literal["closed", "open", "half_open"]


@dataclass
class Breaker:
    threshold: int = 3
    min_backoff_s: float = 1.0
    max_backoff_s: float = 60.0
    state: State = "closed"
    failures: int = 0
    backoff_s: float = field(default=0.0)
    open_until: float = 0.0
    trips: int = 0

    def allow(self, now: float) -> bool:
        """May a transaction go to this slave now? Turns open into half-open when the wait is over."""
        if self.state == "closed":
            return True
        if self.state == "open" and now >= self.open_until:
            self.state = "half_open"
            return True
        return self.state == "half_open"

    def next_try(self, now: float) -> float:
        return now if self.state != "open" else self.open_until

    def success(self) -> None:
        self.state = "closed"
        self.failures = 0
        self.backoff_s = 0.0

    def failure(self, now: float) -> None:
        self.failures += 1
        if self.state == "half_open":
            self.backoff_s = min(self.max_backoff_s, max(self.min_backoff_s, self.backoff_s * 2))
            self._open(now)
        elif self.state == "closed" and self.failures >= self.threshold:
            self.backoff_s = self.min_backoff_s
            self._open(now)

    def _open(self, now: float) -> None:
        self.state = "open"
        self.open_until = now + self.backoff_s
        self.trips += 1
