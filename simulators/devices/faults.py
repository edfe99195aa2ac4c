"""Fault injection settings of one emulated device, changeable at run time from any thread.

Plain attributes (`faults.silent = True`) so a test or scenario can poke them while the site runs;
the transports read them on every request. Rates are fractions 0..1 of requests/replies/lines.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Faults:
    silent: bool = False  # no reply at all (a dead or disconnected slave)
    crc_error_rate: float = 0.0  # fraction of RTU replies sent with a corrupted CRC
    exception_code: int | None = None  # answer with this Modbus exception code ...
    exception_rate: float = 1.0  # ... on this fraction of requests
    delay_s: float = 0.0  # extra delay before every reply
    garbage_rate: float = 0.0  # line receiver: fraction of lines followed by a garbage line
    rng: random.Random = field(default_factory=lambda: random.Random(0), repr=False, compare=False)

    def clear(self) -> None:
        self.silent, self.crc_error_rate, self.exception_code = False, 0.0, None
        self.exception_rate, self.delay_s, self.garbage_rate = 1.0, 0.0, 0.0

    def pick_exception(self) -> int | None:
        code = self.exception_code
        if code is None:
            return None
        return code if self.exception_rate >= 1.0 or self.rng.random() < self.exception_rate else None

    def corrupt_crc(self) -> bool:
        return self.crc_error_rate > 0 and self.rng.random() < self.crc_error_rate

    def garbage(self) -> bool:
        return self.garbage_rate > 0 and self.rng.random() < self.garbage_rate

    def set(self, **changes: object) -> None:
        """Set several faults at once by name; an unknown name is an error, not silently ignored."""
        for k, v in changes.items():
            if k == "rng" or not hasattr(self, k):
                raise AttributeError(f"unknown fault {k!r}")
            setattr(self, k, v)
