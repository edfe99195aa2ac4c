"""The gateway's YAML config: site, uplink, buses and the devices on them.

Loaded with `located_yaml` so that every mistake an installer makes on site is reported with the
file, the line and the key (ThingsBoard's gateway answers a typo with a bare KeyError). Checks that
span sections (unknown bus, unknown profile, transport mismatch, duplicate addresses) are made after
schema validation and located the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from device_profiles.located_yaml import (
    ConfigError,
    Issue,
    format_key,
    line_of,
    located,
    parse_yaml,
    read_text,
    validate,
)
from device_profiles.model import PollClass, Profile, TransportKind
from device_profiles.wire import ID_RE

Id = Annotated[str, Field(pattern=ID_RE.pattern)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Tls(_Strict):
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure: bool = Field(default=False, description="skip hostname check (lab use only)")


class Uplink(_Strict):
    url: str = Field(pattern=r"^mqtts?://[^/:]+(:\d+)?/?$", description="mqtt://host:port or mqtts://host:port")
    client_id: str | None = None
    username: str | None = None
    password: str | None = None
    tls: Tls | None = None
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    reconnect_min_s: float = Field(default=0.5, gt=0, le=60)
    reconnect_max_s: float = Field(default=30.0, gt=0, le=600)
    window: int = Field(default=100, ge=1, le=65535, description="QoS 1 messages in flight")

    @property
    def host(self) -> str:
        return self.url.split("://", 1)[1].rstrip("/").split(":")[0]

    @property
    def port(self) -> int:
        rest = self.url.split("://", 1)[1].rstrip("/")
        if ":" in rest:
            return int(rest.split(":")[1])
        return 8883 if self.use_tls else 1883

    @property
    def use_tls(self) -> bool:
        return self.url.startswith("mqtts://") or self.tls is not None


class Bus(_Strict):
    """One physical line (RS-485 port) or one Modbus TCP endpoint: one transaction at a time."""

    name: Id
    transport: TransportKind
    serial_port: str | None = Field(default=None, description="serial device, e.g. /dev/ttyUSB0 (was `port:`)")
    host: str | None = None
    tcp_port: int = Field(default=502, ge=1, le=65535)
    baud: int = Field(default=9600, ge=300, le=1_000_000)
    parity: Literal["N", "E", "O"] = "N"
    stop_bits: Literal[1, 2] = 1
    timeout_s: float = Field(default=0.3, gt=0, le=30)
    retries: int = Field(default=1, ge=0, le=10)
    gap_ms: float = Field(default=0.0, ge=0, le=5000, description="quiet time between transactions")

    @model_validator(mode="before")
    @classmethod
    def _old_port_key(cls, data: Any) -> Any:
        """`port:` was the serial device's key; beside `tcp_port:` it read like a TCP port. A serial
        bus still accepts it (`edge-agent check` warns: see `config_warnings`); on a modbus_tcp bus it
        stays an unknown key, reported with what to write instead (`_explain_old_port`)."""
        if isinstance(data, dict) and "port" in data and data.get("transport") != TransportKind.MODBUS_TCP.value:
            if "serial_port" in data:
                raise ValueError("give the serial device once, as `serial_port:` (`port:` is its old name)")
            data = {("serial_port" if k == "port" else k): v for k, v in data.items()}
        return data

    @model_validator(mode="after")
    def _where(self) -> Bus:
        if self.transport is TransportKind.MODBUS_TCP:
            if not self.host:
                raise ValueError("a modbus_tcp bus needs `host:`")
        elif not self.serial_port:
            raise ValueError(f"a {self.transport.value} bus needs `serial_port:` (e.g. /dev/ttyUSB0)")
        return self


class PollPeriods(_Strict):
    safety: float = Field(default=1.0, gt=0, le=3600)
    routine: float = Field(default=5.0, gt=0, le=86400)
    slow: float = Field(default=300.0, gt=0, le=86400)

    def of(self, cls: PollClass) -> float:
        return float(getattr(self, cls.value))


class InterlockOverride(_Strict):
    """Per-site change of a profile interlock: a different threshold, or switched off."""

    value: float | bool | str | None = None
    enabled: bool = True


class ChargeAnalytics(_Strict):
    """Charge-session analytics on a charger (device_profiles/charge_session.py, docs/charging.md):
    an `abnormal_charge` event minutes before the cut-off; with `stop_port`, the port is also
    switched off on a confident, severe finding (an `interlock` event, as for overheating).
    The threshold keys override `charge_session.Settings` for this device."""

    enabled: bool = True
    stop_port: bool = False
    time_scale: float = Field(
        default=1.0, gt=0, le=1000, description="simulated sites only: analytics seconds per wall-clock second"
    )
    warn_excess_c: float | None = Field(default=None, gt=0, le=50)
    warn_slope_c_per_min: float | None = Field(default=None, ge=0, le=10)
    high_excess_c: float | None = Field(default=None, gt=0, le=80)
    severe_excess_c: float | None = Field(default=None, gt=0, le=80)
    stop_eta_s: float | None = Field(default=None, ge=0, le=7200)
    energy_limit_kwh: float | None = Field(default=None, gt=0, le=20)
    neighbour_k_per_k: float | None = Field(default=None, ge=0, le=1)

    def overrides(self) -> dict[str, float]:
        keys = ("warn_excess_c", "warn_slope_c_per_min", "high_excess_c", "severe_excess_c", "stop_eta_s",
                "energy_limit_kwh", "neighbour_k_per_k")
        return {k: float(v) for k in keys if (v := getattr(self, k)) is not None}


class Device(_Strict):
    id: Id
    profile: str
    bus: Id
    address: int = Field(default=1, ge=0, le=247, description="Modbus unit id (0 = none, line devices)")
    poll: PollPeriods = Field(default_factory=PollPeriods)
    labels: dict[str, str] = Field(default_factory=dict)
    interlocks: dict[str, InterlockOverride] = Field(default_factory=dict)
    charge_analytics: ChargeAnalytics = Field(default_factory=ChargeAnalytics)
    enabled: bool = True


class Outbox(_Strict):
    path: str | None = Field(default=None, description="SQLite file; default <state_dir>/outbox.db")
    max_bytes: int = Field(default=256 * 1024 * 1024, ge=64 * 1024)
    synchronous: Literal["normal", "full"] = "normal"


class AgentConfig(_Strict):
    site: Id
    gateway: Id
    state_dir: str = "/var/lib/shelterwatch-edge"
    profile_dirs: list[str] = Field(default_factory=list)
    uplink: Uplink
    outbox: Outbox = Field(default_factory=Outbox)
    snapshot_s: float = Field(default=60.0, gt=0, le=86400)
    health_s: float = Field(default=10.0, gt=0, le=3600)
    buses: list[Bus] = Field(min_length=1)
    devices: list[Device] = Field(min_length=1)

    def bus(self, name: str) -> Bus:
        return next(b for b in self.buses if b.name == name)


def cross_check(cfg: AgentConfig, profiles: dict[str, Profile]) -> list[tuple[tuple[str | int, ...], str]]:
    """Problems between sections, each with the key path it concerns."""
    out: list[tuple[tuple[str | int, ...], str]] = []
    names: set[str] = set()
    for i, b in enumerate(cfg.buses):
        if b.name in names:
            out.append((("buses", i, "name"), f"duplicate bus name {b.name!r}"))
        names.add(b.name)
    ports: dict[str, int] = {}
    for i, b in enumerate(cfg.buses):
        if b.serial_port:
            if b.serial_port in ports:
                out.append((("buses", i, "serial_port"),
                            f"{b.serial_port} is already used by bus {cfg.buses[ports[b.serial_port]].name!r}"))
            ports[b.serial_port] = i
    ids: set[str] = set()
    addrs: dict[tuple[str, int], str] = {}
    buses = {b.name: b for b in cfg.buses}
    for i, d in enumerate(cfg.devices):
        if d.id in ids:
            out.append((("devices", i, "id"), f"duplicate device id {d.id!r}"))
        ids.add(d.id)
        bus = buses.get(d.bus)
        if bus is None:
            out.append((("devices", i, "bus"), f"unknown bus {d.bus!r} (buses: {', '.join(sorted(buses))})"))
        prof = profiles.get(d.profile)
        if prof is None:
            out.append(
                (("devices", i, "profile"), f"unknown profile {d.profile!r} (known: {', '.join(sorted(profiles))})")
            )
        if bus is None or prof is None:
            continue
        if prof.transport.kind != bus.transport:
            out.append(
                (
                    ("devices", i, "bus"),
                    f"profile {prof.id} speaks {prof.transport.kind.value} but bus {bus.name} is {bus.transport.value}",
                )
            )
        if bus.transport is not TransportKind.SERIAL_LINE:
            if not 1 <= d.address <= 247:
                out.append((("devices", i, "address"), f"Modbus unit id must be 1..247, got {d.address}"))
            key = (bus.name, d.address)
            if key in addrs:
                out.append(
                    (("devices", i, "address"), f"unit {d.address} on bus {bus.name} is already device {addrs[key]!r}")
                )
            addrs[key] = d.id
        known = {il.key for il in prof.interlocks}
        for k in d.interlocks:
            if k not in known:
                out.append(
                    (
                        ("devices", i, "interlocks", k),
                        f"profile {prof.id} has no interlock {k!r} (has: {', '.join(sorted(known)) or 'none'})",
                    )
                )
    lines = [b for b in cfg.buses if b.transport is TransportKind.SERIAL_LINE]
    for b in lines:
        on = [d.id for d in cfg.devices if d.bus == b.name]
        if len(on) > 1:
            i = cfg.buses.index(b)
            out.append((("buses", i, "name"), f"a serial_line bus carries one receiver, found {', '.join(on)}"))
    return out


def _name_missing_keys(issues: list[Issue], data: Any, node: Any, name: str) -> list[Issue]:
    """A missing key cannot be found in the file, so the generic locator names its parent only;
    say which key is missing (`uplink.url: required key is missing`), at the parent's line."""
    from pydantic import ValidationError

    try:
        AgentConfig.model_validate(data)
    except ValidationError as ve:
        missing = [tuple(err["loc"]) for err in ve.errors() if err["type"] == "missing"]
    else:
        return issues
    if not missing:
        return issues
    out = [i for i in issues if i.message != "required key is missing"]
    for loc in missing:
        out.append(
            Issue(
                name,
                line_of(node, loc[:-1]) if loc[:-1] else 1,
                format_key(loc),
                "required key is missing",
            )
        )
    return out


