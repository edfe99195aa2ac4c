"""Run a whole simulated site: buses (RTU ptys, TCP servers, serial lines) with their devices.

A site file (YAML, validated with file:line:key errors) lists buses and devices. `SimSite.start()`
runs everything in one background thread with its own asyncio loop; physics is stepped every
`step_s`. Tests and the edge agent then use `endpoints()` (where to connect) and `device(id)`
(`.model` to read or poke the physics, `.faults` to inject faults), from any thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from device_profiles.loader import get_profile, load_profile
from device_profiles.located_yaml import ConfigError, Issue, format_key, load_model
from device_profiles.model import KEY_RE, Profile
from simulators.devices import Device, LineReceiverDevice, ModbusDevice, device_class, make_device
from simulators.shipped import find_shipped
from simulators.transport.line import LinePort
from simulators.transport.rtu import RtuBus
from simulators.transport.tcp import TcpServer

SITES_DIR = Path(__file__).parent / "sites"

Id = str


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BusSpec(_Strict):
    """`rtu`: an RS-485 bus on a pty; `tcp`: a Modbus TCP server (port 0 = a free one);
    `line`: a serial port carrying one line-protocol device's output."""

    id: str = Field(pattern=KEY_RE.replace("_]", "_-]"))
    kind: Literal["rtu", "tcp", "line"]
    baud: int = Field(default=9600, ge=1200, le=921600)
    parity: Literal["N", "E", "O"] = "N"
    stop_bits: Literal[1, 2] = 1
    data_bits: Literal[7, 8] = 8
    tcp_port: int = Field(default=0, ge=0, le=65535, description="tcp only; 0 = pick a free port (was `port:`)")
    link: str | None = Field(default=None, description="rtu/line: also make this symlink to the pty")

    @model_validator(mode="before")
    @classmethod
    def _old_port_key(cls, data: Any) -> Any:
        """`port:` was the TCP port's key, while edge configs used `port:` for a serial device;
        it is still read on a tcp bus (docs/simulators.md) and refused elsewhere."""
        if isinstance(data, dict) and "port" in data:
            if data.get("kind") != "tcp":
                raise ValueError("`port:` is only the old name of a tcp bus's `tcp_port:`; a pty bus has no port "
                                 "(use `link:` for a fixed device name)")
            if "tcp_port" in data:
                raise ValueError("give the TCP port once, as `tcp_port:` (`port:` is its old name)")
            data = {("tcp_port" if k == "port" else k): v for k, v in data.items()}
        return data


class FaultSpec(_Strict):
    silent: bool = False
    crc_error_rate: float = Field(default=0.0, ge=0, le=1)
    exception_code: int | None = Field(default=None, ge=1, le=255)
    exception_rate: float = Field(default=1.0, ge=0, le=1)
    delay_s: float = Field(default=0.0, ge=0, le=60)
    garbage_rate: float = Field(default=0.0, ge=0, le=1)


class DeviceSpec(_Strict):
    id: str = Field(pattern=KEY_RE.replace("_]", "_-]"), max_length=48)
    profile: str
    bus: str
    unit: int = Field(default=1, ge=1, le=247)
    params: dict[str, Any] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    tags: dict[str, list[int]] = Field(default_factory=dict, description="e.g. fire_lane: [47, 48]")
    seed: int | None = None
    faults: FaultSpec | None = None


class SiteSpec(_Strict):
    schema_version: Literal[1] = Field(default=1, alias="schema")
    site: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    description: str = ""
    seed: int = 0
    step_s: float = Field(default=0.1, gt=0, le=10)
    speed: float = Field(default=1.0, gt=0, le=10000, description="physics time per real second")
    profile_dirs: list[str] = Field(default_factory=list)
    buses: list[BusSpec] = Field(min_length=1)
    devices: list[DeviceSpec] = Field(min_length=1)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def _profiles(spec: SiteSpec, base: Path | None) -> dict[str, Profile | Exception]:
    out: dict[str, Profile | Exception] = {}
    for d in spec.devices:
        if d.profile in out:
            continue
        try:
            out[d.profile] = _find_profile(d.profile, spec.profile_dirs, base)
        except (KeyError, ConfigError) as e:
            out[d.profile] = e
    return out


def _find_profile(ref: str, dirs: list[str], base: Path | None) -> Profile:
    """A catalog id, or a path to a profile file (relative to the site file)."""
    if ref.endswith((".yaml", ".yml")):
        p = Path(ref)
        if not p.is_absolute() and base is not None:
            p = base / p
        return load_profile(p)
    extra = tuple(str((base / d) if base and not Path(d).is_absolute() else d) for d in dirs)
    return get_profile(ref, extra)


