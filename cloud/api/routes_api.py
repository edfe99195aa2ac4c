"""JSON API under /api/v1 (OpenAPI at /openapi.json, docs at /docs).

Every route states its permission (cloud/auth/roles.py) and checks the site against the user's
sites; a site the user does not belong to answers 404 exactly like a site that does not exist.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from pydantic import BaseModel, Field

from cloud.api import estate
from cloud.api.alarms import attempts_of
from cloud.api.commands import CommandRefused, CommandView
from cloud.api.deps import current, require, site_of
from cloud.auth.roles import Perm, Principal

router = APIRouter(prefix="/api/v1", tags=["api"])

IdStr = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
# Database ids are 64-bit: a larger number is a 422, never an overflow deep in the driver.
AlarmId = Annotated[int, Path(ge=1, le=2**62)]


class Me(BaseModel):
    username: str
    role: str
    sites: list[str]
    display_name: str


class SiteOut(BaseModel):
    id: str
    name: str
    name_zh: str


class GatewayOut(BaseModel):
    site: str
    id: str
    name: str
    location: str
    online: bool | None
    status_reason: str
    agent: str
    clock_skew_s: float | None = None  # the gateway's clock minus the cloud's, seconds
    clock_trouble: bool = False  # off by more than the tolerance, or its timestamps rebased lately


class DeviceOut(BaseModel):
    id: str
    gateway: str
    profile: str
    family: str
    name: str
    labels: dict[str, str]
    last_values: dict[str, Any]
    health: estate.HealthView


class ZoneOut(BaseModel):
    zone: str
    free: int
    total: int
    unknown: int
    fire_lane_total: int
    fire_lane_occupied: int
    fire_lane_status: str


class ParkingOut(BaseModel):
    site: str
    zones: list[ZoneOut]
    free: int
    total: int


class AlarmOut(BaseModel):
    id: int
    site: str
    gateway: str
    device: str
    rule: str
    instance: str
    severity: str
    name: str
    name_zh: str
    active: bool
    acked: bool
    acked_by: str | None = None
    acked_at: float | None = None
    raised_at: float
    cleared_at: float | None = None
    value: Any = None
    tier: int = 0
    kind: str = ""
    detail: dict[str, Any] = Field(default_factory=dict, description="what the edge did (edge actions), why")
    suppressed: str | None = Field(default=None, description="why nobody was woken (an inspection window)")
    silenced_until: float | None = None
    silence_reason: str | None = None
    resolved_by: str | None = None
    occurrences: int = 1


class AckOut(BaseModel):
    alarm: int
    acknowledged: bool
    by: str


class CommandIn(BaseModel):
    command: str = Field(min_length=1, max_length=48, examples=["port_enable"])
    index: int | None = Field(default=None, ge=0, le=65535, examples=[3])
    value: bool | int | None = Field(default=None, examples=[False])


class DeviceIn(BaseModel):
    id: str = IdStr
    profile: str = Field(min_length=1, max_length=64)
    address: int | None = Field(default=None, ge=1, le=247)


class EnrolIn(BaseModel):
    gateway: str = IdStr
    name: str = Field(default="", max_length=128)
    devices: list[DeviceIn] = Field(min_length=1, max_length=64)


class EnrolOut(BaseModel):
    site: str
    gateway: str
    mqtt_user: str
    mqtt_password: str = Field(description="shown once; only its hash is kept")
    passwd_line: str
    acl: str
    edge_config: str


# ------------------------------------------------------------------------------------- helpers
def source(request: Request) -> estate.EstateSource:
    src: estate.EstateSource = request.app.state.estate
    return src


def known_sites(request: Request) -> list[str]:
    return [s.id for s in source(request).sites()]


def health_of(request: Request, site: str) -> list[estate.HealthView]:
    src = source(request)
    gws = {g.id: g for g in src.gateways(site)}
    cmd = request.app.state.commander
    comm = cmd.health if cmd is not None else {}
    return [estate.device_health(d, gws.get(d.gateway), comm.get((site, d.id))) for d in src.devices(site)]


def ports_of(request: Request, site: str) -> list[estate.PortView]:
    energy = request.app.state.energy
    out = []
    for d in source(request).devices(site):
        for p in estate.charger_ports(d):
            today = energy.today(site, p.device, p.port, p.energy_kwh) if p.energy_kwh is not None else None
            out.append(replace(p, energy_today_kwh=today))
    return out


def parking_of(request: Request, site: str) -> ParkingOut:
    zones = estate.parking_zones(source(request).devices(site))
    return ParkingOut(site=site, zones=[ZoneOut(**asdict(z), fire_lane_status=z.fire_lane_status) for z in zones],
                      free=sum(z.free for z in zones), total=sum(z.total for z in zones))


def engine_of(request: Request) -> Any:
    eng = request.app.state.alarm_engine
    if eng is None:
        raise HTTPException(503, "the alarm engine is not running in this process")
    return eng


def visible_alarm(request: Request, p: Principal, alarm_id: int) -> Any:
    a = engine_of(request).store.get(alarm_id)
    if a is None or not p.sees(a.site):
        raise HTTPException(404, f"no alarm {alarm_id}")
    return a


def alarm_out(a: Any) -> AlarmOut:
    return AlarmOut(**{k: getattr(a, k) for k in AlarmOut.model_fields})


def alarms_for(request: Request, p: Principal, site: str | None, active: bool | None, limit: int) -> list[AlarmOut]:
    sites = [site] if site else p.visible(known_sites(request))
    if site:
        site_of(p, site, known_sites(request))
    eng = engine_of(request)
    out = [a for s in sites for a in eng.store.list_alarms(site=s, active=active, limit=limit)]
    out.sort(key=lambda a: (not a.active, a.acked, -a.raised_at))
    return [alarm_out(a) for a in out[:limit]]


# -------------------------------------------------------------------------------------- routes
@router.get("/me", response_model=Me)
def me(p: Principal = Depends(require(Perm.VIEW_PARKING))) -> Me:
    return Me(username=p.username, role=p.role.value, sites=sorted(p.sites), display_name=p.display_name)


@router.get("/sites", response_model=list[SiteOut])
def sites(request: Request, p: Principal = Depends(require(Perm.VIEW_PARKING))) -> list[SiteOut]:
    return [SiteOut(id=s.id, name=s.name, name_zh=s.name_zh) for s in source(request).sites() if p.sees(s.id)]


@router.get("/sites/{site}/gateways", response_model=list[GatewayOut])
def gateways(site: str, request: Request, p: Principal = Depends(require(Perm.VIEW_ESTATE))) -> list[GatewayOut]:
    site_of(p, site, known_sites(request))
    return [GatewayOut(site=g.site, id=g.id, name=g.name, location=g.location, online=g.online,
                       status_reason=g.status_reason, agent=g.agent, clock_skew_s=g.clock_skew_s,
                       clock_trouble=g.clock_trouble) for g in source(request).gateways(site)]


@router.get("/sites/{site}/devices", response_model=list[DeviceOut])
def devices(site: str, request: Request, p: Principal = Depends(require(Perm.VIEW_ESTATE))) -> list[DeviceOut]:
    site_of(p, site, known_sites(request))
    health = {h.device: h for h in health_of(request, site)}
    return [DeviceOut(id=d.id, gateway=d.gateway, profile=d.profile, family=estate.family_of(d), name=d.name,
                      labels=d.labels, last_values=d.last_values, health=health[d.id])
            for d in source(request).devices(site)]


@router.get("/sites/{site}/ports", response_model=list[estate.PortView])
def ports(site: str, request: Request,
          p: Principal = Depends(require(Perm.VIEW_ESTATE))) -> list[estate.PortView]:
    site_of(p, site, known_sites(request))
    return ports_of(request, site)


@router.get("/sites/{site}/parking", response_model=ParkingOut,
            description="Free / total bays per zone and fire-lane status. Public when the server's "
                        "`public_parking` setting is on (the default); otherwise any logged-in role of the site.")
def parking(site: str, request: Request) -> ParkingOut:
    p = current(request)
    if p is None and not request.app.state.settings.public_parking:
        raise HTTPException(401, "log in or send an API token", headers={"WWW-Authenticate": "Bearer"})
    site_of(p, site, known_sites(request))
    return parking_of(request, site)


@router.get("/sites/{site}/health", response_model=list[estate.HealthView])
def health(site: str, request: Request,
           p: Principal = Depends(require(Perm.VIEW_HEALTH))) -> list[estate.HealthView]:
    site_of(p, site, known_sites(request))
    return health_of(request, site)


@router.get("/alarms", response_model=list[AlarmOut])
def alarms(request: Request, site: str | None = Query(default=None, max_length=64), active: bool | None = None,
           limit: int = Query(default=200, ge=1, le=1000),
           p: Principal = Depends(require(Perm.VIEW_ALARMS))) -> list[AlarmOut]:
    return alarms_for(request, p, site, active, limit)


@router.get("/alarms/{alarm_id}", response_model=dict[str, Any])
def alarm(alarm_id: AlarmId, request: Request, p: Principal = Depends(require(Perm.VIEW_ALARMS))) -> dict[str, Any]:
    a = visible_alarm(request, p, alarm_id)
    out: dict[str, Any] = alarm_out(a).model_dump()
    out["audit"] = engine_of(request).store.audit_of(alarm_id)
    out["notifications"] = attempts_of(engine_of(request), alarm_id)  # channels redacted, errors scrubbed
    return out


@router.post("/alarms/{alarm_id}/ack", response_model=AckOut)
def ack(alarm_id: AlarmId, request: Request, p: Principal = Depends(require(Perm.ACK_ALARMS))) -> AckOut:
    visible_alarm(request, p, alarm_id)
    done = engine_of(request).acknowledge(alarm_id, p.username, "api" if p.via_token else "web")
    return AckOut(alarm=alarm_id, acknowledged=bool(done), by=p.username)


@router.post("/sites/{site}/gateways/{gateway}/devices/{device}/commands", response_model=CommandView,
             description="Send a command declared by the device's profile (port_enable with index and "
                         "value, main_cut, main_restore). Waits a few seconds for the gateway's answer; "
                         "`status` is `sent` when none came yet (poll /commands/{id}).")
def command(site: str, gateway: str, device: str, body: CommandIn, request: Request,
            p: Principal = Depends(require(Perm.COMMAND))) -> CommandView:
    site_of(p, site, known_sites(request))
    cmd = request.app.state.commander
    if cmd is None:
        raise HTTPException(503, "commands are not configured (no MQTT broker)")
    dev = next((d for d in source(request).devices(site) if d.id == device), None)
    try:
        return cmd.send(dev, site, gateway, body.command, body.index, body.value, p.username)
    except CommandRefused as e:
        raise HTTPException(e.status, str(e)) from None


@router.get("/sites/{site}/commands", response_model=list[CommandView])
def commands(site: str, request: Request, p: Principal = Depends(require(Perm.COMMAND))) -> list[CommandView]:
    site_of(p, site, known_sites(request))
    cmd = request.app.state.commander
    return cmd.recent([site]) if cmd else []


@router.get("/commands/{command_id}", response_model=CommandView)
def command_status(command_id: str, request: Request, p: Principal = Depends(require(Perm.COMMAND))) -> CommandView:
    cmd = request.app.state.commander
    v = cmd.get(command_id) if cmd else None
    if v is None or not p.sees(v.site):
        raise HTTPException(404, "no such command")
    return v


def _enrol_out(e: Any) -> EnrolOut:
    """The answer to an enrolment or a password rotation (`cloud.enrol.Enrolment`)."""
    return EnrolOut(site=e.site, gateway=e.gateway, mqtt_user=e.mqtt_user, mqtt_password=e.password,
                    passwd_line=e.passwd_line, acl=e.acl, edge_config=e.edge_config)


@router.post("/sites/{site}/gateways", response_model=EnrolOut, status_code=201,
             description="Enrol a gateway: MQTT credentials bound to its own topics, the broker's "
                         "password-file line and ACL block, and a starting edge config.")
def enrol_gateway(site: str, body: EnrolIn, request: Request,
                  p: Principal = Depends(require(Perm.ENROL))) -> EnrolOut:
    from cloud.api.enrolment import EnrolConflict, enrol_and_store
    from cloud.enrol import DeviceSpec, EnrolError

    site_of(p, site, known_sites(request))
    try:
        e = enrol_and_store(request.app, site, body.gateway, body.name,
                            [DeviceSpec(d.id, d.profile, d.address) for d in body.devices], p.username)
    except EnrolConflict as ex:
        raise HTTPException(409, str(ex)) from None
    except EnrolError as ex:
        raise HTTPException(422, str(ex)) from None
    return _enrol_out(e)


@router.post("/sites/{site}/gateways/{gateway}/password", response_model=EnrolOut,
             description="A new broker password for an enrolled gateway (shown once) and its edge config; "
                         "the old one stops working when the broker reloads its accounts.")
def rotate_gateway_password(site: str, gateway: str, request: Request,
                            p: Principal = Depends(require(Perm.ENROL))) -> EnrolOut:
    from cloud.api.enrolment import NotEnrolled, rotate_password

    site_of(p, site, known_sites(request))
    try:
        e = rotate_password(request.app, site, gateway)
    except NotEnrolled as ex:
        raise HTTPException(404, str(ex)) from None
    return _enrol_out(e)


@router.get("/sites/{site}/mosquitto/passwd", response_class=Response,
            responses={200: {"content": {"text/plain": {}}}})
def mosquitto_passwd(site: str, request: Request, p: Principal = Depends(require(Perm.ENROL))) -> Response:
    """The broker's password-file lines of this site's enrolled gateways (hashes only)."""
    from cloud.api.enrolment import site_files

    site_of(p, site, known_sites(request))
    return Response(site_files(request.app, site)[0], media_type="text/plain")


@router.get("/sites/{site}/mosquitto/acl", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
def mosquitto_acl(site: str, request: Request, p: Principal = Depends(require(Perm.ENROL))) -> Response:
    """The broker's ACL blocks of this site's enrolled gateways."""
    from cloud.api.enrolment import site_files

    site_of(p, site, known_sites(request))
    return Response(site_files(request.app, site)[1], media_type="text/plain")
