"""A virtual RS-485 bus on one pseudo-terminal: several slave addresses, each answering only its own.

Frames are delimited the way a slave's UART sees them: a silence of 3.5 character times ends a
frame, then the CRC decides whether the frame exists at all (a bad CRC gets no answer, as on a
real bus). Requests from a client arrive on the pty all at once, so the bus accounts for the time
they would have taken on the wire and sends each reply when its last byte would have arrived at
the configured baud (11-bit characters): a transaction at 9600 baud takes as long as on copper.
The line is half-duplex: replies never overlap.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter

from simulators.devices.base import ModbusDevice
from simulators.transport.frames import handle_pdu, rtu_frame, rtu_request_length, rtu_split
from simulators.transport.pty import Pty
from simulators.transport.respond import respond
from simulators.transport.timing import char_time, t35


class RtuBus:
    kind = "modbus_rtu"

    def __init__(
        self,
        bus_id: str,
        devices: dict[int, ModbusDevice],
        baud: int = 9600,
        parity: str = "N",
        stop_bits: int = 1,
        data_bits: int = 8,
        link: str | None = None,
    ) -> None:
        self.id = bus_id
        self.devices = devices
        self.baud, self.parity, self.stop_bits, self.data_bits = baud, parity, stop_bits, data_bits
        self.link = link
        self.check_baud = True
        self.t_char = char_time(baud)
        self.t35 = t35(baud)
        self.stats: Counter[str] = Counter()
        self.pty: Pty | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._buf = bytearray()
        self._first = self._last = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._line_free = 0.0

    @property
    def path(self) -> str:
        assert self.pty is not None, "bus not started"
        return self.pty.path

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.pty = Pty(self.baud, self.link)
        self._loop.add_reader(self.pty.master, self._readable)

    async def stop(self) -> None:
        if self.pty is None:
            return
        if self._loop:
            self._loop.remove_reader(self.pty.master)
        if self._timer:
            self._timer.cancel()
        self.pty.close()

    def _readable(self) -> None:
        assert self.pty is not None and self._loop is not None
        try:
            data = os.read(self.pty.master, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return
        if not data:
            return
        now = self._loop.time()
        if not self._buf:
            self._first = now
        self._buf += data
        self._last = now
        if self._timer:
            self._timer.cancel()
        self._timer = self._loop.call_at(self._wire_end() + self.t35, self._frame_end)

    def _wire_end(self) -> float:
        """When the last received byte would have finished arriving on a real line."""
        return max(self._last, self._first + len(self._buf) * self.t_char)

    def _frame_end(self) -> None:
        self._timer = None
        wire_end = self._wire_end()
        buf, self._buf = bytes(self._buf), bytearray()
        self.stats["frames"] += 1
        for frame in self._split(buf):
            self._dispatch(frame, wire_end)

    def _split(self, buf: bytes) -> list[bytes]:
        """Normally one frame. Clients that write two requests back to back (no gap on a pty) are
        split by length where the function code fixes it; anything left is noise."""
        if rtu_split(buf) is not None:
            return [buf]
        out: list[bytes] = []
        while buf:
            n = rtu_request_length(buf)
            if n is None or n > len(buf) or rtu_split(buf[:n]) is None:
                self.stats["bad_frames"] += 1
                break
            out.append(buf[:n])
            buf = buf[n:]
        return out

    def _dispatch(self, frame: bytes, wire_end: float) -> None:
        assert self._loop is not None
        parsed = rtu_split(frame)
        if parsed is None:
            self.stats["bad_frames"] += 1
            return
        unit, pdu = parsed
        if unit == 0:  # broadcast: every slave acts on writes, none answers
            self.stats["broadcasts"] += 1
            if pdu and pdu[0] in (5, 6, 15, 16):
                for each in self.devices.values():
                    handle_pdu(each, pdu)
            return
        dev = self.devices.get(unit)
        if dev is None:
            self.stats["not_mine"] += 1
            return
        if self.check_baud and self.pty is not None and self.pty.client_baud() not in (None, self.baud):
            # A master at the wrong speed: on copper the slave would see framing errors, not a request.
            self.stats["baud_mismatch"] += 1
            return
        if self.check_baud and self.pty is not None and self.pty.client_odd_parity() not in (None, self.parity == "O"):
            # Odd against none/even: every character fails the slave's parity check (the pty shows
            # odd parity only; none and even look alike there, see Pty.client_odd_parity).
            self.stats["parity_mismatch"] += 1
            return
        resp = respond(dev, pdu)
        if resp is None:
            self.stats["silent"] += 1
            return
        out = bytearray(rtu_frame(unit, resp))
        if dev.faults.corrupt_crc():
            out[-1] ^= 0xA5
            self.stats["crc_corrupted"] += 1
        due = wire_end + self.t35 + len(out) * self.t_char + max(0.0, dev.faults.delay_s)
        due = max(due, self._line_free)  # half duplex: one transmission at a time
        self._line_free = due + self.t35
        self.stats["replies"] += 1
        self._loop.call_at(due, self._send, bytes(out))

    def _send(self, data: bytes) -> None:
        if self.pty is None:
            return
        try:
            os.write(self.pty.master, data)
        except OSError:
            self.stats["write_errors"] += 1

    def endpoint(self, unit: int) -> dict[str, object]:
        return {
            "transport": "modbus_rtu",
            "serial_port": self.path,
            "port": self.path,  # deprecated: the old, ambiguous name of serial_port
            "unit": unit,
            "baud": self.baud,
            "parity": self.parity,
            "stop_bits": self.stop_bits,
            "data_bits": self.data_bits,
        }
