"""An e-bike battery on charge, and the ways it fails. Pure and scalar, so the live simulator (a
few ports at 10 Hz) and the early-warning bench (thousands of sessions at 5 s steps) run the same
physics.

A `Pack` is what a resident plugs in: the battery (capacity, age, state of charge, temperature)
and its own charger brick (the AC current of its constant-current phase, the state of charge
where its constant-voltage taper begins). A `Failure` develops on a pack or on the port's
connector from `onset_s` after it was set, at `speed` (1 = the nominal pace below) and with
`severity` (0..1, how strong it gets):

- `bms_failure`: the BMS stops ending the charge: no taper, current keeps flowing past full, and
  the overcharge heats the pack more the further it goes. Seen as a charge that never tapers,
  energy beyond the pack, heat under a constant current.
- `micro_short`: an internal short that spreads: self-heating, current spikes and ripple, and the
  short drains part of what comes in. Seen as spikes and ripple, heat the current does not explain.
- `hot_connector`: the port's contact resistance grows (an oxidised or loose plug): heating
  ∝ I² × resistance. Seen as a connector hotter than its current (or its peers) explains.
- `ageing_pack`: a worn pack's internal losses grow and feed on its own heat: warmer, and less of
  the energy is stored (a longer constant-current phase). Seen as slow warming under a steady current.

Any pack whose temperature reaches `RUNAWAY_C` goes into thermal runaway (`RUNAWAY_K_PER_S`,
whatever the current): cutting the charge before that saves it, after it does not.
Nominal pace at speed 1 and severity 0.75: a few tens of minutes from onset (or, for a BMS
failure, from full) to runaway or to the port's cut-off.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, get_args

FailureMode = Literal["bms_failure", "micro_short", "hot_connector", "ageing_pack"]
FAILURE_MODES: tuple[str, ...] = get_args(FailureMode)

RUNAWAY_C = 80.0  # pack temperature where its chemistry takes over
RUNAWAY_K_PER_S = 2.5
BURNT_C = 600.0  # a runaway pack burns at about this and gets no hotter
CHARGER_EFF = 0.88  # AC → DC of the charger brick; the rest heats the locker
HEALTHY_LOSS = 0.03  # share of DC power a new pack turns into heat
AGED_LOSS = 0.03  # extra loss of a worn pack (age 1)
MIN_TAPER = 0.08  # the brick's current floor at the end of its taper, × its CC current
END_OF_CHARGE = 0.995  # the brick stops (full) once the pack takes no more than its floor
FULL_STANDBY_A = 0.02  # what a brick draws once the pack is full


@dataclass(slots=True)
class Failure:
    mode: FailureMode
    onset_s: float = 0.0  # delay from when it was set
    speed: float = 1.0  # 1 = nominal pace; 2 = twice as fast
    severity: float = 0.75  # 0..1
    waited_s: float = 0.0
    x: float = 0.0  # progress: nominal-pace minutes since onset / the mode's scale
    spike_until: float = -1.0  # micro-short: a current spike lasts until this failure time

    @property
    def active(self) -> bool:
        return self.waited_s >= self.onset_s


# Progress scale per mode (minutes at speed 1 for x to reach 1).
SCALE_MIN: dict[str, float] = {"bms_failure": 1.0, "micro_short": 25.0, "hot_connector": 30.0, "ageing_pack": 30.0}


@dataclass(slots=True)
class Pack:
    capacity_kwh: float = 0.6
    soc: float = 0.2
    charger_a: float = 1.6  # AC current of the brick's constant-current phase
    taper_from: float = 0.85  # state of charge where the brick's constant-voltage phase begins
    age: float = 0.0  # 0 new … 1 worn out
    ripple: float = 0.0  # the brick's own current wobble (relative, 1 sigma); cheap bricks have some
    temp: float = 24.0
    failure: Failure | None = None
    runaway: bool = False
    overcharge_kwh: float = 0.0  # energy pushed in past full (a failed BMS)
    heat_w: float = field(default=0.0)  # heat released inside the pack in the last step

    @property
    def usable_kwh(self) -> float:
        """A worn pack holds less (up to a third less at age 1)."""
        return self.capacity_kwh * (1.0 - 0.33 * self.age)

    def fails(self, mode: str) -> Failure | None:
        f = self.failure
        return f if f is not None and f.mode == mode and f.active else None


def brick_current(pack: Pack) -> float:
    """What the brick draws now (AC A), before any failure's ripple: constant current, a taper from
    `taper_from`, a trickle once full. A failed BMS never lets it taper."""
    i = pack.charger_a
    if pack.fails("bms_failure") is not None:
        return i * (1.0 + 0.06 * pack.failure.severity)  # type: ignore[union-attr]
    if pack.soc >= 1.0:
        return FULL_STANDBY_A
    if pack.soc < pack.taper_from:
        return i
    return i * max(MIN_TAPER, (1.0 - pack.soc) / (1.0 - pack.taper_from))


def advance_failure(f: Failure, dt: float) -> None:
    if not f.active:
        f.waited_s += dt
        return
    f.x += dt * f.speed / 60.0 / SCALE_MIN[f.mode]


def ageing_loss(f: Failure, temp: float) -> float:
    """Ageing pack: extra share of the DC power lost as heat; grows with wear and feeds on the
    pack's own temperature (Arrhenius-like), which is what turns a warm pack into a runaway."""
    return f.severity * 0.3 * f.x * math.exp((temp - 30.0) / 20.0)


