"""Sprinkler monitor emulator: `SprinklerModel` behind nanfang-fsm8, aquaguard-rm4."""

from __future__ import annotations

from typing import Any

from device_profiles.model import Profile
from device_profiles.points import ResolvedPoint
from simulators.devices.base import ModbusDevice
from simulators.physics.sprinkler import SprinklerModel, SprinklerParams

_PRESSURE_PER_BAR = {"bar": 1.0, "kPa": 100.0, "MPa": 0.1, "psi": 14.5038}


def pressure_in(p: ResolvedPoint, bar: float) -> float:
    """The model works in bar; a profile may report kPa (aquaguard) or psi."""
    return bar * _PRESSURE_PER_BAR.get(p.spec.unit, 1.0)


class SprinklerDevice(ModbusDevice):
    family = "sprinkler"
    Params = SprinklerParams

    def __init__(
        self, device_id: str, profile: Profile, params: dict[str, Any] | None = None, seed: int = 0
    ) -> None:
        model = SprinklerModel(params=SprinklerParams(**(params or {})), seed=seed)
        super().__init__(device_id, profile, model, seed)
        m = model
        self.getters = {
            "waterflow": lambda p: m.waterflow,
            "valve_tamper": lambda p: m.valve_tamper,
            "pump_running": lambda p: m.pump_running,
            "power_fault": lambda p: m.power_fault,
            "pipe_pressure": lambda p: pressure_in(p, m.pipe_pressure),
            "supply_voltage": lambda p: m.supply_voltage,
            "zone_count": lambda p: m.params.zones,
        }
