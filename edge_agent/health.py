"""Communication health per device and per bus: counters the scheduler updates, turned into the
wire's DeviceHealth / BusHealth messages and into the `edge-agent status` table."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from device_profiles import wire


@dataclass
class DeviceStats:
    device: str
    polls: int = 0  # transactions attempted (each retry counts)
    ok: int = 0
    timeouts: int = 0
    crc_errors: int = 0
    exceptions: int = 0
    io_errors: int = 0
    retries: int = 0
    decode_errors: int = 0
    cycles: int = 0
    last_ok: float | None = None  # wall clock
    last_error: str = ""
    latency_sum: float = 0.0
    breaker: str = "closed"
    cycle_times: deque[float] = field(default_factory=lambda: deque(maxlen=64))  # monotonic, completed cycles
    line_errors: dict[str, int] = field(default_factory=dict)

    def count_failure(self, kind: str, detail: str) -> None:
        self.last_error = detail
        if kind == "timeout":
            self.timeouts += 1
        elif kind == "crc":
            self.crc_errors += 1
        elif kind == "exception":
            self.exceptions += 1
        else:
            self.io_errors += 1

    def count_ok(self, latency_s: float) -> None:
        self.ok += 1
        self.last_ok = time.time()
        self.latency_sum += latency_s

    def poll_rate(self, now: float | None = None, window: float = 30.0) -> float | None:
        """Completed cycles per second over the last `window` seconds."""
        now = time.monotonic() if now is None else now
        recent = [t for t in self.cycle_times if now - t <= window]
        if len(recent) < 2:
            return None
        span = recent[-1] - recent[0]
        return (len(recent) - 1) / span if span > 0 else None

    def online(self, stale_s: float) -> bool:
        """Answering now: a recent good poll AND a closed breaker. An open breaker means the slave
        failed `threshold` polls in a row and is no longer asked; half-open is only a probe, so the
        device stays offline until a poll succeeds (which closes the breaker)."""
        if self.breaker != "closed":
            return False
        return self.last_ok is not None and time.time() - self.last_ok <= stale_s

    def message(self, seq: int, stale_s: float, epoch: str = "") -> wire.DeviceHealth:
        detail = self.last_error
        if self.breaker != "closed":
            detail = f"breaker {self.breaker.replace('_', '-')}: {self.last_error}"
        if self.line_errors:
            detail = ", ".join(f"{k}={v}" for k, v in sorted(self.line_errors.items()))
        return wire.DeviceHealth(
            ts=wire.now(),
            seq=seq,
            online=self.online(stale_s),
            breaker=self.breaker,  # type: ignore[arg-type]
            polls=self.polls,
            ok=self.ok,
            timeouts=self.timeouts,
            crc_errors=self.crc_errors,
            exceptions=self.exceptions,
            retries=self.retries,
            last_ok=wire.at(self.last_ok) if self.last_ok else None,
            latency_ms=round(self.latency_sum / self.ok * 1000, 2) if self.ok else None,
            poll_rate_hz=round(r, 3) if (r := self.poll_rate()) else None,
            detail=detail[:200],
            epoch=epoch,
        )


@dataclass
class BusStats:
    name: str
    transactions: int = 0
    busy_s: float = 0.0
    since: float = field(default_factory=time.monotonic)
    budget_ok: bool = True
    _mark: tuple[float, float] = (0.0, 0.0)

    def utilisation(self) -> float:
        """Busy fraction since the last call (or since start)."""
        now = time.monotonic()
        t0, b0 = self._mark if self._mark != (0.0, 0.0) else (self.since, 0.0)
        self._mark = (now, self.busy_s)
        return min(1.0, (self.busy_s - b0) / (now - t0)) if now > t0 else 0.0

    def message(self) -> wire.BusHealth:
        return wire.BusHealth(
            name=self.name,
            utilisation=round(self.utilisation(), 4),
            transactions=self.transactions,
            budget_ok=self.budget_ok,
        )
