"""Replay detection by per-device sequence number, for sequences that arrive out of order.

After an outage the edge sends live data first and backfills the backlog behind it, so a
"highest seq seen" rule would drop the whole backlog. Instead each device keeps a contiguous
watermark (`floor`: every seq ≤ floor was seen) plus the set of seqs seen above it. A seq is a
replay if it is ≤ floor or in the set. The holes between floor and the highest seq are the gaps;
a gap that later fills simply disappears (nothing is lost). The set is bounded: past `max_window`
entries the floor jumps forward and the skipped holes are counted as lost for good.

Pure logic, no I/O; the state is small enough to persist (see `state()` / `from_state()`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass(slots=True)
class SeqWindow:
    floor: int = -1  # every seq <= floor has been seen (edge sequences start at 0)
    seen: set[int] = field(default_factory=set)
    lost: int = 0  # holes given up when the window had to move forward
    max_window: int = 100_000

    def accept(self, seq: int) -> bool:
        """True if `seq` is new (and records it), False if it is a replay."""
        if seq <= self.floor or seq in self.seen:
            return False
        if seq == self.floor + 1:
            self.floor = seq
            seen = self.seen
            if seen:
                nxt = seq + 1
                while nxt in seen:
                    seen.remove(nxt)
                    nxt += 1
                self.floor = nxt - 1
            return True
        self.seen.add(seq)
        if len(self.seen) > self.max_window:
            self._compact()
        return True

    def _compact(self) -> None:
        """Give up the oldest holes so the set stays bounded; counts them as lost."""
        ordered = sorted(self.seen)
        keep_from = ordered[len(ordered) // 2]
        below = [s for s in ordered if s < keep_from]
        holes = (keep_from - 1 - self.floor) - len(below)
        self.lost += holes
        self.floor = keep_from - 1
        self.seen = set(ordered[len(ordered) // 2 :])
        nxt = self.floor + 1
        while nxt in self.seen:
            self.seen.remove(nxt)
            nxt += 1
        self.floor = nxt - 1

    @property
    def highest(self) -> int:
        return max(self.seen) if self.seen else self.floor

    def gaps(self) -> list[tuple[int, int]]:
        """Missing seqs between the watermark and the highest seen, as inclusive ranges."""
        out: list[tuple[int, int]] = []
        prev = self.floor
        for s in sorted(self.seen):
            if s > prev + 1:
                out.append((prev + 1, s - 1))
            prev = s
        return out

    def missing(self) -> int:
        """Seqs not seen between the watermark and the highest seen (= the gaps' total, without
        sorting: `seen` holds only numbers above floor + 1)."""
        return max(self.seen) - self.floor - len(self.seen) if self.seen else 0

    def state(self) -> dict[str, object]:
        return {"floor": self.floor, "seen": sorted(self.seen), "lost": self.lost}

    @classmethod
    def from_state(cls, st: dict[str, object], max_window: int = 100_000) -> SeqWindow:
        seen = st.get("seen") or []
        floor = st.get("floor", -1)
        lost = st.get("lost", 0)
        assert isinstance(seen, list) and isinstance(floor, int) and isinstance(lost, int)
        return cls(floor=floor, seen=set(seen), lost=lost, max_window=max_window)


class Deduper:
    """Sequence windows per (device key, stream). Telemetry, events and health each carry the
    device's one sequence, so one window per device suffices."""

    def __init__(self, max_window: int = 100_000) -> None:
        self.windows: dict[str, SeqWindow] = {}
        self.max_window = max_window
        self.dirty: set[str] = set()
        self._lock = threading.Lock()  # the ingest thread accepts while housekeeping persists

    def accept(self, key: str, seq: int) -> bool:
        with self._lock:
            w = self.windows.get(key)
            if w is None:
                w = self.windows[key] = SeqWindow(max_window=self.max_window)
            ok = w.accept(seq)
            if ok:
                self.dirty.add(key)
            return ok

    def load(self, key: str, st: dict[str, object]) -> None:
        w = SeqWindow.from_state(st, self.max_window)
        with self._lock:  # a cluster replica loads while its ingest thread accepts (IngestService.adopt)
            self.windows[key] = w

    def take_dirty(self) -> dict[str, dict[str, object]]:
        with self._lock:
            out = {k: self.windows[k].state() for k in self.dirty}
            self.dirty = set()
            return out

    def gaps(self) -> dict[str, list[tuple[int, int]]]:
        with self._lock:
            return {k: g for k, w in self.windows.items() if (g := w.gaps())}

    def missing(self) -> int:
        with self._lock:
            return sum(w.missing() for w in self.windows.values())
