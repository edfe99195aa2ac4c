"""The hand-over from ingest to the alarm engine: the safety path.

Ingest puts every accepted message (validated, identity-checked, de-duplicated) here *before* and
independently of storage, so alarms stay fast while the time-series store lags or is down.
`put` must never block the ingester: implementations enqueue and return.
"""

from __future__ import annotations

from typing import Protocol

import msgspec

from device_profiles import wire


class SafetyMessage(msgspec.Struct, frozen=True, gc=False):
    """One accepted message on its way to the alarm engine (a msgspec struct: made once per ingested
    message, ~10x cheaper to build than a frozen dataclass; holds no cycles, so not GC-tracked)."""

    site: str
    gateway: str
    device: str | None  # None for gateway-level kinds (status, gateway health)
    kind: wire.Kind
    payload: wire.Payload
    received: float  # time.time() when the ingester got it (for latency figures)
    # Set when the message's `ts` was outside the time policy and rebased to `received`: the
    # gateway's clock minus the cloud's, as that message showed it (cloud/ingest/timepolicy.py).
    clock_skew: float | None = None


class SafetySink(Protocol):
    def put(self, msg: SafetyMessage) -> None:
        """Accept one message without blocking."""
