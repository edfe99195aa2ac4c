"""The cloud's time policy: what a gateway's `ts` is worth (docs/wire.md, "Time"). Pure.

A gateway's clock is evidence, not authority: one without a battery-backed clock boots in 1970,
one with broken NTP drifts, one set by hand may be a year out. A timestamp is *plausible* when it
is at most `future_s` after the moment the cloud received the message (nothing is made in the
future; the margin absorbs small drift) and at most `past_s` before it (older than any backlog an
outbox keeps). A message outside that is kept, not refused — refusing would mute a gateway whose
only fault is its clock — and *rebased*: every edge-clock time in it (its `ts`, and `last_ok` /
`backlog_oldest` where present) is shifted by the same amount so that `ts` becomes the receive
time. Ages inside the message (ts − last_ok) survive the shift. The ingester counts each rebase
and flags the gateway's clock; the alarm engine raises `gateway_clock` (minor).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import msgspec

from device_profiles import wire

FUTURE_S = wire.CLOCK_TOLERANCE_S  # a gateway clock further ahead than this is wrong
PAST_S = 30 * 86400.0  # older than any backlog an outbox holds


def _time_fields(cls: type[msgspec.Struct]) -> tuple[str, ...]:
    """The struct's fields that hold an edge-clock time (`UtcTime` or `UtcTime | None`)."""
    out = []
    for f in msgspec.structs.fields(cls):
        t = f.type
        args = getattr(t, "__args__", ())
        if t is wire.UtcTime or wire.UtcTime in args or datetime in args:
            out.append(f.name)
    return tuple(out)


TIME_FIELDS: dict[type[Any], tuple[str, ...]] = {cls: _time_fields(cls) for cls in wire.PAYLOAD_TYPES.values()}


@dataclass(frozen=True, slots=True)
class TimePolicy:
    """`None` switches a side off (replaying a simulated clock: `TimePolicy.off()`)."""

    future_s: float | None = FUTURE_S
    past_s: float | None = PAST_S

    @classmethod
    def off(cls) -> TimePolicy:
        return cls(None, None)

    def shift(self, ts: float, received: float) -> float:
        """0.0 when `ts` is plausible, else what to add to the message's times (received − ts)."""
        if self.future_s is not None and ts > received + self.future_s:
            return received - ts
        if self.past_s is not None and ts < received - self.past_s:
            return received - ts
        return 0.0


def rebase(msg: Any, shift_s: float) -> Any:
    """The same message with every edge-clock time moved by `shift_s` seconds."""
    d = timedelta(seconds=shift_s)
    changes = {}
    for name in TIME_FIELDS[type(msg)]:
        t = getattr(msg, name)
        if t is not None:
            try:
                changes[name] = t + d
            except OverflowError:  # a time near year 1 or 9999: only `ts` matters then
                continue
    return msgspec.structs.replace(msg, **changes)


@dataclass(slots=True)
class GatewayClock:
    """What the cloud knows about one gateway's clock (shown on the health page)."""

    skew_s: float | None = None  # the gateway's clock minus the cloud's, latest figure
    source: str = ""  # "edge": measured by the gateway from the time beacon; "ingest": a rebased ts
    measured: float = 0.0  # receive time of that figure
    rebased: int = 0  # messages of this gateway rebased by this ingester
    last_rebased: float | None = None

    def edge_report(self, skew_s: float, received: float) -> None:
        self.skew_s, self.source, self.measured = skew_s, "edge", received

    def rebase_seen(self, skew_s: float, received: float) -> None:
        self.rebased += 1
        self.last_rebased = received
        if self.source != "edge" or received - self.measured > 120.0:
            self.skew_s, self.source, self.measured = skew_s, "ingest", received
