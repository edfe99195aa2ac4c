"""E-bike charger: N ports with bikes that plug in, charge (CC then taper) and leave; connector
temperature follows I² and ambient through a first-order thermal lag, and a `runaway` port heats
by several °C/s until its power is cut, as a failing connector or battery does.

Why a model rather than random numbers: the edge interlock and the cloud's rate-of-rise alarm
must see the physically plausible shape (slow warm-up under load, fast climb, cooling after cut-off).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

PortState = Literal["idle", "plugged", "charging", "full", "fault", "disabled"]


class ChargerParams(BaseModel):
    """Model parameters a site file may set under a charger's `params:`."""

    model_config = ConfigDict(extra="forbid")

    ambient_c: float = Field(default=24.0, ge=-40, le=60, description="cabinet ambient temperature")
    mains_v: float = Field(default=228.0, ge=100, le=260)
    charge_current_a: float = Field(default=1.6, gt=0, le=10, description="constant-current phase")
    battery_kwh: float = Field(default=0.6, gt=0, le=5, description="typical e-bike battery")
    arrivals_per_hour: float = Field(default=0.5, ge=0, description="per idle port")
    stay_full_s: float = Field(default=1800.0, ge=0, description="mean time a full bike stays")
    plugged: list[int] = Field(default_factory=list, description="ports with a bike at start")
    thermal_tau_s: float = Field(default=120.0, gt=0, description="connector thermal time constant")
    heat_c_per_a2: float = Field(default=3.0, ge=0, description="steady-state rise per ampere squared")
    runaway_c_per_s: float = Field(default=4.0, gt=0)
    firmware: str = "2.31"


@dataclass
class Port:
    """One charging port; `current`, `power` and `voltage` are what the meter reads now."""

    number: int
    enabled: bool = True
    bike: bool = False
    soc: float = 0.0  # state of charge of the plugged battery, 0..1
    fault: bool = False
    runaway: bool = False
    voltage: float = 0.0
    current: float = 0.0
    power: float = 0.0
    energy_kwh: float = 0.0
    connector_temp: float = 24.0
    full_since_s: float = 0.0
    powered: bool = True  # main relay closed (kept by the cabinet model)

    @property
    def state(self) -> PortState:
        if not self.enabled:
            return "disabled"
        if self.fault:
            return "fault"
        if not self.bike:
            return "idle"
        if not self.powered:
            return "plugged"  # a bike is connected but the cabinet has no power
        if self.soc >= 1.0:
            return "full"
        return "charging"


