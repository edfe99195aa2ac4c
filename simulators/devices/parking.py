"""Parking hub emulator: `ParkingModel` behind parkhub-ph48 (any Modbus parking profile)."""

from __future__ import annotations

from typing import Any

from device_profiles.model import Profile
from simulators.devices.base import ModbusDevice
from simulators.physics.parking import ParkingModel, ParkingParams


class ParkingDevice(ModbusDevice):
    family = "parking"
    Params = ParkingParams

    def __init__(
        self, device_id: str, profile: Profile, params: dict[str, Any] | None = None, seed: int = 0
    ) -> None:
        rng = profile.instance_range("bay")
        model = ParkingModel(
            n_bays=len(rng), params=ParkingParams(**(params or {})), seed=seed, first=rng.start
        )
        super().__init__(device_id, profile, model, seed)
        m = model
        self.getters = {"occupied_count": lambda p: m.occupied_count}
        self.block_getters = {
            "occupied": lambda p, i: m.bays[i].occupied,
            "sensor_fault": lambda p, i: m.bays[i].sensor_fault,
            "battery": lambda p, i: m.bays[i].battery,
            "rssi": lambda p, i: m.bays[i].rssi,
        }

    def step(self, dt: float) -> None:
        with self.lock:
            self.model.step(dt)
            self.model.drain_changes()  # a Modbus hub is polled; nobody consumes change events
