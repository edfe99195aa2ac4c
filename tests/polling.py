"""Waiting on real servers, processes and threads: poll a condition until it holds, with a bound.

Tests here never sleep a fixed time and hope; they poll. One function so every test fails the same
way (AssertionError naming what it waited for) and returns what it found.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    cond: Callable[[], T],
    timeout: float = 30.0,
    what: str = "condition",
    every: float = 0.05,
    detail: Callable[[], str] | None = None,
) -> T:
    """Call `cond` every `every` seconds until it returns something truthy, and return that;
    AssertionError after `timeout` seconds (with `detail()`, what was seen, if given)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}" + (f"\n{detail()}" if detail is not None else ""))
