"""Bus use of the edge agent's RTU scheduler at 9600 baud, against the theoretical limit.

Two chargers (voltpile-cp10, large reads) and two sprinkler monitors (nanfang-fsm8, tiny reads)
on one RS-485 line (a socat pseudo-terminal pair), every poll class due
all the time, so the scheduler is never idle. The simulated slaves hold each answer back by the
exact time request and response take on a 9600-baud line ((13+2N) characters of 11 bits + 2 × t3.5),
so a perfect master reaches 100 %; what is missing is the agent's own overhead per transaction.

Reference, measured in the same run: a bare pymodbus client issuing the same reads back to back
(no scheduler, no decoding) against the same slaves.

    .venv/bin/python bench/edge_bus_use.py [seconds]
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from device_profiles.loader import get_profile
from device_profiles.model import PollClass
from edge_agent.budget import max_tps, read_time
from edge_agent.drivers.modbus_rtu import RtuDriver
from edge_agent.planner import plan
from edge_agent.scheduler import BusScheduler, Slave
from tests.fixtures.modbus_slave import RtuBus, SimDevice

BAUD = 9600


MIX = {3: "voltpile-cp10", 4: "voltpile-cp10", 5: "nanfang-fsm8", 6: "nanfang-fsm8"}


class Metered(RtuDriver):
    """Adds up the theoretical line time of every successful read."""

    ideal = 0.0

    async def read(self, unit, table, address, count):
        regs = await super().read(unit, table, address, count)
        self.ideal += read_time(BAUD, table, count)
        return regs


async def agent_run(port: str, units: list[int], seconds: float) -> tuple[int, float]:
    slaves = [Slave(f"dev{u}", u, get_profile(MIX[u]), {c: 0.001 for c in PollClass}) for u in units]
    drv = Metered(port, BAUD, timeout_s=0.5)
    sched = BusScheduler("b", drv, slaves, lambda *a: None, retries=0)
    task = asyncio.create_task(sched.run())
    await asyncio.sleep(1.0)  # warm up
    t0, n0, b0 = time.monotonic(), sched.stats.transactions, drv.ideal
    await asyncio.sleep(seconds)
    t1, n1, b1 = time.monotonic(), sched.stats.transactions, drv.ideal
    sched.stop()
    await task
    return n1 - n0, (b1 - b0) / (t1 - t0)


async def bare_run(port: str, units: list[int], seconds: float) -> tuple[int, float]:
    reads = {u: [r for c in PollClass for r in plan(get_profile(MIX[u]), c)] for u in units}
    drv = RtuDriver(port, BAUD, timeout_s=0.5)
    n, busy = 0, 0.0
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        for u in units:
            for r in reads[u]:
                await drv.read(u, r.table, r.address, r.count)
                n += 1
                busy += read_time(BAUD, r.table, r.count)
    dt = time.monotonic() - t0
    await drv.close()
    return n, busy / dt


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 20.0
    units = list(MIX)
    with tempfile.TemporaryDirectory() as tmp:
        bus = RtuBus(Path(tmp), [SimDevice(get_profile(MIX[u]), u) for u in units], BAUD, emulate_line=True)
        try:
            n_bare, use_bare = asyncio.run(bare_run(bus.port, units, seconds))
            n_agent, use_agent = asyncio.run(agent_run(bus.port, units, seconds))
        finally:
            bus.stop()
    for pid in sorted(set(MIX.values())):
        reads = [r for c in PollClass for r in plan(get_profile(pid), c)]
        print(f"{pid}: reads per cycle {[(r.table.value, r.count) for r in reads]}")
    print(f"theoretical transactions/s at {BAUD} baud for 1-register reads: {max_tps(BAUD):.1f}")
    print(f"bare pymodbus loop (reference): {n_bare / seconds:.1f} transactions/s, bus use {use_bare:.1%}")
    print(
        f"edge_agent scheduler:           {n_agent / seconds:.1f} transactions/s, bus use {use_agent:.1%}"
        f"  (target >= 85 %)"
    )


if __name__ == "__main__":
    main()
