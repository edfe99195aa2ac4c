"""Rate-limited log lines for malformed input: one line per kind of trouble per interval.

A gateway (or anyone with broker access) can send thousands of bad messages a second; one WARNING
each would drown the log and cost more than the messages. Bad input is already counted and set
aside (dead letters, metrics); the log only needs to say that it is happening and how often:
the first occurrence of a `key` is logged at once, the next ones within `interval_s` are counted,
and the first one after the interval is logged with that count.
"""

from __future__ import annotations

import logging
import threading
import time


class RateLimitedLog:
    def __init__(self, logger: logging.Logger, interval_s: float = 60.0) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()

    def warning(self, key: str, msg: str, *args: object, now: float | None = None) -> bool:
        """Log `msg % args` unless `key` was logged less than `interval_s` ago; True if logged."""
        now = time.monotonic() if now is None else now
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.interval_s:
                self._held[key] = self._held.get(key, 0) + 1
                return False
            held = self._held.pop(key, 0)
            self._last[key] = now
            if len(self._last) > 1000:  # keys are few (reasons, topics kinds); bound them anyway
                self._last = {key: now}
        if held:
            msg += " (and %d more like this in the last %.0f s)"
            args = (*args, held, self.interval_s)
        self.logger.warning(msg, *args)
        return True