@dataclass
class ChargerModel:
    n_ports: int
    params: ChargerParams = field(default_factory=ChargerParams)
    seed: int = 0
    smoke: bool = False
    main_relay: bool = True
    door_open: bool = False
    ambient_temp: float = 0.0
    ports: dict[int, Port] = field(default_factory=dict)
    first: int = 1
    elapsed_s: float = 0.0
    ambient_ramp: tuple[float, float, float, float] | None = None  # (from °C, to °C, start, duration s)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.ambient_temp = self.params.ambient_c
        if not self.ports:
            self.ports = {
                n: Port(number=n, connector_temp=self.params.ambient_c)
                for n in range(self.first, self.first + self.n_ports)
            }
        for n in self.params.plugged:
            if n in self.ports:
                self.plug(n, soc=self.rng.uniform(0.1, 0.6))
        self._update_meters()

    # ---- actions (scenarios, commands, tests) ----
    def port(self, number: int) -> Port:
        try:
            return self.ports[number]
        except KeyError:
            raise KeyError(f"no port {number}; ports are {min(self.ports)}..{max(self.ports)}") from None

    def plug(self, number: int, soc: float = 0.2) -> None:
        p = self.port(number)
        p.bike, p.soc, p.full_since_s = True, soc, 0.0
        self._update_meters()

    def unplug(self, number: int) -> None:
        p = self.port(number)
        p.bike, p.soc = False, 0.0
        self._update_meters()

    def set_enabled(self, number: int, on: bool) -> None:
        """The port relay. Switching off stops the current at once and ends a runaway."""
        p = self.port(number)
        p.enabled = on
        if not on:
            p.runaway = False
        self._update_meters()

    def set_main(self, on: bool) -> None:
        """Main contactor: cutting it stops every port at once."""
        self.main_relay = on
        if not on:
            for p in self.ports.values():
                p.runaway = False
        self._update_meters()

    def start_runaway(self, number: int) -> None:
        """A failing connector: heats fast while powered. Plugs a bike in if the port was empty."""
        p = self.port(number)
        if not p.bike:
            p.bike, p.soc = True, 0.3
        p.runaway = True
        self._update_meters()

    runaway = start_runaway

    def set_ambient(self, celsius: float, over_s: float = 0.0) -> None:
        """The cabinet's ambient temperature: at once (a step), or a straight ramp from the
        current value over `over_s` simulated seconds (a hot afternoon, a failing fan)."""
        if over_s <= 0:
            self.ambient_ramp = None
            self.ambient_temp = self.params.ambient_c = celsius
        else:
            self.ambient_ramp = (self.ambient_temp, celsius, self.elapsed_s, over_s)

    def set_fault(self, number: int, on: bool = True) -> None:
        self.port(number).fault = on
        self._update_meters()

    def powered(self, p: Port) -> bool:
        return self.main_relay and p.enabled and not p.fault

    # ---- time ----
    def step(self, dt: float) -> None:
        if dt <= 0:
            return
        self.elapsed_s += dt
        prm, rng = self.params, self.rng
        if self.ambient_ramp is not None:
            start_c, end_c, t0, over = self.ambient_ramp
            frac = min(1.0, (self.elapsed_s - t0) / over)
            self.ambient_temp = prm.ambient_c = start_c + (end_c - start_c) * frac
            if frac >= 1.0:
                self.ambient_ramp = None
        # Ambient wanders slowly around its set point (cabinet ventilation, sun).
        self.ambient_temp += (prm.ambient_c - self.ambient_temp) * min(1.0, dt / 600) + rng.gauss(
            0, 0.01
        ) * math.sqrt(dt)
        for p in self.ports.values():
            if not p.bike:
                if (
                    p.enabled
                    and not p.fault
                    and rng.random() < 1 - math.exp(-prm.arrivals_per_hour * dt / 3600)
                ):
                    p.bike, p.soc, p.full_since_s = True, rng.uniform(0.05, 0.7), 0.0
            elif p.soc >= 1.0:
                p.full_since_s += dt
                if (
                    prm.stay_full_s > 0
                    and not p.runaway
                    and rng.random() < 1 - math.exp(-dt / prm.stay_full_s)
                ):
                    p.bike, p.soc = False, 0.0
        self._update_meters()
        for p in self.ports.values():
            if p.current > 0 and p.bike:
                p.soc = min(1.0, p.soc + p.power * dt / 3.6e6 / prm.battery_kwh)
                p.energy_kwh += p.power * dt / 3.6e6
            target = self.ambient_temp + prm.heat_c_per_a2 * p.current**2
            p.connector_temp += (target - p.connector_temp) * (1 - math.exp(-dt / prm.thermal_tau_s))
            if p.runaway and self.powered(p):
                p.connector_temp += prm.runaway_c_per_s * dt
        self._update_meters()

    def _update_meters(self) -> None:
        prm = self.params
        for p in self.ports.values():
            p.powered = self.main_relay
            live = self.powered(p)
            p.voltage = prm.mains_v + self.rng.gauss(0, 0.4) if live else 0.0
            if live and p.bike and p.soc < 1.0:
                # Constant current, tapering above 80 % state of charge.
                taper = 1.0 if p.soc < 0.8 else max(0.08, (1.0 - p.soc) / 0.2)
                p.current = prm.charge_current_a * taper * (1.15 if p.runaway else 1.0)
            elif live and p.bike:
                p.current = 0.02  # trickle / charger standby once full
            else:
                p.current = 0.0
            p.power = p.voltage * p.current * 0.97 if p.current else 0.0
