"""Modbus RTU bus timing: how long a transaction takes and whether the configured polls fit. Pure.

Each character is 11 bits on the wire (start, 8 data, parity or a second stop bit, stop). A
transaction is a request and a response, each followed by a silent interval t3.5 (3.5 character
times, fixed at 1.75 ms above 19200 baud by the Modbus serial line spec). A read of N registers
moves 8 request bytes and 5 + 2N response bytes: (13 + 2N) characters + 2 × t3.5.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from device_profiles.model import PollClass, Profile, Table, TransportKind

if TYPE_CHECKING:
    from edge_agent.config import AgentConfig

BITS_PER_CHAR = 11


def t_char(baud: int) -> float:
    return BITS_PER_CHAR / baud


def t35(baud: int) -> float:
    return 0.00175 if baud > 19200 else 3.5 * t_char(baud)


def read_chars(table: Table, count: int) -> int:
    """Request (8) + response (addr, fc, byte count, data, CRC 2) characters of one read."""
    data = (count + 7) // 8 if table.is_bit else 2 * count
    return 8 + 5 + data


def read_time(baud: int, table: Table, count: int, gap_s: float = 0.0) -> float:
    return read_chars(table, count) * t_char(baud) + 2 * t35(baud) + gap_s


def write_time(baud: int, gap_s: float = 0.0) -> float:
    """FC 5 / FC 6: 8-byte request, 8-byte echo."""
    return 16 * t_char(baud) + 2 * t35(baud) + gap_s


def max_tps(baud: int, table: Table = Table.HOLDING, count: int = 1) -> float:
    """Theoretical transactions per second for back-to-back reads of `count` registers."""
    return 1.0 / read_time(baud, table, count)


@dataclass(frozen=True)
class Budget:
    bus: str
    baud: int
    utilisation: float  # busy fraction the configured polls need (1.0 = the whole bus)
    per_device: dict[str, float]

    @property
    def fits(self) -> bool:
        return self.utilisation <= 1.0

    def warning(self) -> str | None:
        if self.utilisation > 1.0:
            worst = sorted(self.per_device.items(), key=lambda kv: -kv[1])[:3]
            names = ", ".join(f"{d} {u:.0%}" for d, u in worst)
            return (
                f"bus {self.bus}: the configured polls need {self.utilisation:.0%} of the line at "
                f"{self.baud} baud and cannot all run on time (largest: {names}); raise poll periods, "
                "raise the baud rate or split the bus"
            )
        if self.utilisation > 0.8:
            return f"bus {self.bus}: polls need {self.utilisation:.0%} of the line; little room for retries"
        return None


def budget(bus: str, baud: int, loads: dict[str, list[tuple[Table, int, float]]], gap_s: float = 0.0) -> Budget:
    """`loads`: device → [(table, count, period_s)] of every planned read."""
    per: dict[str, float] = {}
    for dev, reads in loads.items():
        per[dev] = sum(read_time(baud, t, n, gap_s) / period for t, n, period in reads)
    return Budget(bus, baud, sum(per.values()), per)


def config_budgets(cfg: AgentConfig, profiles: dict[str, Profile]) -> list[Budget]:
    """The budget of every Modbus RTU bus of a config (what `check`, `scan` and the cloud print)."""
    from edge_agent.planner import plan

    out = []
    for bus in cfg.buses:
        if bus.transport is not TransportKind.MODBUS_RTU:
            continue
        loads = {
            d.id: [(r.table, r.count, d.poll.of(c)) for c in PollClass for r in plan(profiles[d.profile], c)]
            for d in cfg.devices
            if d.bus == bus.name and d.enabled and d.profile in profiles
        }
        out.append(budget(bus.name, bus.baud, loads, bus.gap_ms / 1000))
    return out


def describe(b: Budget) -> str:
    return f"bus {b.bus}: polls need {b.utilisation:.0%} of the line at {b.baud} baud"
