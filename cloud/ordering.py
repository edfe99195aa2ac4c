"""Which of two messages of one device is newer, and at what time a reading is judged.

The edge's `ts` is evidence, not authority (DESIGN.md §4): a gateway without a real-time clock or
with bad NTP stamps 1970 or 2099, and a single such stamp must never make later good readings look
like history. So:

- **Order is the device's sequence number** (docs/wire.md: one counter per device across
  telemetry, events and health; a backfilled backlog arrives after live data with lower numbers).
  A message of another `epoch` is newer: a wiped or replaced outbox counts again from 1 under a new
  epoch (docs/wire.md), and what it sends is new. Within an epoch a higher `seq` is newer,
  whatever its `ts`. A *lower* `seq` is older (backlog, or a message that
  another lane overtook), unless the evidence says the device's counter started again (a wiped
  outbox, a replaced gateway): its `ts` is more than `RESTART_SLACK_S` later than the newest
  applied one while not in the future, or it is more than `RESTART_GAP` numbers behind (a counter
  that jumped to nonsense, or restarted on a gateway whose clock is wrong as well).
- **Durations and rates run on the sample's time**, not on when the engine got round to it: the
  edge `ts` when it is plausible, i.e. within `PLAUSIBLE_LAG_S` before the receive time; else the
  receive time itself (a future stamp, a clock minutes slow, 1970). A wrong clock can so shorten a
  rule's `for` by at most `PLAUSIBLE_LAG_S` (raising sooner: the safe side), and an implausible stamp
  only ever makes it later.

Pure functions, no I/O and no clock reads: the conflating gate (cloud/ingest/priority.py) and the
alarm engine share them, and an ingest-side time policy may replace `sample_time` in one place.
"""

from __future__ import annotations

import msgspec

# A live reading takes ms to arrive, but a cluster's takeover delivers the outage's readings 6-15 s
# after they were taken (the lease's 6 s, a renewal round, the backlog; bench/cluster.py). At 10 s,
# a hold over such a backlog restarted at the receive time: the overheating port was pushed 5 s late.
PLAUSIBLE_LAG_S = 30.0
FUTURE_TOLERANCE_S = 2.0  # a stamp this far ahead of the receive time still counts as evidence
RESTART_SLACK_S = 5.0  # a lower seq must be this much later by ts to count as a restarted counter
RESTART_GAP = 1_000_000  # this far behind is a restarted (or nonsense) counter, not a backlog


class Meta(msgspec.Struct, frozen=True, gc=False):
    """Where a reading came from: its message's seq, edge ts (epoch s) and receive time (a msgspec
    struct: one is made per telemetry message on the ingest thread, ~5x cheaper than a NamedTuple)."""

    seq: int
    ts: float
    received: float
    epoch: str = ""  # the sender's outbox (docs/wire.md): another epoch counts again from 1


class Mark(msgspec.Struct, frozen=True, gc=False):
    """The newest message applied so far: its seq and its ts as evidence (never past receipt)."""

    seq: int
    ts: float
    epoch: str = ""


def sample_time(ts: float, received: float, max_lag: float = PLAUSIBLE_LAG_S) -> float:
    """The time a reading is judged at (durations, rate of rise): its edge `ts` if it lies within
    `max_lag` before the receive time, else the receive time. Readings taken 1 s apart and
    received in one burst keep their spacing; an implausible stamp never makes a duration shorter."""
    return ts if received - max_lag <= ts <= received else received


def mark(m: Meta) -> Mark:
    """What to remember of an applied message: a future `ts` is remembered as the receive time,
    so a 2099 stamp cannot make the device's later messages look older than it."""
    limit = m.received + FUTURE_TOLERANCE_S
    return Mark(m.seq, m.ts if m.ts < limit else limit, m.epoch)


def newer(m: Meta, last: Mark | None) -> bool:
    """Is the message `m` newer than the newest applied one (`last`)? By seq; see the module doc."""
    if last is None or m.seq > last.seq or m.epoch != last.epoch:
        return True  # a higher seq; or another epoch: a wiped outbox counts again from 1 (docs/wire.md)
    if m.seq == last.seq:
        return False  # the same message again
    if last.seq - m.seq > RESTART_GAP:
        return True
    # Lower seq: older, unless its (not future) ts says the device started counting again.
    return m.ts <= m.received + FUTURE_TOLERANCE_S and m.ts > last.ts + RESTART_SLACK_S
