"""Pseudo-terminals standing in for serial ports: the client opens `/dev/pts/N` as it would a
USB-RS485 adapter; the simulator keeps the master side.

The simulator also holds the slave side open, so a client may close and reopen the port (as an edge
agent does after an error) without the master seeing EIO/hang-up.
"""

from __future__ import annotations

import contextlib
import os
import termios
import tty

_BAUDS = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600)
_BAUD = {b: getattr(termios, f"B{b}") for b in _BAUDS if hasattr(termios, f"B{b}")}
_SPEED = {v: k for k, v in _BAUD.items()}


class Pty:
    def __init__(self, baud: int = 9600, link: str | None = None) -> None:
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no line editing, no CR/LF translation: bytes as sent
        attrs = termios.tcgetattr(self._slave)
        if baud in _BAUD:
            attrs[4] = attrs[5] = _BAUD[baud]  # the line's speed until a client sets its own
        termios.tcsetattr(self._slave, termios.TCSANOW, attrs)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self._slave)
        self.link = link
        if link:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(link)
            os.symlink(self.path, link)

    def client_baud(self) -> int | None:
        """The speed the client last configured on its end (pty termios are shared by both slave
        fds; Linux keeps the speed but clears PARENB, see `client_odd_parity`)."""
        try:
            return _SPEED.get(termios.tcgetattr(self._slave)[4])
        except termios.error:
            return None

    def client_odd_parity(self) -> bool | None:
        """Whether the client asked for odd parity. Linux clears PARENB on a pty but keeps PARODD,
        so odd parity can be told from none/even; none and even cannot be told apart."""
        try:
            return bool(termios.tcgetattr(self._slave)[2] & termios.PARODD)
        except termios.error:
            return None

    def close(self) -> None:
        for fd in (self.master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)
        if self.link:
            with contextlib.suppress(OSError):
                if os.path.islink(self.link):
                    os.unlink(self.link)
