"""A serial line receiver's output on a pseudo-terminal, paced at the configured baud.

Lines nobody reads fill the pty buffer; further lines are dropped and counted, as a UART with no
listener loses them (a client should flush its input when it opens the port).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from collections import Counter, deque

from simulators.devices.line_receiver import LineReceiverDevice
from simulators.transport.pty import Pty


class LinePort:
    kind = "serial_line"

    def __init__(
        self,
        bus_id: str,
        device: LineReceiverDevice,
        baud: int = 9600,
        parity: str = "N",
        stop_bits: int = 1,
        data_bits: int = 8,
        link: str | None = None,
        poll_s: float = 0.02,
    ) -> None:
        self.id = bus_id
        self.device = device
        self.baud, self.parity, self.stop_bits, self.data_bits = baud, parity, stop_bits, data_bits
        self.link = link
        self.t_char = (1 + data_bits + (0 if parity == "N" else 1) + stop_bits) / baud
        self.poll_s = poll_s
        self.max_backlog = 256
        self._rng = random.Random(0)
        self.stats: Counter[str] = Counter()
        self.pty: Pty | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def path(self) -> str:
        assert self.pty is not None, "port not started"
        return self.pty.path

    async def start(self) -> None:
        self.pty = Pty(self.baud, self.link)
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.pty:
            self.pty.close()

    async def _run(self) -> None:
        """Write queued lines one by one, each taking its time on the wire. A receiver that
        produces more than the baud rate carries keeps a bounded backlog (oldest lines lost)."""
        assert self.pty is not None
        backlog: deque[bytes] = deque(maxlen=self.max_backlog)
        while True:
            for line in self.device.take_lines():
                if len(backlog) == backlog.maxlen:
                    self.stats["overflow"] += 1
                backlog.append(line)
            if not backlog:
                await asyncio.sleep(self.poll_s)
                continue
            line = backlog.popleft()
            if self.pty.client_baud() not in (None, self.baud):
                # A reader at the wrong speed sees noise, not text.
                self.stats["baud_mismatch"] += 1
                line = bytes(self._rng.randrange(256) for _ in line)
            try:
                n = os.write(self.pty.master, line)
                if n < len(line):  # pty buffer full mid-line: the rest waits
                    backlog.appendleft(line[n:])
                else:
                    self.stats["lines"] += 1
            except OSError:  # nobody reading and the pty buffer is full
                self.stats["dropped"] += 1
            await asyncio.sleep(len(line) * self.t_char)

    def endpoint(self) -> dict[str, object]:
        return {
            "transport": "serial_line",
            "serial_port": self.path,
            "port": self.path,  # deprecated: the old, ambiguous name of serial_port
            "baud": self.baud,
            "parity": self.parity,
            "stop_bits": self.stop_bits,
            "data_bits": self.data_bits,
        }
