"""How long a Modbus RTU transaction takes on the simulated bus, against the theory.

Theory (Modbus over Serial Line, 11-bit characters): reading N registers moves 8 request bytes and
5 + 2N response bytes, plus the 3.5-character silence after each frame:
    (13 + 2N) · t_char + 2 · t3.5
The simulated bus paces replies so a 9600-baud bus is as slow as a real one. Measured here with a
raw client on the pty (write the request, read until the whole reply is in) and with pymodbus's
ModbusSerialClient; the same transactions on a 921600-baud bus show the fixed overhead (Python,
pty, scheduling) measured in the same run.

Run: .venv/bin/python bench/bench_sim_timing.py [--n 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import termios
import time
import tty

from simulators.site import BusSpec, DeviceSpec, SimSite, SiteSpec
from simulators.transport.frames import rtu_frame, rtu_split
from simulators.transport.timing import read_transaction_s, t35

BAUDS = (9600, 19200, 921600)
SIZES = (1, 10, 40, 100)


def site() -> SiteSpec:
    return SiteSpec(
        site="bench",
        buses=[BusSpec(id=f"b{b}", kind="rtu", baud=b) for b in BAUDS],
        devices=[DeviceSpec(id=f"hub{b}", profile="parkhub-ph48", bus=f"b{b}", unit=3) for b in BAUDS],
    )


def raw_times(path: str, n_regs: int, n: int) -> list[float]:
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    tty.setraw(fd)
    termios.tcflush(fd, termios.TCIOFLUSH)
    req = rtu_frame(3, bytes((4, 0, 100, 0, n_regs)))
    want = 5 + 2 * n_regs
    out = []
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            os.write(fd, req)
            got = b""
            while len(got) < want and not (len(got) == 5 and got[1] & 0x80):
                got += os.read(fd, want - len(got))
            out.append(time.perf_counter() - t0)
            assert rtu_split(got) is not None and not got[1] & 0x80, got
    finally:
        os.close(fd)
    return out


def pymodbus_times(path: str, baud: int, n_regs: int, n: int) -> list[float]:
    from pymodbus.client import ModbusSerialClient

    c = ModbusSerialClient(port=path, baudrate=baud, timeout=2, retries=0)
    c.connect()
    out = []
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            r = c.read_input_registers(100, count=n_regs, device_id=3)
            out.append(time.perf_counter() - t0)
            assert not r.isError()
    finally:
        c.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20, help="transactions per figure")
    args = ap.parse_args()
    s = SimSite(site()).start()
    try:
        eps = s.endpoints()
        print(
            f"{'baud':>7} {'regs':>5} {'theory ms':>10} {'wire ms':>8} {'raw ms':>8} {'raw/wire':>9} "
            f"{'pymodbus ms':>12} {'pm/theory':>9}"
        )
        for baud in BAUDS:
            path = eps[f"hub{baud}"]["serial_port"]
            for n_regs in SIZES:
                theory = read_transaction_s(baud, n_regs) * 1000
                wire = theory - t35(baud) * 1000  # request start → last reply byte
                raw = statistics.median(raw_times(path, n_regs, args.n)) * 1000
                pm = statistics.median(pymodbus_times(path, baud, n_regs, args.n)) * 1000
                print(
                    f"{baud:>7} {n_regs:>5} {theory:>10.2f} {wire:>8.2f} {raw:>8.2f} {raw / wire:>9.3f} "
                    f"{pm:>12.2f} {pm / theory:>9.3f}"
                )
        print("theory: (13+2N)·t_char + 2·t3.5 (a full transaction incl. the silence after the reply);")
        print("wire: theory minus that last t3.5 = request start → last reply byte, what the raw client")
        print("measures (median). pymodbus adds its own t3.5 wait and Python overhead.")
    finally:
        s.stop()


if __name__ == "__main__":
    main()
