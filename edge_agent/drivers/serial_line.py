"""A serial line-protocol receiver (e.g. a bay-sensor radio receiver printing one line per report).

Reads bytes with asyncio (`add_reader` on the pyserial fd, no thread), splits on the profile's
terminator, and parses each line with `device_profiles.lineproto`. Bad lines are counted by reason,
never raised: garbage on a serial line is normal life.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable

import serial

from device_profiles.lineproto import LineError, LineRecord, parse_line, transport_of
from device_profiles.model import Profile

log = logging.getLogger(__name__)


class LineReader:
    def __init__(
        self,
        port: str,
        baud: int,
        profile: Profile,
        on_record: Callable[[LineRecord], None],
        parity: str = "N",
        stop_bits: int = 1,
    ) -> None:
        self.port, self.baud, self.profile, self.on_record = port, baud, profile, on_record
        self.parity, self.stop_bits = parity, stop_bits
        tr = transport_of(profile)
        self.term = tr.terminator.encode(tr.encoding)[-1:] or b"\n"
        self.max_line = tr.max_line
        self.errors: Counter[str] = Counter()
        self.lines = 0
        self._buf = bytearray()
        self._ser: serial.Serial | None = None

    def open(self) -> None:
        self._ser = serial.Serial(self.port, self.baud, parity=self.parity, stopbits=self.stop_bits, timeout=0)
        asyncio.get_running_loop().add_reader(self._ser.fileno(), self._readable)

    def _readable(self) -> None:
        assert self._ser is not None
        try:
            data = self._ser.read(4096)
        except (OSError, serial.SerialException) as e:
            self.errors["io"] += 1
            log.warning("%s: %s", self.port, e)
            self.close()
            return
        self.feed(data)

    def feed(self, data: bytes) -> None:
        """Split into lines; a run without terminator longer than max_line is discarded as garbage."""
        self._buf += data
        while True:
            i = self._buf.find(self.term)
            if i < 0:
                if len(self._buf) > self.max_line * 2:
                    self.errors["too_long"] += 1
                    self._buf.clear()
                return
            raw = bytes(self._buf[:i]).rstrip(b"\r\n")
            del self._buf[: i + 1]
            if not raw.strip():
                continue
            self.lines += 1
            try:
                rec = parse_line(self.profile, raw)
            except LineError as e:
                self.errors[e.reason] += 1
                continue
            self.on_record(rec)

    @property
    def is_open(self) -> bool:
        return self._ser is not None

    def close(self) -> None:
        if self._ser is not None:
            with contextlib.suppress(RuntimeError, ValueError, OSError):
                asyncio.get_running_loop().remove_reader(self._ser.fileno())
            self._ser.close()
            self._ser = None
