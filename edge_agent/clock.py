"""The gateway's clock against the cloud's, from the time beacon (`sw/v1/time`, docs/wire.md). Pure.

MQTT carries no time, and a gateway without a battery-backed clock or with broken NTP stamps its
messages wrongly; the cloud copes (its time policy), but the installer has to know. The cloud
publishes its clock every few seconds; each beacon gives one sample: our clock at arrival minus the
beacon's `ts`. That is the skew plus the delivery delay (never negative), so the smallest sample of
the last `window_s` seconds is the best estimate and a slow delivery cannot make a good clock look
wrong. Samples age out, so a corrected clock (NTP step) shows within `window_s`.
"""

from __future__ import annotations

import threading
from collections import deque


class ClockSkew:
    def __init__(self, window_s: float = 60.0, max_samples: int = 64) -> None:
        self.window_s = window_s
        self._samples: deque[tuple[float, float]] = deque(maxlen=max_samples)  # (monotonic, offset)
        self._lock = threading.Lock()  # samples come from the MQTT thread, reads from the agent's
        self.beacons = 0

    def sample(self, local_wall: float, beacon_ts: float, mono: float) -> None:
        """One beacon: our wall clock at arrival, the beacon's `ts` (both Unix seconds)."""
        with self._lock:
            self._samples.append((mono, local_wall - beacon_ts))
            self.beacons += 1

    def skew(self, mono: float | None = None) -> float | None:
        """Our clock minus the cloud's, in seconds, or None when no recent beacon was heard."""
        import time

        mono = time.monotonic() if mono is None else mono
        with self._lock:
            recent = [off for t, off in self._samples if mono - t <= self.window_s]
        return min(recent) if recent else None
