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

_BAUD = {
    b: getattr(termios, f"B{b}")
    for b in (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)
    if hasattr(termios, f"B{b}")
}


class Pty:
    def __init__(self, baud: int = 9600, link: str | None = None) -> None:
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no line editing, no CR/LF translation: bytes as sent
        attrs = termios.tcgetattr(self._slave)
        if baud in _BAUD:
            attrs[4] = attrs[5] = _BAUD[baud]  # cosmetic: what `stty` shows; a pty has no real baud
        termios.tcsetattr(self._slave, termios.TCSANOW, attrs)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self._slave)
        self.link = link
        if link:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(link)
            os.symlink(self.path, link)

    def close(self) -> None:
        for fd in (self.master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)
        if self.link:
            with contextlib.suppress(OSError):
                if os.path.islink(self.link):
                    os.unlink(self.link)
