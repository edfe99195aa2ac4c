"""Pure physical models of the devices: no I/O, stepped with `step(dt_s)`, random from a seeded RNG.

Instances (charger ports, parking bays) are kept in dicts keyed by the number printed on the device
(port 1..N, bay 1..N), the same numbers the profiles use, so `model.ports[3]` is port 3.
"""

from simulators.physics.charger import ChargerModel, ChargerParams, Port
from simulators.physics.parking import Bay, ParkingModel, ParkingParams
from simulators.physics.sprinkler import SprinklerModel, SprinklerParams

__all__ = [
    "Bay",
    "ChargerModel",
    "ChargerParams",
    "ParkingModel",
    "ParkingParams",
    "Port",
    "SprinklerModel",
    "SprinklerParams",
]
