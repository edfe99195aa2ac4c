"""The hand-over from ingest to the alarm engine: the safety path.

Ingest puts every accepted message (validated, identity-checked, de-duplicated) here *before* and
independently of storage, so alarms stay fast while the time-series store lags or is down.
`put` must never block the ingester: implementations enqueue and return.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import msgspec

from cloud.ordering import Meta
from device_profiles import wire


@dataclass(slots=True)
class Readings:
    """Telemetry of one device merged while it waited for the alarm engine (cloud/ingest/conflate.py):
    per point its newest samples, each with its own message's seq, edge ts and receive time, so the
    engine judges order, durations and rates on the readings themselves, not on when it got them.
    Handed over as the payload of a TELEMETRY SafetyMessage; never mutated after the hand-over."""

    points: dict[str, list[tuple[Meta, wire.Scalar]]]  # point id → samples, oldest first
    last: Meta  # the newest message merged (by seq order)
    seqs: list[list[int]]  # [first, last] runs of the merged messages' seq numbers
    first_received: float  # when the oldest merged message was received
    merged: int = 1  # messages merged into this one
    # The newest clock skew of a merged message the time policy rebased (SafetyMessage.clock_skew):
    # merging must not hide a wrong gateway clock from the engine (`gateway_clock`).
    clock_skew: float | None = None


class SafetyMessage(msgspec.Struct, frozen=True, gc=False):
    """One accepted message on its way to the alarm engine (a msgspec struct: made once per ingested
    message, ~10x cheaper to build than a frozen dataclass; holds no cycles, so not GC-tracked)."""

    site: str
    gateway: str
    device: str | None  # None for gateway-level kinds (status, gateway health)
    kind: wire.Kind
    payload: wire.Payload | Readings
    received: float  # time.time() when the ingester got it (the newest merged one for Readings)
    # Set when the message's `ts` was outside the time policy and rebased to `received`: the
    # gateway's clock minus the cloud's, as that message showed it (cloud/ingest/timepolicy.py).
    clock_skew: float | None = None


class SafetySink(Protocol):
    def put(self, msg: SafetyMessage) -> None:
        """Accept one message without blocking."""
