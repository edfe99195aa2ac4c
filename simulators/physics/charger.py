"""E-bike charger cabinet: N ports where residents plug their batteries in (`battery.Pack`), charge
(constant current, then the brick's taper) and leave.

Heat, per port: the connector's contact (∝ I² × its resistance, fast: `thermal_tau_s`), the
charger brick's losses in the locker, the pack's own heat seen through the locker air
(`pack_coupling`), the cabinet air (what the ambient sensor reads: outside temperature plus the
heat of every port), the port's own place in the cabinet (`local_offset`: the sunny side, a
draught) and its two neighbours' losses. The connector sensor reads that with a little noise and,
when told, glitches (a stuck value, a single spike). A `runaway` port (a connector failing by
itself, the demo's scenario) heats several °C/s until its power is cut; packs and connectors fail
more slowly as `battery.Failure` describes.

Why a model rather than random numbers: the edge interlock, the cloud's rules and the charge-session
analytics must see the physically plausible shape (slow warm-up under load, the taper, cooling
after cut-off, neighbours warming each other, heat that current and ambient do not explain).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from simulators.physics.battery import (
    BURNT_C,
    CHARGER_EFF,
    RUNAWAY_C,
    RUNAWAY_K_PER_S,
    Failure,
    FailureMode,
    Pack,
    advance_failure,
    brick_current,
    charge,
    contact_factor,
    pack_heat_w,
    short_heat_w,
)
from simulators.physics.variety import Weather, WeatherKind, random_pack

PortState = Literal["idle", "plugged", "charging", "full", "fault", "disabled"]


class ChargerParams(BaseModel):
    """Model parameters a site file may set under a charger's `params:`."""

    model_config = ConfigDict(extra="forbid")

    ambient_c: float = Field(default=24.0, ge=-40, le=60, description="outside temperature around the cabinet")
    mains_v: float = Field(default=228.0, ge=100, le=260)
    charge_current_a: float = Field(default=1.6, gt=0, le=10, description="constant-current phase")
    battery_kwh: float = Field(default=0.6, gt=0, le=5, description="typical e-bike battery")
    arrivals_per_hour: float = Field(default=0.5, ge=0, description="per idle port")
    stay_full_s: float = Field(default=1800.0, ge=0, description="mean time a full bike stays")
    plugged: list[int] = Field(default_factory=list, description="ports with a bike at start")
    thermal_tau_s: float = Field(default=120.0, gt=0, description="connector thermal time constant")
    heat_c_per_a2: float = Field(default=1.6, ge=0, description="connector steady-state rise per ampere squared")
    runaway_c_per_s: float = Field(default=4.0, gt=0)
    pack_tau_s: float = Field(default=2400.0, gt=0, description="pack thermal time constant")
    pack_k_per_w: float = Field(default=0.3, ge=0, description="pack steady-state rise per watt released in it")
    pack_coupling: float = Field(default=0.4, ge=0, le=1, description="share of the pack's warmth the sensor sees")
    brick_k_per_w: float = Field(default=0.04, ge=0, description="port rise per watt the charger brick loses")
    neighbour_k_per_w: float = Field(default=0.03, ge=0, description="port rise per watt lost by each neighbour")
    cabinet_k_per_w: float = Field(default=0.004, ge=0, description="cabinet air rise per watt lost in it")
    cabinet_tau_s: float = Field(default=900.0, gt=0)
    sensor_noise_c: float = Field(default=0.05, ge=0, description="connector sensor noise (1 sigma)")
    variety: bool = Field(default=False, description="arriving bikes bring packs of random size, age, charger")
    weather: WeatherKind = Field(default="steady", description="drives the outside temperature (variety.Weather)")
    meter_noise_rel: float = Field(default=0.002, ge=0, description="current meter noise (relative, 1 sigma)")
    firmware: str = "2.31"


