"""One emulator per device family; `make_device` picks it from the profile."""

from __future__ import annotations

from typing import Any

from device_profiles.model import Family, Profile
from simulators.devices.base import ModbusDevice, ModbusError
from simulators.devices.charger import ChargerDevice
from simulators.devices.faults import Faults
from simulators.devices.line_receiver import LineReceiverDevice, LineReceiverParams
from simulators.devices.parking import ParkingDevice
from simulators.devices.sprinkler import SprinklerDevice

Device = ModbusDevice | LineReceiverDevice


def device_class(
    profile: Profile,
) -> type[ChargerDevice] | type[SprinklerDevice] | type[ParkingDevice] | type[LineReceiverDevice]:
    if not profile.is_modbus:
        if profile.family is Family.PARKING:
            return LineReceiverDevice
        raise ValueError(f"no line-protocol emulator for family {profile.family.value}")
    if profile.family is Family.CHARGER:
        return ChargerDevice
    if profile.family is Family.SPRINKLER:
        return SprinklerDevice
    return ParkingDevice


def make_device(
    device_id: str, profile: Profile, params: dict[str, Any] | None = None, seed: int = 0
) -> Device:
    return device_class(profile)(device_id, profile, params, seed)


__all__ = [
    "ChargerDevice",
    "Device",
    "Faults",
    "LineReceiverDevice",
    "LineReceiverParams",
    "ModbusDevice",
    "ModbusError",
    "ParkingDevice",
    "SprinklerDevice",
    "device_class",
    "make_device",
]
