"""Scenarios: timelines of things happening at a site (a port running away, water flowing, the
evening rush, a slave going silent), played against a running `SimSite`.

```yaml
schema: 1
name: port-runaway
site: shelter-a                 # a shipped site name, or a site file path relative to this file
steps:
  - {at: 30s, device: chg1, do: runaway, port: 3}
  - {at: 90s, device: spk1, do: waterflow, value: true}
```
Every step is checked on load against the site (device exists, the action fits its family, port or
bay in range), and every problem is reported with file:line and key.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from device_profiles.located_yaml import Path_, format_key, load_model
from simulators.devices import ChargerDevice, LineReceiverDevice, ParkingDevice, SprinklerDevice
from simulators.physics.battery import FAILURE_MODES, Pack
from simulators.physics.variety import WEATHERS, Weather
from simulators.shipped import find_shipped
from simulators.site import SimSite, SiteSpec, find_site, load_site

SCENARIOS_DIR = Path(__file__).parent / "scenarios"

_DUR = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h)?\s*$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(v: str | float | int) -> float:
    """`30s`, `2m`, `1.5h`, `500ms` or a plain number of seconds."""
    if isinstance(v, bool):
        raise ValueError("a duration, not true/false")
    if isinstance(v, int | float):
        if v < 0:
            raise ValueError("must not be negative")
        return float(v)
    m = _DUR.match(str(v))
    if not m:
        raise ValueError(f"not a duration: {v!r} (use e.g. 30s, 2m, 1h, 500ms)")
    return float(m.group(1)) * _UNIT[m.group(2)]


Kind = Literal["charger", "sprinkler", "parking", "modbus", "line", "any"]


@dataclass(frozen=True)
class Action:
    kinds: tuple[Kind, ...]
    needs: tuple[str, ...]  # "port", "bay", "value"
    run: Callable[[Any, Step], None]
    help: str


def _val(s: Step, default: Any = True) -> Any:
    return default if s.value is None else s.value


def _plug(d: Any, s: Step) -> None:
    if s.pack is None:
        d.model.plug(s.port)
        return
    spec = s.pack.model_dump()
    d.model.plug(s.port, pack=Pack(**spec, temp=d.model.ambient_temp))


def _fail(mode: str) -> Callable[[Any, Step], None]:
    def run(d: Any, s: Step) -> None:
        onset = parse_duration(s.onset) if s.onset is not None else 0.0
        d.model.fail(s.port, mode, onset, s.speed or 1.0, 0.75 if s.severity is None else s.severity)

    return run


def _weather(d: Any, s: Step) -> None:
    m = d.model
    m.weather = Weather(s.value, m.params.ambient_c, m.seed) if s.value != "steady" else None


FAILURE_HELP = {
    "bms_failure": "the pack's BMS fails: no taper, current keeps flowing past full, overcharge heat grows",
    "micro_short": "an internal short: current spikes and ripple, self-heating that grows",
    "hot_connector": "the port's contact resistance grows: heating ∝ I² × resistance",
    "ageing_pack": "a worn pack's losses grow and feed on its heat: warmer, longer constant-current phase",
}


ACTIONS: dict[str, Action] = {
    # chargers
    "plug": Action(
        ("charger",), ("port",), _plug, "a bike is plugged into a port (`pack:` its battery and charger)"
    ),
    "unplug": Action(("charger",), ("port",), lambda d, s: d.model.unplug(s.port), "the bike leaves"),
    "runaway": Action(
        ("charger",),
        ("port",),
        lambda d, s: d.model.start_runaway(s.port),
        "connector heats fast until cut off",
    ),
    "port_fault": Action(
        ("charger",), ("port",), lambda d, s: d.model.set_fault(s.port, bool(_val(s))), "port reports a fault"
    ),
    "port_enable": Action(
        ("charger",), ("port",), lambda d, s: d.model.set_enabled(s.port, bool(_val(s))), "port relay on/off"
    ),
    "smoke": Action(("charger",), (), lambda d, s: setattr(d.model, "smoke", bool(_val(s))), "cabinet smoke"),
    "main": Action(("charger",), (), lambda d, s: d.model.set_main(bool(_val(s))), "main contactor on/off"),
    "door": Action(
        ("charger",), (), lambda d, s: setattr(d.model, "door_open", bool(_val(s))), "cabinet door"
    ),
    "ambient": Action(
        ("charger",),
        ("value",),
        lambda d, s: d.model.set_ambient(float(s.value), parse_duration(s.duration) if s.duration is not None else 0),
        "cabinet ambient temperature, °C: a step, or a ramp over `duration` (simulated)",
    ),
    # slow failures of a pack or a connector (`onset`, `speed`, `severity`; simulators/physics/battery.py)
    **{
        mode: Action(("charger",), ("port",), _fail(mode), f"{FAILURE_HELP[mode]} (onset, speed, severity)")
        for mode in FAILURE_MODES
    },
    # the normal variety that must not alarm
    "weather": Action(
        ("charger",), ("value",), _weather, f"outside temperature over time: {', '.join(WEATHERS)}"
    ),
    "variety": Action(
        ("charger",),
        (),
        lambda d, s: setattr(d.model.params, "variety", bool(_val(s))),
        "arriving bikes bring packs of any size, age and charger",
    ),
    "sensor_stuck": Action(
        ("charger",),
        ("port",),
        lambda d, s: d.model.sensor_stuck(s.port, parse_duration(s.duration) if s.duration is not None else 600.0),
        "the connector sensor keeps its reading for `duration` (default 10m)",
    ),
    "sensor_spike": Action(
        ("charger",),
        ("port", "value"),
        lambda d, s: d.model.sensor_spike(s.port, float(s.value)),
        "the connector sensor reads `value` °C for one second",
    ),
    "meter_spike": Action(
        ("charger",),
        ("port", "value"),
        lambda d, s: d.model.meter_spike(s.port, float(s.value)),
        "the current meter reads `value` × the current for one second",
    ),
    # sprinkler
    "waterflow": Action(("sprinkler",), (), lambda d, s: d.model.set_waterflow(bool(_val(s))), "water flows"),
    "tamper": Action(
        ("sprinkler",), (), lambda d, s: setattr(d.model, "valve_tamper", bool(_val(s))), "valve shut"
    ),
    "pump": Action(
        ("sprinkler",), (), lambda d, s: d.model.set_pump(s.value), "pump on/off, null = automatic"
    ),
    "power_fault": Action(
        ("sprinkler",), (), lambda d, s: setattr(d.model, "power_fault", bool(_val(s))), "module on battery"
    ),
    # parking
    "rush_hour": Action(
        ("parking",),
        (),
        lambda d, s: d.model.rush_hour(parse_duration(s.duration) if s.duration is not None else 1800.0),
        "arrivals dominate for `duration` (simulated time, default 30m)",
    ),
    "occupy": Action(
        ("parking",), ("bay",), lambda d, s: d.model.set_occupied(s.bay, bool(_val(s))), "bay taken/freed"
    ),
    "sensor_fault": Action(
        ("parking",),
        ("bay",),
        lambda d, s: setattr(d.model.bay(s.bay), "sensor_fault", bool(_val(s))),
        "bay sensor fault",
    ),
    "battery": Action(
        ("parking",),
        ("bay", "value"),
        lambda d, s: setattr(d.model.bay(s.bay), "battery", float(s.value)),
        "sensor volts",
    ),
    # faults
    "silent": Action(
        ("modbus",), (), lambda d, s: setattr(d.faults, "silent", bool(_val(s))), "slave stops answering"
    ),
    "crc_errors": Action(
        ("modbus",),
        ("value",),
        lambda d, s: setattr(d.faults, "crc_error_rate", float(s.value)),
        "fraction of bad CRCs",
    ),
    "exception": Action(
        ("modbus",),
        ("value",),
        lambda d, s: d.faults.set(
            exception_code=int(s.value), exception_rate=1.0 if s.rate is None else s.rate
        ),
        "answer with Modbus exception `value` on `rate` of requests",
    ),
    "delay": Action(
        ("modbus",), ("value",), lambda d, s: setattr(d.faults, "delay_s", float(s.value)), "slow replies, s"
    ),
    "garbage": Action(
        ("line",),
        ("value",),
        lambda d, s: setattr(d.faults, "garbage_rate", float(s.value)),
        "fraction of garbage lines",
    ),
    "clear_faults": Action(("any",), (), lambda d, s: d.faults.clear(), "all faults off"),
}


class PackSpec(BaseModel):
    """A battery and its charger, as a `plug` step brings it (simulators/physics/battery.Pack)."""

    model_config = ConfigDict(extra="forbid")

    capacity_kwh: float = Field(default=0.6, gt=0, le=5)
    soc: float = Field(default=0.2, ge=0, le=1)
    charger_a: float = Field(default=1.6, gt=0, le=10)
    taper_from: float = Field(default=0.85, gt=0, lt=1)
    age: float = Field(default=0.0, ge=0, le=1)


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at: float
    device: str
    do: str
    port: int | None = None
    bay: int | None = None
    value: Any = None
    rate: float | None = Field(default=None, ge=0, le=1)
    duration: str | float | None = None
    onset: str | float | None = None  # failures: delay from this step until it begins
    speed: float | None = Field(default=None, gt=0, le=20)  # failures: 1 = nominal pace
    severity: float | None = Field(default=None, ge=0, le=1)  # failures: how strong it gets
    pack: PackSpec | None = None  # plug: the battery and its charger

    @field_validator("at", mode="before")
    @classmethod
    def _at(cls, v: Any) -> float:
        return parse_duration(v)

    @field_validator("duration", "onset")
    @classmethod
    def _duration(cls, v: str | float | None) -> str | float | None:
        if v is not None:
            parse_duration(v)
        return v

    @field_validator("do")
    @classmethod
    def _do(cls, v: str) -> str:
        if v not in ACTIONS:
            raise ValueError(f"unknown action {v!r}; known: {', '.join(sorted(ACTIONS))}")
        return v

    def describe(self) -> str:
        extra = " ".join(
            f"{k}={getattr(self, k)}"
            for k in ("port", "bay", "value", "rate", "duration", "onset", "speed", "severity")
            if getattr(self, k) is not None
        )
        return f"{self.device} {self.do} {extra}".strip()


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    schema_version: Literal[1] = Field(default=1, alias="schema")
    name: str
    description: str = ""
    site: str
    speed: float = Field(default=1.0, gt=0, le=10000)
    steps: list[Step] = Field(min_length=1)

    @property
    def duration_s(self) -> float:
        return max(s.at for s in self.steps)


def _kinds(cls: type) -> set[str]:
    if cls is ChargerDevice:
        return {"charger", "modbus", "any"}
    if cls is SprinklerDevice:
        return {"sprinkler", "modbus", "any"}
    if cls is ParkingDevice:
        return {"parking", "modbus", "any"}
    if cls is LineReceiverDevice:
        return {"parking", "line", "any"}
    return {"any"}


def check_steps(scn: Scenario, site: SiteSpec) -> list[tuple[tuple[str | int, ...], str]]:
    """Steps against the site: device exists, the action fits it, instance numbers exist."""
    from device_profiles.loader import get_profile
    from simulators.devices import device_class

    probs: list[tuple[tuple[str | int, ...], str]] = []
    devs = {d.id: d for d in site.devices}
    for i, s in enumerate(scn.steps):
        spec = devs.get(s.device)
        if spec is None:
            probs.append(
                (("steps", i, "device"), f"no device {s.device!r} in site {site.site} ({', '.join(devs)})")
            )
            continue
        try:
            prof = get_profile(spec.profile)
        except KeyError:
            continue  # the site check reports it
        kinds = _kinds(device_class(prof))
        act = ACTIONS[s.do]
        if not kinds & set(act.kinds):
            probs.append((("steps", i, "do"), f"{s.do!r} does not apply to {s.device} ({prof.id})"))
            continue
        for need in act.needs:
            if getattr(s, need) is None:
                probs.append((("steps", i), f"{s.do!r} needs `{need}:`"))
        for key, block in (("port", "port"), ("bay", "bay")):
            n = getattr(s, key)
            if n is None:
                continue
            if block not in prof.block_keys():
                probs.append((("steps", i, key), f"{s.device} ({prof.id}) has no {block}s"))
                continue
            rng = prof.instance_range(block)
            if n not in rng:
                probs.append(
                    (("steps", i, key), f"{block} {n} does not exist (valid {rng.start}..{rng.stop - 1})")
                )
        fraction = s.do in ("crc_errors", "garbage") and s.value is not None
        if fraction and (not isinstance(s.value, int | float) or not 0 <= float(s.value) <= 1):
            probs.append((("steps", i, "value"), f"must be a fraction 0..1, got {s.value!r}"))
        if (
            s.do in ("delay", "ambient", "battery")
            and s.value is not None
            and not isinstance(s.value, int | float)
        ):
            probs.append((("steps", i, "value"), f"must be a number, got {s.value!r}"))
        if s.do == "exception" and (
            isinstance(s.value, bool) or not isinstance(s.value, int) or not 1 <= s.value <= 255
        ):
            probs.append((("steps", i, "value"), f"must be a Modbus exception code 1..255, got {s.value!r}"))
        if s.do in ("sensor_spike", "meter_spike") and s.value is not None and (
            isinstance(s.value, bool) or not isinstance(s.value, int | float)
        ):
            probs.append((("steps", i, "value"), f"must be a number, got {s.value!r}"))
        if s.do == "weather" and s.value not in WEATHERS:
            probs.append((("steps", i, "value"), f"must be one of {', '.join(WEATHERS)}, got {s.value!r}"))
        failure_keys = ("onset", "speed", "severity")
        if s.do not in FAILURE_HELP and any(getattr(s, k) is not None for k in failure_keys):
            probs.append((("steps", i), f"`onset`, `speed` and `severity` belong to failures, not {s.do!r}"))
        if s.pack is not None and s.do != "plug":
            probs.append((("steps", i, "pack"), f"`pack:` belongs to `plug`, not {s.do!r}"))
        if s.do == "pump" and s.value is not None and not isinstance(s.value, bool):
            probs.append((("steps", i, "value"), f"must be true, false or null (automatic), got {s.value!r}"))
    return probs


def site_path(scn: Scenario, base: Path | None) -> Path:
    ref = scn.site
    if base is not None and (base / ref).exists():
        return base / ref
    return find_site(ref)


def load_scenario(path: Path | str) -> Scenario:
    """Load a scenario and check it against its site; problems are located (file:line key)."""
    path = Path(path)

    def check(scn: Scenario) -> list[tuple[Path_, str]]:
        try:
            sp = site_path(scn, path.parent)
        except FileNotFoundError as e:
            return [(("site",), str(e).strip("'\""))]
        return check_steps(scn, load_site(sp))

    return load_model(Scenario, path, check=check)


def find_scenario(name_or_path: str | Path) -> Path:
    """A shipped scenario name (`port-runaway`) or a path."""
    return find_shipped(name_or_path, SCENARIOS_DIR, "scenario", "shipped")


class ScenarioPlayer:
    """Plays a scenario's steps against a running site, in the site's own loop.

    `speed` > 1 compresses the timeline (a step `at: 60s` happens after 6 s at speed 10); it does
    not change the physics rate (that is the site's `speed`).
    """

    def __init__(self, site: SimSite, scenario: Scenario, speed: float | None = None) -> None:
        probs = check_steps(scenario, site.spec)
        if probs:
            raise ValueError("; ".join(f"{format_key(p)}: {m}" for p, m in probs))
        self.site = site
        self.scenario = scenario
        self.speed = speed or scenario.speed
        self.log: list[tuple[float, str]] = []  # (seconds since start, step) as played
        self.errors: list[str] = []
        self.done = threading.Event()
        self._future: Any = None

    def start(self) -> ScenarioPlayer:
        self._future = asyncio.run_coroutine_threadsafe(self._play(), self.site.loop)
        return self

    def wait(self, timeout: float | None = None) -> bool:
        return self.done.wait(timeout)

    def stop(self) -> None:
        if self._future is not None:
            self._future.cancel()
        self.done.set()

    async def _play(self) -> None:
        t0 = time.monotonic()
        try:
            for s in sorted(self.scenario.steps, key=lambda s: s.at):
                due = t0 + s.at / self.speed
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                dev = self.site.device(s.device)
                try:
                    with dev.lock:
                        ACTIONS[s.do].run(dev, s)
                except Exception as e:  # a step that fails is reported; the show goes on
                    self.errors.append(f"{s.describe()}: {e}")
                self.log.append((time.monotonic() - t0, s.describe()))
        finally:
            self.done.set()
