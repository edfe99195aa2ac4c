"""How long `edge-agent scan` takes an installer: a bus of N slaves, found at one of 3 baud rates.

For each baud B of 9600, 19200 and 38400, a simulated RS-485 bus (pty, replies paced at B, a
master at another baud gets no answer) carries N slaves (the catalog's RTU models in turn, on
unit ids spread over 1..--last). The scan walks 9600, 19200, 38400 × parity N × units 1..--last and
identifies every slave. Printed per bus: seconds, requests, slaves found and recognised, and the
floor: one timeout per silent unit id at each setting plus the identification reads at the wire
time of the bus.

Reference, measured in the same run on the same bus: what an installer does without the tool, a
shell loop of `mbpoll` over the same unit ids and bauds, one holding-register read each with the
same timeout as the scan's (`-o`), finding who answers but not what it is.

    .venv/bin/python bench/scan_speed.py [--slaves 4] [--last 247]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from device_profiles.identify import requests
from device_profiles.loader import catalog
from device_profiles.model import Table, TransportKind
from edge_agent.budget import read_time
from edge_agent.drivers.modbus_rtu import RtuDriver
from edge_agent.scan import PRESENCE, Setting, candidates, rtu_timeout, scan_modbus
from simulators.site import BusSpec, DeviceSpec, SimSite, SiteSpec

BAUDS = (9600, 19200, 38400)
REPLY_S = 0.1  # the scan's default --reply-ms


def site(baud: int, n: int, last: int) -> SiteSpec:
    rtu = sorted(p.id for p in catalog().values() if p.transport.kind is TransportKind.MODBUS_RTU)
    units = [1 + (k * (last - 1)) // max(1, n - 1) if n > 1 else 1 for k in range(n)]
    devs = [DeviceSpec(id=f"d{u}", profile=rtu[k % len(rtu)], bus="b", unit=u) for k, u in enumerate(units)]
    return SiteSpec(site=f"bus{baud}", buses=[BusSpec(id="b", kind="rtu", baud=baud)], devices=devs)


def ours(port: str, last: int) -> tuple[float, int, int, int]:
    settings = [Setting(b, "N", 1) for b in BAUDS]

    def open_driver(s: Setting, timeout: float) -> RtuDriver:
        return RtuDriver(port, s.baud, s.parity, s.stop_bits, timeout)

    t0 = time.monotonic()
    rep = asyncio.run(scan_modbus(TransportKind.MODBUS_RTU, port, open_driver, settings, range(1, last + 1),
                                  catalog().values(), lambda s: rtu_timeout(s.baud, REPLY_S)))
    found = rep.devices()
    return time.monotonic() - t0, rep.transactions, len(found), sum(1 for f in found if f.model)


def mbpoll_loop(port: str, last: int) -> tuple[float, int, int]:
    exe = shutil.which("mbpoll")
    if exe is None:
        raise SystemExit("mbpoll is not installed (scripts/setup.sh --test)")
    t0 = time.monotonic()
    asked = answered = 0
    for baud in BAUDS:
        for unit in range(1, last + 1):
            r = subprocess.run([exe, "-m", "rtu", "-b", str(baud), "-P", "none", "-a", str(unit), "-t", "4", "-r",
                                "1", "-c", "1", "-1", "-o", f"{rtu_timeout(baud, REPLY_S):.3f}", port],
                               capture_output=True, text=True)
            asked += 1
            out = r.stdout + r.stderr
            if "[1]:" in out or "Illegal" in out or "exception" in out.lower():
                answered += 1
    return time.monotonic() - t0, asked, answered


def floor(baud: int, n: int, last: int) -> float:
    """Silent unit ids cost a timeout at each setting; the slaves' own reads cost wire time."""
    reads = [rk for rk in requests(candidates(catalog().values(), TransportKind.MODBUS_RTU)) if rk != PRESENCE]
    silent = sum(rtu_timeout(b, REPLY_S) * (last - (n if b == baud else 0)) for b in BAUDS)
    return silent + n * sum(read_time(baud, t, c) for t, _, c in [(Table.HOLDING, 0, 1), *reads])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--slaves", type=int, default=4)
    ap.add_argument("--last", type=int, default=247)
    a = ap.parse_args()
    print(f"{a.slaves} slaves on units 1..{a.last}; scan tries {', '.join(map(str, BAUDS))} baud, parity N; "
          f"a silent unit id costs the timeout: {', '.join(f'{rtu_timeout(b, REPLY_S) * 1000:.0f} ms' for b in BAUDS)}")
    print(f"{'bus':>8} | {'scan s':>7} {'requests':>8} {'found':>5} {'known':>5} {'floor s':>7} | "
          f"{'mbpoll loop s':>13} {'answered':>8} | scan / mbpoll")
    for baud in BAUDS:
        s = SimSite(site(baud, a.slaves, a.last)).start()
        try:
            port = s.endpoints()[s.spec.devices[0].id]["serial_port"]
            t_ours, n_req, found, known = ours(port, a.last)
            t_ref, _asked, answered = mbpoll_loop(port, a.last)
        finally:
            s.stop()
        ratio = f"{t_ours / t_ref:.2f}" if found and answered else "— (a side found nothing: no ratio)"
        print(f"{baud:>8} | {t_ours:7.1f} {n_req:8d} {found:5d} {known:5d} {floor(baud, a.slaves, a.last):7.1f} | "
              f"{t_ref:13.1f} {answered:8d} | {ratio}")


if __name__ == "__main__":
    main()
