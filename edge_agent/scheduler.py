"""One scheduler per bus: one transaction in flight, priorities, retries, per-slave breakers.

Order of work on every free moment of the line: queued writes (interlocks and commands) first,
then due safety reads, then routine, then slow. Writes are checked between every transaction, so an
interlock waits at most one transaction. A slave whose breaker is open is skipped until its back-off
ends, so a dead device costs the others one timeout per back-off period instead of one per poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from device_profiles.codec import CodecError, decode
from device_profiles.model import PollClass, Profile, Table
from edge_agent.breaker import Breaker
from edge_agent.drivers.base import ModbusDriver, TransactionError
from edge_agent.health import BusStats, DeviceStats
from edge_agent.planner import Read, merge, plan

log = logging.getLogger(__name__)

Value = bool | int | float | str
ORDER = (PollClass.SAFETY, PollClass.ROUTINE, PollClass.SLOW)
OnValues = Callable[[str, dict[str, Value], PollClass], None]


@dataclass
class Slave:
    id: str
    unit: int
    profile: Profile
    periods: dict[PollClass, float]
    plans: dict[PollClass, list[Read]] = field(default_factory=dict)
    due: dict[PollClass, float] = field(default_factory=dict)
    breaker: Breaker = field(default_factory=Breaker)
    stats: DeviceStats = field(init=False)
    cache: dict[int, tuple[tuple[int, ...], dict[str, Value]]] = field(default_factory=dict)
    combined: dict[frozenset[PollClass], list[Read]] = field(default_factory=dict)
    split: dict[int, list[Read]] = field(default_factory=dict)  # id(read) → reads without bridged holes

    def expand(self, reads: list[Read]) -> list[Read]:
        """Reads as planned, except those the device refused for crossing a hole (see _cycle)."""
        if not self.split:
            return reads
        out: list[Read] = []
        for r in reads:
            out += self.split.get(id(r), [r])
        return out

    def plan_for(self, classes: frozenset[PollClass]) -> list[Read]:
        """Reads for several classes due together: merged, so they share transactions."""
        if len(classes) == 1:
            return self.plans[next(iter(classes))]
        if classes not in self.combined:
            self.combined[classes] = plan(self.profile, classes)
        return self.combined[classes]

    def __post_init__(self) -> None:
        self.stats = DeviceStats(self.id)
        for cls in ORDER:
            reads = plan(self.profile, cls)
            if reads:
                self.plans[cls] = reads
                self.due[cls] = 0.0


@dataclass
class Write:
    device: str
    table: Table
    address: int
    value: bool | int
    future: asyncio.Future[None]


class BusScheduler:
    def __init__(
        self,
        name: str,
        driver: ModbusDriver,
        slaves: list[Slave],
        on_values: OnValues,
        retries: int = 1,
        gap_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name, self.driver, self.on_values = name, driver, on_values
        self.slaves = {s.id: s for s in slaves}
        self.retries, self.gap_s, self.clock = retries, gap_s, clock
        self.writes: deque[Write] = deque()
        self.stats = BusStats(name)
        self._wake = asyncio.Event()
        self._stop = False

    # -------------------------------------------------------------------- API

    def submit_write(self, device: str, table: Table, address: int, value: bool | int) -> asyncio.Future[None]:
        """Queue a write ahead of every read; the future resolves when the slave confirmed it."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.writes.append(Write(device, table, address, value, fut))
        self._wake.set()
        return fut

    def stop(self) -> None:
        """Stop after the writes already queued (interlocks, commands): a bus rebuilt for a new
        config must not drop an interlock's write on the way."""
        self._stop = True
        self._wake.set()

    # -------------------------------------------------------------------- loop

    async def run(self) -> None:
        try:
            while not self._stop or self.writes:
                if self.writes:
                    await self._do_write(self.writes.popleft())
                    continue
                now = self.clock()
                pick = self._next(now)
                if pick is None:
                    await self._sleep_until(self._earliest())
                    continue
                slave, cls = pick
                await self._cycle(slave, cls)
        finally:
            for w in self.writes:
                if not w.future.done():
                    w.future.set_exception(TransactionError("io", "bus stopped"))
            await self.driver.close()

    def _next(self, now: float) -> tuple[Slave, PollClass] | None:
        best: tuple[int, float, Slave, PollClass] | None = None
        for s in self.slaves.values():
            if s.breaker.state == "open" and now < s.breaker.open_until:
                continue
            for rank, cls in enumerate(ORDER):
                due = s.due.get(cls)
                if due is None or due > now:
                    continue
                if best is None or (rank, due) < (best[0], best[1]):
                    best = (rank, due, s, cls)
                break  # the highest due class of this slave is its candidate
        if best is None:
            return None
        return best[2], best[3]

    def _earliest(self) -> float:
        t = float("inf")
        for s in self.slaves.values():
            base = s.breaker.next_try(0.0) if s.breaker.state == "open" else 0.0
            for due in s.due.values():
                t = min(t, max(due, base))
        return t

    async def _sleep_until(self, t: float) -> None:
        delay = t - self.clock()
        if delay <= 0:
            return
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), min(delay, 1.0))

    async def _cycle(self, s: Slave, cls: PollClass) -> None:
        now = self.clock()
        # lower classes that are due as well (within 20 ms) ride along in the same transactions
        classes = [c for c in ORDER if c in s.due and s.due[c] <= now + 0.02]
        if cls not in classes:
            classes.insert(0, cls)
        for c in classes:
            period = s.periods[c]
            due = s.due[c]
            s.due[c] = due + period if now - due < period else now + period  # no burst after a stall
        s.breaker.allow(now)  # open → half_open when the back-off is over: this cycle is the probe
        values: dict[str, Value] = {}
        complete = True
        for read in s.expand(s.plan_for(frozenset(classes))):
            while self.writes:  # interlocks and commands never wait for a whole cycle
                await self._do_write(self.writes.popleft())
            try:
                regs = await self._transact(s, partial(self.driver.read, s.unit, read.table, read.address, read.count))
            except TransactionError as e:
                if e.kind == "exception" and e.code == 2 and len(read.points) > 1:
                    # illegal data address: this device does not allow reading across the holes
                    # the planner bridged; from now on read those points without bridging
                    limits = {read.table: read.count}
                    s.split[id(read)] = merge(read.points, limits, max_gap=0)
                    log.warning(
                        "%s: unit %d refuses reads across unmapped registers at %s %d; splitting",
                        s.id,
                        s.unit,
                        read.table.value,
                        read.address,
                    )
                complete = False
                if s.breaker.state != "closed":
                    break  # the slave is not answering: leave the bus to the others
                continue
            values.update(self._decode(s, read, regs))
        if complete:
            s.stats.cycles += 1
            s.stats.cycle_times.append(self.clock())
        s.stats.breaker = s.breaker.state
        if values:
            try:
                self.on_values(s.id, values, cls)
            except Exception:  # the bus must keep running whatever a consumer does
                log.exception("processing values of %s failed", s.id)

    def _decode(self, s: Slave, read: Read, regs: list[int]) -> dict[str, Value]:
        """Decode a read's points; when the registers are exactly as last time, reuse last time's
        values (most registers of most devices do not change from one poll to the next, and
        decoding is most of the agent's CPU at 200 devices)."""
        key = id(read)  # plans live as long as the slave; two plans may read the same registers for other points
        cached = s.cache.get(key)
        t = tuple(regs)
        if cached is not None and cached[0] == t:
            return cached[1]
        out: dict[str, Value] = {}
        base = read.address
        for p in read.points:
            try:
                out[p.id] = decode(p, regs[p.address - base : p.end - base])
            except CodecError as e:
                s.stats.decode_errors += 1
                s.stats.last_error = str(e)
        s.cache[key] = (t, out)
        return out

    async def _transact(self, s: Slave, op: Callable[[], object]) -> list[int]:
        """One request with retries; success or the last failure lands in the slave's breaker."""
        last: TransactionError | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                s.stats.retries += 1
            s.stats.polls += 1
            t0 = time.monotonic()
            try:
                result = await op()  # type: ignore[misc]
            except TransactionError as e:
                last = e
                s.stats.count_failure(e.kind, str(e))
                continue
            except Exception as e:  # a driver bug must not kill the bus
                last = TransactionError("io", repr(e))
                s.stats.count_failure("io", repr(e))
                continue
            finally:
                dt = time.monotonic() - t0
                self.stats.busy_s += dt
                self.stats.transactions += 1
                if self.gap_s:
                    await asyncio.sleep(self.gap_s)
            s.stats.count_ok(dt)
            s.breaker.success()
            s.stats.breaker = s.breaker.state
            return result if isinstance(result, list) else []
        s.breaker.failure(self.clock())
        s.stats.breaker = s.breaker.state
        assert last is not None
        raise last

    async def _do_write(self, w: Write) -> None:
        s = self.slaves.get(w.device)
        if s is None:
            w.future.set_exception(TransactionError("io", f"no device {w.device} on bus {self.name}"))
            return
        try:
            await self._transact(s, lambda: self.driver.write(s.unit, w.table, w.address, w.value))
        except TransactionError as e:
            if not w.future.done():
                w.future.set_exception(e)
            return
        if not w.future.done():
            w.future.set_result(None)
