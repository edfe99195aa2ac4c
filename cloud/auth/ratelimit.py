"""Login rate limiting: failures per key (user name, client address) in a sliding window.

Pure logic with an injectable clock so it is tested exhaustively without sleeping. Only failures
count: a person who types the right password is never locked out by their own successes, and a
success clears that user's failures. Kept in memory: one API process per site is the deployment we
support; a restart forgets the counts, which is acceptable for a throttle (not an audit log).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable


class LoginLimiter:
    def __init__(self, max_failures: int = 5, window_s: float = 300.0,
                 clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000) -> None:
        if max_failures < 1 or window_s <= 0:
            raise ValueError("max_failures must be >= 1 and window_s > 0")
        self.max_failures = max_failures
        self.window_s = window_s
        self.clock = clock
        self.max_keys = max_keys
        self._fails: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _prune(self, key: str, now: float) -> deque[float]:
        q = self._fails.get(key)
        if q is None:
            return deque()
        while q and now - q[0] >= self.window_s:
            q.popleft()
        if not q:
            del self._fails[key]
        return q

    def retry_after(self, key: str) -> float:
        """0 if `key` may try now, else seconds until its oldest failure leaves the window."""
        with self._lock:
            now = self.clock()
            q = self._prune(key, now)
            if len(q) < self.max_failures:
                return 0.0
            # Blocked until the failure that makes the count reach the limit leaves the window (with
            # more failures than the limit, that is not the oldest one).
            return max(0.0, q[-self.max_failures] + self.window_s - now)

    def failed(self, key: str) -> None:
        with self._lock:
            now = self.clock()
            self._prune(key, now)
            if len(self._fails) >= self.max_keys and key not in self._fails:
                # Bounded memory under a spray of user names: forget the stalest key.
                oldest = min(self._fails, key=lambda k: self._fails[k][-1])
                del self._fails[oldest]
            self._fails.setdefault(key, deque()).append(now)

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._fails.pop(key, None)
