"""What the pages and the API show about an estate, computed from registry rows.

Pure functions over plain records (no database, no HTTP), so the rules — which port counts as in
use, how a parking zone is counted, when a device is offline — are tested fast and exhaustively.
`RegistrySource` adapts the ingester's registry (cloud/state) to these records.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from device_profiles.loader import catalog
from device_profiles.model import Profile

STALE_AFTER_S = 180.0  # no value for this long (3 snapshot periods) → device shown as not answering
LOW_BATTERY_V = 2.9    # matches the parking profiles' low_battery raise level


@dataclass(frozen=True, slots=True)
class SiteRec:
    id: str
    name: str = ""
    name_zh: str = ""


@dataclass(frozen=True, slots=True)
class GatewayRec:
    site: str
    id: str
    name: str = ""
    location: str = ""
    online: bool | None = None
    status_ts: float | None = None
    status_reason: str = ""
    agent: str = ""
    clock_skew_s: float | None = None  # the gateway's clock minus the cloud's (cloud/ingest/timepolicy.py)
    clock_source: str = ""  # "edge": its own report; "ingest": shown by a rebased message
    clock_rebased: int = 0  # its messages stored at receive time (ts outside the time policy)
    clock_last_rebased: float | None = None

    @property
    def clock_trouble(self) -> bool:
        """A wrong clock is trouble (docs/wire.md, "Time"): off by more than the tolerance by the
        latest figure, or a message rebased in the last 10 minutes."""
        from device_profiles.wire import CLOCK_TOLERANCE_S

        recent = self.clock_last_rebased is not None and time.time() - self.clock_last_rebased < 600
        return recent or (self.clock_skew_s is not None and abs(self.clock_skew_s) > CLOCK_TOLERANCE_S)


@dataclass(frozen=True, slots=True)
class DeviceRec:
    site: str
    id: str
    gateway: str
    profile: str
    name: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    instance_labels: dict[int, dict[str, str]] = field(default_factory=dict)
    last_values: dict[str, Any] = field(default_factory=dict)
    last_ts: float | None = None


class EstateSource(Protocol):
    """Read side of the registry, as the API needs it."""

    def sites(self) -> list[SiteRec]: ...
    def gateways(self, site: str) -> list[GatewayRec]: ...
    def devices(self, site: str) -> list[DeviceRec]: ...


def profile_of(d: DeviceRec) -> Profile | None:
    return catalog().get(d.profile)


def family_of(d: DeviceRec) -> str:
    p = profile_of(d)
    return p.family.value if p else "unknown"


def instances(p: Profile, block: str) -> range:
    try:
        return p.instance_range(block)
    except (KeyError, ValueError, AttributeError):
        return range(0)


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, int | float):
        return float(v)
    return None


# -------------------------------------------------------------------------------------- chargers
# Also the API's response model for ports (see HealthView). `energy_today_kwh` needs the API's
# EnergyToday store, so `charger_ports` leaves it None and `routes_api.ports_of` fills it in.
@dataclass(frozen=True, slots=True)
class PortView:
    device: str
    gateway: str
    port: int
    state: str | None
    enabled: bool | None
    power_w: float | None
    temperature_c: float | None
    energy_kwh: float | None
    energy_today_kwh: float | None
    in_use: bool
    cut_off: bool
    zone: str


def charger_ports(d: DeviceRec) -> list[PortView]:
    """One row per port of a charger; `cut_off` when its relay is off or the port is disabled."""
    p = profile_of(d)
    if p is None or p.family.value != "charger":
        return []
    v = d.last_values
    out = []
    for n in instances(p, "port"):
        k = f"port.{n}."
        state = v.get(k + "state")
        enabled = v.get(k + "enabled")
        state_s = str(state) if state is not None else None
        labels = {**d.labels, **d.instance_labels.get(n, {})}
        out.append(PortView(
            device=d.id, gateway=d.gateway, port=n, state=state_s,
            enabled=bool(enabled) if enabled is not None else None,
            power_w=_num(v.get(k + "power")), temperature_c=_num(v.get(k + "connector_temp")),
            energy_kwh=_num(v.get(k + "energy")), energy_today_kwh=None,
            in_use=state_s == "charging" or (_num(v.get(k + "power")) or 0) > 0,
            cut_off=enabled is False or state_s == "disabled" or v.get("main_relay") is False,
            zone=labels.get("zone", ""),
        ))
    return out


# --------------------------------------------------------------------------------------- parking
@dataclass
class ZoneView:
    zone: str
    free: int = 0
    total: int = 0
    unknown: int = 0
    fire_lane_total: int = 0
    fire_lane_occupied: int = 0

    @property
    def fire_lane_status(self) -> str:
        """clear | blocked | none (no fire-lane bays in this zone)."""
        if self.fire_lane_total == 0:
            return "none"
        return "blocked" if self.fire_lane_occupied else "clear"


def _truthy(label: str | None) -> bool:
    return str(label).lower() in ("true", "yes", "1")


def parking_zones(devices: list[DeviceRec]) -> list[ZoneView]:
    """Free / total bays per zone. Fire-lane bays are not parking places: they count only towards
    the fire-lane status, never towards free or total. A bay with no reading counts as unknown
    (in total, not free), so a dead sensor never advertises a free place."""
    zones: dict[str, ZoneView] = {}
    for d in devices:
        p = profile_of(d)
        if p is None or p.family.value != "parking":
            continue
        for n in _bay_numbers(p, d):
            labels = {**d.labels, **d.instance_labels.get(n, {})}
            z = zones.setdefault(labels.get("zone", "") or "-", ZoneView(labels.get("zone", "") or "-"))
            occ = d.last_values.get(f"bay.{n}.occupied")
            if _truthy(labels.get("fire_lane")):
                z.fire_lane_total += 1
                if occ is True:
                    z.fire_lane_occupied += 1
                continue
            z.total += 1
            if occ is None:
                z.unknown += 1
            elif occ is False:
                z.free += 1
    return sorted(zones.values(), key=lambda z: z.zone)


def _bay_numbers(p: Profile, d: DeviceRec) -> range:
    if p.is_modbus:
        return instances(p, "bay")
    tr: Any = p.transport
    # Line devices report as many bays as are wired; the profile bounds it, the labels or values say which exist.
    seen = [int(k.split(".")[1]) for k in d.last_values if k.startswith("bay.") and k.endswith(".occupied")]
    seen += list(d.instance_labels)
    top = max(seen, default=0)
    count = int(d.labels.get("bays", 0) or 0) or top
    return range(1, min(count, tr.instance_count) + 1)


# ---------------------------------------------------------------------------------------- health
# Also the API's response model (FastAPI takes a dataclass as `response_model`): the health page and
# /api/v1 show the same fields from this one definition. A comment, not a docstring: a docstring
# would become the schema's description in /openapi.json.
@dataclass(frozen=True, slots=True)
class HealthView:
    device: str
    gateway: str
    profile: str
    family: str
    answering: bool
    gateway_online: bool | None
    last_seen_s: float | None
    comm_errors: int | None
    low_battery: list[int]
    detail: str  # no default: the OpenAPI schema lists every field as required


def device_health(d: DeviceRec, gw: GatewayRec | None, comm: dict[str, Any] | None = None,
                  now: float | None = None) -> HealthView:
    """`comm` is the device's latest wire `health` message (as a dict) if the API has seen one."""
    now = time.time() if now is None else now
    age = None if d.last_ts is None else max(0.0, now - d.last_ts)
    answering = age is not None and age <= STALE_AFTER_S and (gw is None or gw.online is not False)
    if comm is not None and (comm.get("online") is False or comm.get("breaker") == "open"):
        # Agents report online: false while a device's breaker is open or half-open (it stopped
        # answering); `breaker == "open"` with online: true only comes from older agents.
        answering = False
    errors = None
    if comm is not None:
        errors = int(comm.get("timeouts", 0)) + int(comm.get("crc_errors", 0)) + int(comm.get("exceptions", 0))
    low = sorted(int(k.split(".")[1]) for k, v in d.last_values.items()
                 if k.startswith("bay.") and k.endswith(".battery") and (_num(v) or 99) < LOW_BATTERY_V)
    return HealthView(device=d.id, gateway=d.gateway, profile=d.profile, family=family_of(d),
                      answering=answering, gateway_online=gw.online if gw else None, last_seen_s=age,
                      comm_errors=errors, low_battery=low, detail=str((comm or {}).get("detail", "")))


