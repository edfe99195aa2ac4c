"""Charger emulator: `ChargerModel` behind any charger profile (voltpile-cp10, hengtong-ebc12)."""

from __future__ import annotations

from typing import Any

from device_profiles.model import Profile
from simulators.devices.base import ModbusDevice, ModbusError, enum_value
from simulators.physics.charger import ChargerModel, ChargerParams


def _instances(profile: Profile, block: str) -> tuple[int, int]:
    rng = profile.instance_range(block)
    return rng.start, len(rng)


class ChargerDevice(ModbusDevice):
    family = "charger"
    Params = ChargerParams

    def __init__(
        self, device_id: str, profile: Profile, params: dict[str, Any] | None = None, seed: int = 0
    ) -> None:
        first, n = _instances(profile, "port")
        model = ChargerModel(n_ports=n, params=ChargerParams(**(params or {})), seed=seed, first=first)
        super().__init__(device_id, profile, model, seed)
        m: ChargerModel = model
        self.getters = {
            "smoke": lambda p: m.smoke,
            "main_relay": lambda p: m.main_relay,
            "door_open": lambda p: m.door_open,
            "ambient_temp": lambda p: m.ambient_temp,
            "firmware": lambda p: self.firmware,
        }
        self.block_getters = {
            # A profile without "plugged" (voltpile-cp10) shows such a port as idle.
            "state": lambda p, i: enum_value(p, m.ports[i].state, "idle"),
            "voltage": lambda p, i: m.ports[i].voltage,
            "current": lambda p, i: m.ports[i].current,
            "power": lambda p, i: m.ports[i].power,
            "energy": lambda p, i: m.ports[i].energy_kwh,
            "connector_temp": lambda p, i: m.ports[i].connector_temp,
            "enabled": lambda p, i: m.ports[i].enabled,
        }

    @property
    def charger(self) -> ChargerModel:
        m: ChargerModel = self.model
        return m

    def apply_command(self, key: str, index: int | None, value: bool | int) -> None:
        if key == "port_enable" and index is not None:
            self.charger.set_enabled(index, bool(value))
        elif key == "main_cut":
            self.charger.set_main(False)
        elif key == "main_restore":
            self.charger.set_main(True)
        else:
            raise ModbusError(1, f"no handler for command {key}")