@dataclass
class Port:
    """One charging port; `current`, `power`, `voltage` and `connector_temp` are what its meter and
    sensor read now (`true_temp` is the connector's real temperature)."""

    number: int
    enabled: bool = True
    bike: bool = False
    fault: bool = False
    runaway: bool = False
    voltage: float = 0.0
    current: float = 0.0
    power: float = 0.0
    energy_kwh: float = 0.0  # this session's, reset when a bike is plugged in
    connector_temp: float = 24.0
    true_temp: float | None = None
    full_since_s: float = 0.0
    powered: bool = True  # main relay closed (kept by the cabinet model)
    pack: Pack = field(default_factory=Pack)
    connector: Failure | None = None  # a failing contact (hot_connector) belongs to the port
    heat_coeff: float | None = None  # K/A² of this port's contact; None: the cabinet's
    local_offset: float = 0.0  # this port's air vs the cabinet sensor (the sunny side, a draught)
    sun_c: float = 0.0  # how much warmer its air gets in full sun
    neighbour_heat: float = 0.0  # K its neighbours' losses add to its air (lagged)
    loss_w: float = 0.0  # heat it releases into the cabinet now
    i_true: float = 0.0  # the current that flows (`current` is what the meter reads)
    p_true: float = 0.0
    stuck_until: float = -1.0  # sensor glitches, in model seconds
    stuck_value: float = 0.0
    spike_until: float = -1.0
    spike_value: float = 0.0
    meter_spike_until: float = -1.0  # a one-off glitch of the current meter
    meter_spike_factor: float = 1.0

    def __post_init__(self) -> None:
        if self.true_temp is None:
            self.true_temp = self.connector_temp

    @property
    def soc(self) -> float:
        return self.pack.soc

    @soc.setter
    def soc(self, v: float) -> None:
        self.pack.soc = v

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
        if self.i_true <= 0.05 and self.soc >= 1.0:
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
    ambient_temp: float = 0.0  # cabinet air, as its sensor reads it
    ports: dict[int, Port] = field(default_factory=dict)
    first: int = 1
    elapsed_s: float = 0.0
    weather: Weather | None = None
    ambient_ramp: tuple[float, float, float, float] | None = None  # (from °C, to °C, start, duration s)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        # Meter and sensor noise from a table of seeded normals: rng.gauss per port and step was
        # most of the cost of a step (the bench runs millions).
        self._noise = [self.rng.gauss(0, 1) for _ in range(4099)]
        self._ni = 0
        if self.weather is None and self.params.weather != "steady":
            self.weather = Weather(self.params.weather, self.params.ambient_c, self.seed)
        self.ambient_temp = self.weather.outside(0.0) if self.weather else self.params.ambient_c
        if not self.ports:
            self.ports = {
                n: Port(number=n, connector_temp=self.ambient_temp)
                for n in range(self.first, self.first + self.n_ports)
            }
        self._order = [self.ports[n] for n in sorted(self.ports)]
        if self.params.variety:
            for p in self._order[: max(1, len(self._order) // 3)]:  # the sunny side
                p.sun_c = self.rng.uniform(0.5, 3.0)
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

    def new_pack(self, soc: float) -> Pack:
        """The pack a bike arrives with: the cabinet's typical one, or (`variety`) any e-bike's."""
        prm = self.params
        if not prm.variety:
            return Pack(capacity_kwh=prm.battery_kwh, soc=soc, charger_a=prm.charge_current_a, temp=self.ambient_temp)
        return random_pack(self.rng, soc, self.ambient_temp)

    def plug(self, number: int, soc: float = 0.2, pack: Pack | None = None) -> None:
        p = self.port(number)
        p.bike, p.full_since_s, p.energy_kwh = True, 0.0, 0.0
        p.pack = pack if pack is not None else self.new_pack(soc)
        self._update_meters()

    def unplug(self, number: int) -> None:
        p = self.port(number)
        p.bike = False
        p.pack = Pack(soc=0.0, temp=self.ambient_temp)
        self._update_meters()

    def set_enabled(self, number: int, on: bool) -> None:
        """The port relay. Switching off stops the current at once and ends a connector runaway."""
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
            self.plug(number, soc=0.3)
        p.runaway = True
        self._update_meters()

    runaway = start_runaway

    def cool(self, number: int) -> None:
        """The connector back at the cabinet air's temperature at once, sensor and truth (a test's
        shortcut between two runs: setting the reading alone left the connector hot, and the next
        step read it hot again)."""
        p = self.port(number)
        p.runaway = False
        p.true_temp = p.connector_temp = self.ambient_temp

    def fail(self, number: int, mode: FailureMode, onset_s: float = 0.0, speed: float = 1.0,
             severity: float = 0.75) -> Failure:
        """Start a slow failure on the port's pack (or, `hot_connector`, its contact); a pack failure
        on an empty port plugs a bike in."""
        p = self.port(number)
        f = Failure(mode, onset_s=onset_s, speed=speed, severity=severity)
        if mode == "hot_connector":
            p.connector = f
        else:
            if not p.bike:
                self.plug(number, soc=0.3)
            p.pack.failure = f
        self._update_meters()
        return f

    def sensor_stuck(self, number: int, duration_s: float) -> None:
        """The connector sensor keeps reading its current value for `duration_s`."""
        p = self.port(number)
        p.stuck_until, p.stuck_value = self.elapsed_s + duration_s, p.connector_temp

    def sensor_spike(self, number: int, value: float, duration_s: float = 1.0) -> None:
        """The connector sensor reads `value` once (for `duration_s`), then recovers."""
        p = self.port(number)
        p.spike_until, p.spike_value = self.elapsed_s + duration_s, value
        p.connector_temp = value

    def meter_spike(self, number: int, factor: float, duration_s: float = 1.0) -> None:
        """The current meter reads `factor` × the current (and power) once: a glitch of the meter,
        not of the load, so nothing heats."""
        p = self.port(number)
        p.meter_spike_until, p.meter_spike_factor = self.elapsed_s + duration_s, factor
        self._update_meters()

    def set_ambient(self, celsius: float, over_s: float = 0.0) -> None:
        """The cabinet's ambient temperature: at once (a step), or a straight ramp from the
        current value over `over_s` simulated seconds (a hot afternoon, a failing fan). Either
        replaces the weather."""
        self.weather = None
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
        prm = self.params
        if self.ambient_ramp is not None:
            start_c, end_c, t0, over = self.ambient_ramp
            frac = min(1.0, (self.elapsed_s - t0) / over)
            self.ambient_temp = prm.ambient_c = start_c + (end_c - start_c) * frac
            if frac >= 1.0:
                self.ambient_ramp = None
        self._arrivals(dt)
        k_fast = 1.0 - math.exp(-dt / prm.thermal_tau_s)
        k_pack = 1.0 - math.exp(-dt / prm.pack_tau_s)
        k_cab = 1.0 - math.exp(-dt / prm.cabinet_tau_s)
        order = self._order
        total_loss = 0.0
        for p in order:
            if not p.bike:
                p.loss_w = 0.0
                if p.connector is not None:
                    advance_failure(p.connector, dt)
                continue
            pk = p.pack
            if pk.failure is not None:
                advance_failure(pk.failure, dt)
            if p.connector is not None:
                advance_failure(p.connector, dt)
            p_ac = p.p_true
            q_pack = pack_heat_w(pk, p_ac)
            pk.heat_w = q_pack
            charge(pk, p_ac, dt)
            p.energy_kwh += p_ac * dt / 3.6e6
            p.loss_w = p_ac * (1.0 - CHARGER_EFF) + q_pack
            total_loss += p.loss_w
        # Cabinet air: outside (and the sun on it) plus every port's heat, as its sensor reads it.
        w = self.weather
        outside = w.outside(self.elapsed_s) if w is not None else prm.ambient_c
        sun = w.sun(self.elapsed_s) if w is not None else 0.0
        cab_target = outside + prm.cabinet_k_per_w * total_loss
        self.ambient_temp += (cab_target - self.ambient_temp) * k_cab + 0.01 * self._gauss() * math.sqrt(dt)
        cab = self.ambient_temp
        n = len(order)
        coupling, brick = prm.pack_coupling, prm.brick_k_per_w * (1.0 - CHARGER_EFF)
        for i, p in enumerate(order):
            left = order[i - 1].loss_w if i > 0 else 0.0
            right = order[i + 1].loss_w if i + 1 < n else 0.0
            p.neighbour_heat += (prm.neighbour_k_per_w * (left + right) - p.neighbour_heat) * k_cab
            local = cab + p.local_offset + p.sun_c * sun + p.neighbour_heat
            target = local
            if p.bike:
                pk = p.pack
                pk.temp += (local + prm.pack_k_per_w * pk.heat_w - pk.temp) * k_pack
                if pk.temp >= RUNAWAY_C:
                    pk.runaway = True
                if pk.runaway:
                    pk.temp = min(BURNT_C, pk.temp + RUNAWAY_K_PER_S * dt)
                coeff = prm.heat_c_per_a2 if p.heat_coeff is None else p.heat_coeff
                r = contact_factor(p.connector) if p.connector is not None else 1.0
                amps = p.i_true
                target += coeff * r * amps * amps + brick * p.p_true + coupling * (pk.temp - local)
            tt = p.true_temp if p.true_temp is not None else p.connector_temp
            tt += (target - tt) * k_fast
            if p.runaway and self.powered(p):
                tt += prm.runaway_c_per_s * dt
            p.true_temp = tt
            p.connector_temp = self._read_sensor(p, tt)
        self._update_meters()

    def _gauss(self) -> float:
        self._ni = (self._ni + 1) % len(self._noise)
        return self._noise[self._ni]

    def _arrivals(self, dt: float) -> None:
        prm, rng = self.params, self.rng
        arrive = 1 - math.exp(-prm.arrivals_per_hour * dt / 3600)
        leave = 1 - math.exp(-dt / prm.stay_full_s) if prm.stay_full_s > 0 else 0.0
        for p in self._order:
            if not p.bike:
                if arrive and p.enabled and not p.fault and rng.random() < arrive:
                    self.plug(p.number, soc=rng.uniform(0.05, 0.7))
            elif p.soc >= 1.0 and p.i_true <= 0.05:
                p.full_since_s += dt
                if leave and not p.runaway and p.pack.failure is None and rng.random() < leave:
                    self.unplug(p.number)

    def _read_sensor(self, p: Port, true_temp: float) -> float:
        t = self.elapsed_s
        if t < p.spike_until:
            return p.spike_value
        if t < p.stuck_until:
            return p.stuck_value
        noise = self.params.sensor_noise_c
        return true_temp + noise * self._gauss() if noise else true_temp

    def _update_meters(self) -> None:
        prm = self.params
        noise_t, k, size = self._noise, self._ni, len(self._noise)
        for p in self._order:
            p.powered = self.main_relay
            live = self.main_relay and p.enabled and not p.fault
            k = (k + 1) % size
            p.voltage = prm.mains_v + 0.4 * noise_t[k] if live else 0.0
            if live and p.bike:
                pk = p.pack
                i = brick_current(pk) * (1.15 if p.runaway else 1.0)
                f = pk.failure
                if f is not None and f.mode == "micro_short" and f.active and i > 0:
                    i = _short_current(f, i, pk, self.rng)
                noise = prm.meter_noise_rel + pk.ripple
                if noise:
                    k = (k + 1) % size
                    i *= 1.0 + noise * noise_t[k]
                p.i_true = i
                if self.elapsed_s < p.meter_spike_until:
                    i *= p.meter_spike_factor
                p.current = i
            else:
                p.current = p.i_true = 0.0
            p.power = p.voltage * p.current * 0.97 if p.current else 0.0
            p.p_true = p.voltage * p.i_true * 0.97
        self._ni = k


def _short_current(f: Failure, i: float, pack: Pack, rng: random.Random) -> float:
    """A micro-short seen from the charger: ripple, the odd spike as the short arcs, and the
    current the short itself draws once the brick would have tapered."""
    s = f.severity * min(1.0, f.x)
    i = max(i, min(pack.charger_a, short_heat_w(f) / 190.0))
    i *= 1.0 + rng.gauss(0, 0.04 * s)
    if rng.random() < 0.08 * s:
        i *= 1.0 + rng.uniform(0.25, 0.6) * s
    return max(0.0, i)
