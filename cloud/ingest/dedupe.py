"""Replay detection by per-device sequence number (docs/wire.md, "Sequence numbers"). Pure, no I/O.

A device's messages are numbered 1, 2, 3, … within an `epoch` (the gateway's outbox: a wiped or
new outbox starts again at 1 under a new epoch). After an outage the edge sends live data first and
backfills the backlog behind it, so numbers arrive out of order and a "highest seq seen" rule would
drop the whole backlog. Each device's window therefore keeps a contiguous watermark (`floor`: every
number ≤ floor was seen) plus the numbers seen above it as *runs* (inclusive ranges): a live stream
above a backlog is one run, not one entry per message, so memory and the state written to the
database stay a few numbers per device whatever the traffic. A number is a replay if it is ≤ floor
or inside a run.

Gaps: the holes between the lowest and the highest number seen in the current epoch. What lies
below the first number a receiver ever saw (it started late, or its state was reset) is before its
time, not a gap — backfilled numbers there are still accepted. `gaps()` counts holes (the
`sequence_gaps` metric), `missing()` the numbers in them. A hole that later fills simply closes.
Runs are bounded (`max_runs`): past that the lowest hole is given up and counted in `lost`.

Epochs: a message of another epoch than the window's starts a new window; the previous epoch's
window is kept (one), so its stragglers still in flight are recognised as replays or accepted.
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass, field
from typing import Any

MAX_RUNS = 1000


@dataclass(slots=True)
class SeqWindow:
    epoch: str = ""
    floor: int = 0  # every seq <= floor has been seen (sequences start at 1)
    runs: list[tuple[int, int]] = field(default_factory=list)  # sorted, disjoint, above floor + 1
    low: int | None = None  # the lowest seq seen in this epoch (gaps are counted from here)
    lost: int = 0  # missing numbers given up when the runs had to be bounded
    max_runs: int = MAX_RUNS

    def accept(self, seq: int) -> bool:
        """True if `seq` is new (and records it), False if it is a replay."""
        if seq <= self.floor:
            return False
        runs = self.runs
        if not runs and seq == self.floor + 1:  # in order: the common case
            self.floor = seq
            if self.low is None:
                self.low = seq
            return True
        i = bisect.bisect_right(runs, (seq, float("inf"))) - 1  # the run starting at or below seq
        if i >= 0 and runs[i][1] >= seq:
            return False
        if self.low is None or seq < self.low:
            self.low = seq
        joins_left = i >= 0 and runs[i][1] == seq - 1
        joins_right = i + 1 < len(runs) and runs[i + 1][0] == seq + 1
        if joins_left and joins_right:
            runs[i] = (runs[i][0], runs[i + 1][1])
            del runs[i + 1]
        elif joins_left:
            runs[i] = (runs[i][0], seq)
        elif joins_right:
            runs[i + 1] = (seq, runs[i + 1][1])
        else:
            runs.insert(i + 1, (seq, seq))
        if runs[0][0] == self.floor + 1:
            self.floor = runs.pop(0)[1]
        if len(runs) > self.max_runs:
            self._give_up_lowest_hole()
        return True

    def _give_up_lowest_hole(self) -> None:
        lo, hi = self.runs.pop(0)
        self.lost += max(0, lo - max(self.floor + 1, self.low or lo))
        self.floor = hi

    @property
    def highest(self) -> int:
        return self.runs[-1][1] if self.runs else self.floor

    def gaps(self) -> list[tuple[int, int]]:
        """Missing seqs between the lowest and the highest seen, as inclusive ranges."""
        out: list[tuple[int, int]] = []
        prev = self.floor
        start = self.low if self.low is not None else 1
        for lo, hi in self.runs:
            a = max(prev + 1, start)
            if lo - 1 >= a:
                out.append((a, lo - 1))
            prev = hi
        return out

    def gap_count(self) -> int:
        return len(self.gaps())

    def missing(self) -> int:
        return sum(b - a + 1 for a, b in self.gaps())

    def state(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "floor": self.floor, "runs": [list(r) for r in self.runs],
                "low": self.low, "lost": self.lost}

    @classmethod
    def from_state(cls, st: dict[str, Any], max_runs: int = MAX_RUNS) -> SeqWindow:
        if "runs" not in st:  # written before runs and epochs: {"floor", "seen": [...], "lost"}
            w = cls(floor=max(0, int(st.get("floor", 0))), lost=int(st.get("lost", 0)), max_runs=max_runs)
            for s in sorted(st.get("seen") or []):
                if s > w.floor:
                    w.accept(int(s))
            return w
        return cls(
            epoch=str(st.get("epoch", "")),
            floor=int(st["floor"]),
            runs=[(int(a), int(b)) for a, b in st["runs"]],
            low=None if st.get("low") is None else int(st["low"]),
            lost=int(st.get("lost", 0)),
            max_runs=max_runs,
        )


class Deduper:
    """One window per device (telemetry, events and health share the device's sequence), plus the
    window of its previous epoch."""

    def __init__(self, max_runs: int = MAX_RUNS) -> None:
        self.windows: dict[str, SeqWindow] = {}
        self.previous: dict[str, SeqWindow] = {}
        self.max_runs = max_runs
        self.dirty: set[str] = set()
        self._lock = threading.Lock()  # the ingest thread accepts while housekeeping persists

    def accept(self, key: str, seq: int, epoch: str = "") -> bool:
        with self._lock:
            w = self.windows.get(key)
            if w is None:
                w = self.windows[key] = SeqWindow(epoch=epoch, max_runs=self.max_runs)
            elif w.epoch != epoch:
                p = self.previous.get(key)
                if p is not None and p.epoch == epoch:
                    w = p  # a straggler of the previous epoch
                else:  # a new epoch: the gateway's outbox started again
                    self.previous[key] = w
                    w = self.windows[key] = SeqWindow(epoch=epoch, max_runs=self.max_runs)
            ok = w.accept(seq)
            if ok:
                self.dirty.add(key)
            return ok

    def load(self, key: str, st: dict[str, Any]) -> None:
        w = SeqWindow.from_state(st, self.max_runs)
        p = SeqWindow.from_state(st["previous"], self.max_runs) if isinstance(st.get("previous"), dict) else None
        with self._lock:  # a cluster replica loads while its ingest thread accepts (IngestService.adopt)
            self.windows[key] = w
            if p is not None:
                self.previous[key] = p

    def _state(self, key: str) -> dict[str, Any]:
        st = self.windows[key].state()
        p = self.previous.get(key)
        if p is not None:
            st["previous"] = p.state()
        return st

    def states(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        """The current state of these keys' windows (those that have one)."""
        with self._lock:
            return {k: self._state(k) for k in keys if k in self.windows}

    def take_dirty(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            out = {k: self._state(k) for k in self.dirty}
            self.dirty = set()
            return out

    def gaps(self) -> dict[str, list[tuple[int, int]]]:
        with self._lock:
            return {k: g for k, w in self.windows.items() if (g := w.gaps())}

    def gap_count(self) -> int:
        """Open gaps (holes) over every device's current epoch: the `sequence_gaps` metric."""
        with self._lock:
            return sum(w.gap_count() for w in self.windows.values() if w.runs)

    def missing(self) -> int:
        with self._lock:
            return sum(w.missing() for w in self.windows.values() if w.runs)

    def lost(self) -> int:
        with self._lock:
            return sum(w.lost for w in self.windows.values())