def _explain_old_port(issues: list[Issue], data: Any) -> list[Issue]:
    """`port:` on a modbus_tcp bus: say what to write instead of "unknown key"."""
    buses = data.get("buses") if isinstance(data, dict) else None
    if not isinstance(buses, list):
        return issues
    out = []
    for i in issues:
        if i.message == "unknown key (a typo?)" and i.key.startswith("buses[") and i.key.endswith("].port"):
            i = Issue(i.file, i.line, i.key, "a modbus_tcp bus has no `port:`: its TCP port is `tcp_port:` "
                      "(`port:` was the serial device's old key, now `serial_port:`)")
        out.append(i)
    return out


def config_warnings(data: Any, node: Any, name: str) -> list[Issue]:
    """What still loads but should be changed (old key names), each at its line."""
    out: list[Issue] = []
    buses = data.get("buses") if isinstance(data, dict) else None
    for i, b in enumerate(buses if isinstance(buses, list) else []):
        if isinstance(b, dict) and "port" in b and b.get("transport") != TransportKind.MODBUS_TCP.value:
            path = ("buses", i, "port")
            out.append(Issue(name, line_of(node, path), format_key(path),
                             "`port:` is the old name of `serial_port:` (still read; rename it)"))
    return out


def parse_config(
    text: str,
    name: str,
    base_dir: Path,
    catalog: dict[str, Profile] | None = None,
) -> tuple[AgentConfig, dict[str, Profile], list[Issue]]:
    """The checks of `edge-agent check` on a config's text: (config, profiles its devices use,
    warnings) or ConfigError listing every located problem. `catalog` given (the cloud, which
    cannot see the gateway's folders): profiles come from it and `profile_dirs` are not looked at."""
    from device_profiles.loader import load_catalog

    data, node = parse_yaml(text, name)
    try:
        cfg = validate(AgentConfig, data, node, name)
    except ConfigError as e:
        raise ConfigError(_explain_old_port(_name_missing_keys(e.issues, data, node, name), data)) from None
    if catalog is None:
        dirs = [str((base_dir / d) if not Path(d).is_absolute() else d) for d in cfg.profile_dirs]
        for i, d in enumerate(dirs):
            if not Path(d).is_dir():
                path = ("profile_dirs", i)
                raise ConfigError([Issue(name, line_of(node, path), format_key(path), f"no such folder {d}")])
        catalog = load_catalog(dirs)  # a broken profile raises ConfigError naming the profile file
    issues = located(name, node, cross_check(cfg, catalog))
    if issues:
        raise ConfigError(issues)
    used = {d.profile for d in cfg.devices}
    return cfg, {k: v for k, v in catalog.items() if k in used}, config_warnings(data, node, name)


def load_config(path: Path | str) -> tuple[AgentConfig, dict[str, Profile]]:
    """Config plus the profiles its devices use, or ConfigError listing every located problem."""
    cfg, profiles, _warnings = load_config_warned(path)
    return cfg, profiles


def load_config_warned(path: Path | str) -> tuple[AgentConfig, dict[str, Profile], list[Issue]]:
    """`load_config` plus the warnings `edge-agent check` prints."""
    path = Path(path)
    return parse_config(read_text(path), str(path), path.parent)