def check_site(spec: SiteSpec, base: Path | None = None) -> list[tuple[tuple[str | int, ...], str]]:
    """Cross-reference problems, each with the key path it concerns (the loader adds the line)."""
    probs: list[tuple[tuple[str | int, ...], str]] = []
    buses = {b.id: b for b in spec.buses}
    seen_bus: set[str] = set()
    for i, b in enumerate(spec.buses):
        if b.id in seen_bus:
            probs.append((("buses", i, "id"), f"duplicate bus id {b.id!r}"))
        seen_bus.add(b.id)
    profiles = _profiles(spec, base)
    seen_dev: set[str] = set()
    units: dict[tuple[str, int], str] = {}
    line_users: dict[str, str] = {}
    for i, d in enumerate(spec.devices):
        if d.id in seen_dev:
            probs.append((("devices", i, "id"), f"duplicate device id {d.id!r}"))
        seen_dev.add(d.id)
        bus = buses.get(d.bus)
        if bus is None:
            probs.append((("devices", i, "bus"), f"unknown bus {d.bus!r} (buses: {', '.join(buses)})"))
        prof = profiles[d.profile]
        if isinstance(prof, Exception):
            msg = str(prof).strip("'\"")
            probs.append((("devices", i, "profile"), msg))
            continue
        if bus is not None:
            if prof.is_modbus and bus.kind == "line":
                probs.append(
                    (("devices", i, "bus"), f"{prof.id} speaks Modbus; bus {bus.id!r} is a serial line")
                )
            if not prof.is_modbus and bus.kind != "line":
                probs.append(
                    (("devices", i, "bus"), f"{prof.id} is a line-protocol device; needs a `line` bus")
                )
            if bus.kind == "line":
                if bus.id in line_users:
                    probs.append(
                        (("devices", i, "bus"), f"line bus {bus.id!r} already carries {line_users[bus.id]}")
                    )
                line_users[bus.id] = d.id
            elif (bus.id, d.unit) in units:
                probs.append(
                    (("devices", i, "unit"), f"unit {d.unit} already used by {units[(bus.id, d.unit)]}")
                )
            else:
                units[(bus.id, d.unit)] = d.id
        try:
            cls = device_class(prof)
            cls.Params(**d.params)
        except ValidationError as e:
            for err in e.errors():
                loc = ("devices", i, "params", *err["loc"])
                probs.append((loc, str(err["msg"]).removeprefix("Value error, ")))
        except ValueError as e:
            probs.append((("devices", i, "profile"), str(e)))
        for tag, nums in d.tags.items():
            blocks = sorted(prof.block_keys())
            valid = prof.instance_range(blocks[0]) if blocks else range(0)
            bad = [n for n in nums if n not in valid]
            if bad:
                probs.append(
                    (
                        ("devices", i, "tags", tag),
                        f"no instance(s) {bad} (valid {valid.start}..{valid.stop - 1})",
                    )
                )
    return probs


def load_site(path: Path | str) -> SiteSpec:
    """Load and fully check a site file; every problem is a located Issue in one ConfigError."""
    path = Path(path)
    return load_model(SiteSpec, path, check=lambda spec: check_site(spec, path.parent))


def find_site(name_or_path: str | Path) -> Path:
    """A shipped site name (`shelter-a`) or a path."""
    return find_shipped(name_or_path, SITES_DIR, "site file", "shipped sites")