def short_heat_w(f: Failure) -> float:
    """Micro-short: the short's own dissipation, growing as it spreads."""
    return min(400.0, f.severity * 12.0 * (math.exp(1.6 * f.x) - 1.0))


def contact_factor(f: Failure | None) -> float:
    """Hot connector: resistance relative to a good contact; grows, then runs away when hot."""
    if f is None or f.mode != "hot_connector" or not f.active:
        return 1.0
    return 1.0 + f.severity * 3.0 * (math.exp(1.3 * f.x) - 1.0)


def loss_share(pack: Pack) -> float:
    """Share of the DC power the pack turns into heat: more with age, much more when an ageing
    failure feeds on the pack's temperature."""
    loss = HEALTHY_LOSS + AGED_LOSS * pack.age
    f = pack.failure
    if f is not None and f.active and f.mode == "ageing_pack":
        loss += ageing_loss(f, pack.temp)
    return min(loss, 0.9)


def pack_heat_w(pack: Pack, p_ac: float) -> float:
    """Heat released inside the pack this instant (W): its losses, plus what a short or an
    overcharge adds."""
    p_dc = p_ac * CHARGER_EFF
    f = pack.failure
    q = 0.0
    if f is not None and f.active:
        if f.mode == "micro_short":
            q += short_heat_w(f)
        elif f.mode == "bms_failure" and pack.overcharge_kwh > 0:
            over = pack.overcharge_kwh / max(pack.usable_kwh, 0.05)  # share of capacity past full
            q += f.severity * p_dc * min(1.0, f.speed * over / 0.15)
    return q + loss_share(pack) * p_dc


def charge(pack: Pack, p_ac: float, dt: float) -> None:
    """Store what the brick delivers (less losses and what a short drains)."""
    if p_ac <= 0 and pack.failure is None:
        return
    f = pack.failure
    drain = short_heat_w(f) if f is not None and f.active and f.mode == "micro_short" else 0.0
    stored_w = max(0.0, p_ac * CHARGER_EFF * (1.0 - loss_share(pack))) - drain
    d_soc = stored_w * dt / 3.6e6 / max(pack.usable_kwh, 0.05)
    if pack.soc >= 1.0 and d_soc > 0 and pack.fails("bms_failure") is not None:
        pack.overcharge_kwh += stored_w * dt / 3.6e6
        return
    soc = min(1.0, max(0.0, pack.soc + d_soc))
    pack.soc = 1.0 if soc >= END_OF_CHARGE and pack.fails("bms_failure") is None else soc
