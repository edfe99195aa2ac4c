"""Sprinkler riser: waterflow, valve tamper, fire pump, module power, pipe pressure.

Pressure relaxes towards a target that depends on flow and pump (flowing water drops it, the pump
restores it) with a few-second lag, so a low-pressure alarm follows a waterflow the way it does on
a real riser. The pump starts automatically below `pump_start_bar` and stops at `pump_stop_bar`
once the water stops.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field


class SprinklerParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    static_bar: float = Field(default=4.0, gt=0, le=16, description="pressure at rest")
    flowing_bar: float = Field(default=0.8, ge=0, le=16, description="pressure with water flowing, no pump")
    pump_flow_bar: float = Field(default=3.2, ge=0, le=16, description="with water flowing and pump on")
    pump_churn_bar: float = Field(default=6.5, ge=0, le=16, description="pump on, no flow")
    pump_start_bar: float = Field(default=2.5, ge=0, le=16)
    pump_stop_bar: float = Field(default=6.0, ge=0, le=16)
    auto_pump: bool = True
    tau_s: float = Field(default=3.0, gt=0, description="pressure time constant")
    supply_v: float = Field(default=24.0, gt=0, le=60)
    zones: int = Field(default=4, ge=1, le=64)
    firmware: str = "1.4"


@dataclass
class SprinklerModel:
    params: SprinklerParams = field(default_factory=SprinklerParams)
    seed: int = 0
    waterflow: bool = False
    valve_tamper: bool = False
    pump_running: bool = False
    power_fault: bool = False
    pipe_pressure: float = 0.0  # bar
    supply_voltage: float = 0.0
    pump_manual: bool | None = None  # None = automatic control
    elapsed_s: float = 0.0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.pipe_pressure = self.params.static_bar
        self.supply_voltage = self.params.supply_v

    def set_waterflow(self, on: bool) -> None:
        self.waterflow = on

    def set_pump(self, on: bool | None) -> None:
        """Force the pump on/off; None hands it back to the automatic pressure switch."""
        self.pump_manual = on
        if on is not None:
            self.pump_running = on

    def target_pressure(self) -> float:
        p = self.params
        if self.waterflow:
            return p.pump_flow_bar if self.pump_running else p.flowing_bar
        return p.pump_churn_bar if self.pump_running else p.static_bar

    def step(self, dt: float) -> None:
        if dt <= 0:
            return
        self.elapsed_s += dt
        p = self.params
        if self.pump_manual is not None:
            self.pump_running = self.pump_manual
        elif p.auto_pump:
            if not self.pump_running and self.pipe_pressure < p.pump_start_bar:
                self.pump_running = True
            elif self.pump_running and not self.waterflow and self.pipe_pressure >= p.pump_stop_bar:
                self.pump_running = False
        target = self.target_pressure()
        self.pipe_pressure += (target - self.pipe_pressure) * (1 - math.exp(-dt / p.tau_s))
        self.pipe_pressure = max(0.0, self.pipe_pressure + self.rng.gauss(0, 0.005))
        base = p.supply_v * (0.9 if self.power_fault else 1.0)  # on battery when mains fail
        self.supply_voltage = base + self.rng.gauss(0, 0.05)
