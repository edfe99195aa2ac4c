"""What a quiet fleet may send: each point's value range and behaviour derived from its profile's
alarm rules, so routine load raises no alarm — whatever profile is added to the catalog.

The fleet generator (simulators/fleet.py) starts from a plausible nominal range per point key (in
the key's usual unit, converted to the profile's unit: aquaguard reports kPa, nanfang bar) and then
applies every value rule of the profile to that point:

- `threshold`: values stay on the safe side of the rule's `clear` level (never where it raises);
  when the nominal range lies entirely in the alarm region (it once did: pipe pressure 0.35–0.6 bar
  under a 1.5 bar low-pressure rule raised 40 alarms a run), the range moves to the safe side.
- `rate_of_rise`: the value wanders at most `band` around its own starting value, so no two
  readings ≥ 5 s apart (the rule's shortest span, cloud/alarms/rules.py) differ by more than half
  of what the rule raises at, however fast the ticks come.
- `state`: a boolean is held at the value the rule does not name (no smoke, no waterflow); an enum
  label the rule names is never sent, unless the rule's `for` is an hour or longer — those name a
  normal state held too long (charging over 8 h), which the generator ends within half of `for`.
- `only_tagged` rules apply to the instances the site tags so (fire-lane bays stay free).

Composite rules are made of these parts; offline, comm-error and event rules are about messages,
not values (the fleet speaks every tick, reports healthy polls and sends no edge actions).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cloud.alarms.rules import RATE_MIN_SPAN_S
from device_profiles.limits import matches
from device_profiles.model import AlarmKind, AlarmRule, Profile

Scalar = bool | int | float | str

# Plausible nominal ranges by point key and the unit they are written in.
NOMINAL: dict[str, tuple[float, float, str]] = {
    "voltage": (48.0, 58.0, "V"),
    "current": (0.0, 4.0, "A"),
    "power": (0.0, 220.0, "W"),
    "energy": (0.0, 50.0, "kWh"),
    "connector_temp": (18.0, 45.0, "°C"),
    "ambient_temp": (12.0, 35.0, "°C"),
    "pipe_pressure": (3.5, 4.5, "bar"),
    "pressure": (3.5, 4.5, "bar"),
    "supply_voltage": (23.5, 24.5, "V"),
    "battery": (2.95, 3.3, "V"),
    "rssi": (-95.0, -50.0, "dBm"),
    "occupied_count": (0.0, 48.0, ""),
}
DEFAULT_RANGE = (0.0, 100.0, "")
UNIT_FACTORS: dict[tuple[str, str], float] = {
    ("bar", "kPa"): 100.0,
    ("bar", "MPa"): 0.1,
    ("bar", "psi"): 14.503774,
    ("V", "mV"): 1000.0,
    ("A", "mA"): 1000.0,
    ("W", "kW"): 0.001,
    ("kWh", "Wh"): 1000.0,
}
# Booleans that are normally false even without a rule on them.
NORMALLY_FALSE = {"smoke", "waterflow", "valve_tamper", "power_fault", "sensor_fault", "door_open", "fault"}
LONG_STATE_S = 3600.0  # a state rule with a `for` this long is about a normal state held too long


@dataclass(frozen=True, slots=True)
class Quiet:
    """How a numeric point may move (`lo`..`hi`, at most `band` around its start) and which enum or
    boolean values it may take (`hold`: the one boolean value; `avoid`: never; `dwell`: at most so
    many seconds at a time)."""

    lo: float
    hi: float
    band: float | None = None
    hold: bool | None = None
    avoid: tuple[Scalar, ...] = ()
    dwell: tuple[tuple[Scalar, float], ...] = ()


def nominal(key: str, unit: str) -> tuple[float, float]:
    """The key's nominal range in the point's unit."""
    lo, hi, base = NOMINAL.get(key, DEFAULT_RANGE)
    f = UNIT_FACTORS.get((base, unit), 1.0) if unit and base and unit != base else 1.0
    return lo * f, hi * f


def applies(rule: AlarmRule, block: str | None, key: str, labels: dict[str, str]) -> bool:
    """Does this value rule judge this point (block, key, and the instance's tags)?"""
    if rule.kind not in (AlarmKind.THRESHOLD, AlarmKind.STATE, AlarmKind.RATE_OF_RISE) or rule.point != key:
        return False
    if rule.block != block:
        return False
    if rule.only_tagged:
        return labels.get(rule.only_tagged, "").lower() in ("true", "yes", "1", "on")
    return True


def quiet(profile: Profile, block: str | None, key: str, kind: str, unit: str = "", step: float = 0.01,
          labels: dict[str, str] | None = None, enum_labels: tuple[str, ...] = (), follow_rules: bool = True) -> Quiet:
    """The quiet behaviour of one point (kind: bool | int | float | enum | str). `follow_rules`
    False: the nominal range only (a test that wants cars in fire lanes, long charges…)."""
    rules = [r for r in profile.alarms if follow_rules and applies(r, block, key, labels or {})]
    lo, hi = nominal(key, unit)
    band: float | None = None
    hold: bool | None = False if key in NORMALLY_FALSE else None
    avoid: list[Scalar] = []
    dwell: list[tuple[Scalar, float]] = []
    for r in rules:
        if r.kind is AlarmKind.THRESHOLD and r.raise_at is not None and r.clear_at is not None:
            lo, hi = _safe_side(r, lo, hi, step)
        elif r.kind is AlarmKind.RATE_OF_RISE and r.rate is not None:
            b = r.rate * RATE_MIN_SPAN_S / 60.0 / 4.0  # two readings differ ≤ 2·band: at most rate/2
            band = b if band is None else min(band, b)
        elif r.kind is AlarmKind.STATE and r.value is not None:
            if kind == "bool":
                hold = not matches(r.value, True)
            elif r.for_s >= LONG_STATE_S and kind == "enum":
                dwell.append((str(r.value), r.for_s / 2.0))
            else:
                avoid += [x for x in enum_labels if matches(r.value, x)] if kind == "enum" else [r.value]
    if kind == "int":
        lo, hi = math.ceil(lo), math.floor(hi)
    return Quiet(lo, max(lo, hi), band, hold, tuple(avoid), tuple(dwell))


def _safe_side(r: AlarmRule, lo: float, hi: float, step: float) -> tuple[float, float]:
    """Keep [lo, hi] where the rule never raises: on the safe side of `clear` (one resolution step
    inside `raise` when the two are equal). A range entirely on the wrong side moves over, keeping
    its width."""
    assert r.raise_at is not None and r.clear_at is not None
    span = hi - lo
    if r.direction == "above":
        bound = r.clear_at if r.clear_at < r.raise_at else r.raise_at - step
        return (lo, min(hi, bound)) if lo < bound else (bound - span, bound)
    bound = r.clear_at if r.clear_at > r.raise_at else r.raise_at + step
    return (max(lo, bound), hi) if hi > bound else (bound, bound + span)