class SimSite:
    """A running simulated site. Not started by the constructor: call `start()` (or use `with`)."""

    def __init__(self, spec: SiteSpec, base_dir: Path | None = None) -> None:
        probs = check_site(spec, base_dir)
        if probs:
            raise ConfigError([Issue(spec.site, 0, format_key(p), m) for p, m in probs])
        self.spec = spec
        self.name = spec.site
        self.step_s = spec.step_s
        self.speed = spec.speed
        self.paused = False
        self.steps = 0
        self.errors: list[str] = []  # physics step failures (last 100), never fatal
        self._devices: dict[str, Device] = {}
        self._specs: dict[str, DeviceSpec] = {d.id: d for d in spec.devices}
        self._profiles: dict[str, Profile] = {}
        for k, d in enumerate(spec.devices):
            prof = _find_profile(d.profile, spec.profile_dirs, base_dir)
            self._profiles[d.id] = prof
            seed = d.seed if d.seed is not None else spec.seed * 1000 + k
            dev = make_device(d.id, prof, d.params, seed)
            if d.faults:
                dev.faults.set(**d.faults.model_dump())
            self._devices[d.id] = dev
        self.buses: dict[str, RtuBus | TcpServer | LinePort] = {}
        for b in spec.buses:
            on_bus = [d for d in spec.devices if d.bus == b.id]
            if b.kind == "line":
                if not on_bus:
                    continue
                ld = self._devices[on_bus[0].id]
                assert isinstance(ld, LineReceiverDevice)
                self.buses[b.id] = LinePort(b.id, ld, b.baud, b.parity, b.stop_bits, b.data_bits, b.link)
                continue
            mdevs: dict[int, ModbusDevice] = {}
            for d in on_bus:
                md = self._devices[d.id]
                assert isinstance(md, ModbusDevice)
                mdevs[d.unit] = md
            if b.kind == "rtu":
                self.buses[b.id] = RtuBus(b.id, mdevs, b.baud, b.parity, b.stop_bits, b.data_bits, b.link)
            else:
                self.buses[b.id] = TcpServer(b.id, mdevs, b.tcp_port)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stop_event: asyncio.Event | None = None

    @classmethod
    def from_file(cls, path: Path | str) -> SimSite:
        p = find_site(path)
        return cls(load_site(p), p.parent)

    # ---- access ----
    def device(self, device_id: str) -> Any:
        """The emulator: `.model` (physics), `.faults`, `.profile` (typed Any for test convenience)."""
        try:
            return self._devices[device_id]
        except KeyError:
            raise KeyError(
                f"no device {device_id!r} in site {self.name} ({', '.join(self._devices)})"
            ) from None

    @property
    def devices(self) -> dict[str, Device]:
        return dict(self._devices)

    def endpoints(self) -> dict[str, dict[str, Any]]:
        """Where an edge agent connects to each device (valid once started)."""
        if not self._ready.is_set():
            raise RuntimeError("site not started")
        out: dict[str, dict[str, Any]] = {}
        for d in self.spec.devices:
            bus = self.buses.get(d.bus)
            if bus is None:
                continue
            ep = bus.endpoint() if isinstance(bus, LinePort) else bus.endpoint(d.unit)
            ep.update(
                profile=self._profiles[d.id].id,
                bus=d.bus,
                labels=dict(d.labels),
                tags={k: list(v) for k, v in d.tags.items()},
            )
            out[d.id] = ep
        return out

    # ---- life cycle ----
    def start(self, timeout: float = 10.0) -> SimSite:
        if self._thread is not None:
            raise RuntimeError("site already started")
        self._thread = threading.Thread(target=self._run, name=f"sim-{self.name}", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"site {self.name} did not start in {timeout}s")
        if self._error is not None:
            raise RuntimeError(f"site {self.name} failed to start: {self._error}") from self._error
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._loop is None or self._thread is None:
            return
        if self._stop_event is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop_event.set)
        self._thread.join(timeout)
        self._thread = None

    def __enter__(self) -> SimSite:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def pause(self) -> None:
        """Freeze the physics (transports keep answering): values stay put while a test compares."""
        self.paused = True

    def resume(self) -> None:
        self.paused = False

    def call(self, fn: Any, *args: Any, timeout: float = 5.0) -> Any:
        """Run `fn(*args)` in the site's loop thread and return its result."""
        assert self._loop is not None

        async def run() -> Any:
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "site not started"
        return self._loop

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except BaseException as e:  # surface start-up failures to start()
            self._error = e
            self._ready.set()
        finally:
            loop.close()

    async def _main(self) -> None:
        self._stop_event = asyncio.Event()
        started: list[RtuBus | TcpServer | LinePort] = []
        try:
            for bus in self.buses.values():
                await bus.start()
                started.append(bus)
            self._ready.set()
            stepper = asyncio.create_task(self._physics())
            await self._stop_event.wait()
            stepper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stepper
        finally:
            for bus in started:
                with contextlib.suppress(Exception):
                    await bus.stop()

    async def _physics(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(self.step_s)
            now = time.monotonic()
            dt, last = now - last, now
            if self.paused:
                continue
            for dev in self._devices.values():
                try:
                    dev.step(dt * self.speed)
                except Exception as e:  # a bad poke from a test must not stop the whole site
                    self.errors.append(f"{dev.id}: {type(e).__name__}: {e}")
                    del self.errors[:-100]
            self.steps += 1
