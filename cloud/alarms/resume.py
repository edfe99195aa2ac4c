"""The alarm engine's in-memory rule windows as `resume_state` rows and back (pure, no I/O).

A rate-of-rise window is the samples the rule judges (`Track.samples`, at most 64, each the
sample's own time and value) plus the point's ordering mark: after a takeover the previous owner's
last messages may come again (the ingester's replay check is saved a second or two behind), and a
sample the window already holds must not be appended a second time at the newest time. A
comm-error window is the poll counters at its start plus the mark of the health message that set
them, for the same reason (an older health message's counters would look like an agent restart).

An alarm row's transition mark (`transition_json`) is the same ordering mark for state and threshold
rules: the reading that raised or cleared it, committed with the row, so the readings a dead owner had
judged (and whose alarm it had raised or cleared) are history to its survivor when the stream
delivers them again, not news (cloud/alarms/engine.py `adopt`).

Parsing is defensive: a row is state written by another process, perhaps by another version, and
must never crash a takeover; anything malformed gives None (the window starts afresh, as before).
"""

from __future__ import annotations

import json
import math
from collections import deque
from typing import Any

from cloud import ordering as O
from cloud.alarms.rules import CommWindow

MAX_SAMPLES = 64  # Track.samples' maxlen


def mark_json(m: O.Mark | None) -> list[Any] | None:
    return None if m is None else [m.seq, m.ts, m.epoch]


def parse_mark(v: Any) -> O.Mark | None:
    if (isinstance(v, list) and len(v) == 3 and type(v[0]) is int and finite(v[1])
            and isinstance(v[2], str)):
        return O.Mark(v[0], float(v[1]), v[2])
    return None


def rate_row(pid: str, samples: tuple[tuple[float, float], ...], mark: O.Mark | None) -> dict[str, Any]:
    return {"pid": pid, "s": samples, "m": mark_json(mark)}


def parse_rate(data: dict[str, Any]) -> tuple[str, deque[tuple[float, float]], O.Mark | None] | None:
    """(point id, samples in time order, mark) of a `rate` row, or None if it is malformed."""
    pid, raw = data.get("pid"), data.get("s")
    if not isinstance(pid, str) or not isinstance(raw, list) or len(raw) > MAX_SAMPLES:
        return None
    samples: deque[tuple[float, float]] = deque(maxlen=MAX_SAMPLES)
    for s in raw:
        if not (isinstance(s, list) and len(s) == 2 and finite(s[0]) and finite(s[1])):
            return None
        if samples and s[0] < samples[-1][0]:
            return None  # the rule needs them in time order
        samples.append((float(s[0]), float(s[1])))
    return pid, samples, parse_mark(data.get("m"))


def comm_row(win: CommWindow, mark: O.Mark | None) -> dict[str, Any]:
    return {"p": win.polls, "e": win.errors, "m": mark_json(mark)}


def parse_comm(data: dict[str, Any]) -> tuple[CommWindow, O.Mark | None] | None:
    p, e = data.get("p"), data.get("e")
    if type(p) is not int or type(e) is not int or p < 0 or e < 0:
        return None
    return CommWindow(p, e), parse_mark(data.get("m"))


def transition_json(pid: str, m: O.Mark) -> str:
    """An alarm row's `mark` (cloud/alarms/store.py): the point and ordering mark of the reading that
    raised or cleared it."""
    return json.dumps({"pid": pid, "seq": m.seq, "ts": m.ts, "epoch": m.epoch})


def parse_transition(raw: str | None) -> tuple[str, O.Mark] | None:
    """(point id, mark) of an alarm row's `mark`, or None if it is missing or malformed."""
    try:
        data = json.loads(raw) if raw else None
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    pid, mark = data.get("pid"), parse_mark([data.get("seq"), data.get("ts"), data.get("epoch")])
    return (pid, mark) if isinstance(pid, str) and mark is not None else None


def finite(v: Any) -> bool:
    """A real number (not a bool, NaN or infinity): what a saved time or value must be."""
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