# --------------------------------------------------------------------------------------- adapter
class RegistrySource:
    """The ingester's registry (cloud.state.registry.Registry) seen as an EstateSource."""

    def __init__(self, registry: Any) -> None:
        self.registry = registry

    def sites(self) -> list[SiteRec]:
        from sqlalchemy import select

        from cloud.state.models import SiteRow

        with self.registry.session() as s:
            rows = s.scalars(select(SiteRow).order_by(SiteRow.id))
            return [SiteRec(r.id, r.name or "", r.name_zh or "") for r in rows]

    def gateways(self, site: str) -> list[GatewayRec]:
        clocks = self.registry.gateway_clocks(site)
        out = []
        for g in self.registry.gateways(site):
            c = clocks.get(g.id)
            clock = (c.skew_s, c.source, c.rebased, c.last_rebased) if c is not None else (None, "", 0, None)
            out.append(GatewayRec(g.site_id, g.id, g.name or "", g.location or "", g.online, g.status_ts,
                                  g.status_reason or "", g.agent or "", *clock))
        return out

    def devices(self, site: str) -> list[DeviceRec]:
        return [DeviceRec(d.site_id, d.id, d.gateway_id, d.profile, d.name or "", dict(d.labels or {}),
                          {int(k): dict(v) for k, v in (d.instance_labels or {}).items()},
                          dict(d.last_values or {}), d.last_ts) for d in self.registry.devices(site)]

    def add_gateway(self, site: str, gateway: str, name: str, devices: list[Any]) -> None:
        """Register an installer-enrolled gateway and its devices (kept when the site file is re-applied)."""
        from cloud.state.models import DeviceRow, GatewayRow

        with self.registry.session.begin() as s:
            s.add(GatewayRow(site_id=site, id=gateway, name=name, labels={}, enrolled_by="installer"))
            for d in devices:
                s.add(DeviceRow(site_id=site, id=d.id, gateway_id=gateway, profile=d.profile, name="",
                                labels=dict(d.labels), instance_labels={}, enrolled_by="installer"))
