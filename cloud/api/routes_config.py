"""JSON API of remote configuration (installers and managers: `Perm.CONFIGURE`).

A desired config is checked like `edge-agent check` plus the remote rules before anything is
stored; a refusal answers 422 with every problem located by line and key. Every change is a new
version recorded with who made it; a rollback is a new version with an older one's text.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from pydantic import BaseModel, Field

from cloud.api.deps import require, site_of
from cloud.api.routes_api import known_sites, source
from cloud.auth.roles import Perm, Principal
from cloud.remote_config.service import ConfigRejected, ConfigService, GatewayConfig
from cloud.remote_config.store import Event, Rollout, Version, VersionInfo
from device_profiles import wire

router = APIRouter(prefix="/api/v1", tags=["config"])
Configure = Depends(require(Perm.CONFIGURE))


class ConfigIn(BaseModel):
    yaml: str = Field(max_length=wire.MAX_CONFIG_TEXT, description="the edge config's YAML, without uplink.password")
    comment: str = Field(default="", max_length=500)
    probe_s: float = Field(default=20.0, ge=1, le=120, description="devices must answer within this")
    confirm_s: float = Field(default=30.0, ge=5, le=300, description="a new uplink must be confirmed within this")


class CheckIn(BaseModel):
    yaml: str = Field(max_length=wire.MAX_CONFIG_TEXT)


class ProblemOut(BaseModel):
    line: int
    key: str
    message: str


class CheckOut(BaseModel):
    ok: bool
    problems: list[ProblemOut]
    warnings: list[str]
    budgets: list[str]
    digest: str


class GatewayConfigOut(BaseModel):
    site: str
    gateway: str
    desired: VersionInfo | None
    running_version: int | None = Field(description="0: a config written on site; null: not reported yet")
    running_label: str
    running_digest: str
    agent: str
    drift: str = Field(description="in_sync, pending, applying, rolled_back, refused, drift, unmanaged, unknown")
    drift_text: str
    last_version: int | None
    last_status: str
    last_detail: str
    last_at: float | None
    last_devices: dict[str, str]
    last_problems: list[ProblemOut]


class RollbackIn(BaseModel):
    version: int = Field(ge=1, le=2**31)
    comment: str = Field(default="", max_length=500)


class RolloutIn(BaseModel):
    gateways: list[str] = Field(min_length=1, max_length=500)
    patch: str = Field(min_length=1, max_length=wire.MAX_CONFIG_TEXT,
                       description="YAML merge patch (RFC 7396) applied to each gateway's config",
                       examples=["uplink: {url: mqtts://mqtt2.example.org:8883}"])
    comment: str = Field(default="", max_length=500)
    step_timeout_s: float = Field(default=300.0, ge=10, le=3600, description="no result within this: stop")
    probe_s: float = Field(default=20.0, ge=1, le=120)
    confirm_s: float = Field(default=30.0, ge=5, le=300)


def service(request: Request) -> ConfigService:
    svc: ConfigService | None = getattr(request.app.state, "configs", None)
    if svc is None:
        raise HTTPException(503, "remote configuration is not running in this process")
    return svc


def gateway_of(request: Request, p: Principal, site: str, gateway: str) -> str:
    site_of(p, site, known_sites(request))
    if gateway not in {g.id for g in source(request).gateways(site)}:
        raise HTTPException(404, f"no gateway {gateway!r}")
    return gateway


def rejected(e: ConfigRejected) -> HTTPException:
    return HTTPException(e.status, {"message": str(e), "problems": [problem(i) for i in e.problems]})


def problem(i: Any) -> dict[str, Any]:
    return {"line": i.line, "key": i.key, "message": i.message, "where": i.file}


def config_out(c: GatewayConfig) -> GatewayConfigOut:
    st = c.state
    return GatewayConfigOut(
        site=c.site, gateway=c.gateway, desired=c.desired.info() if c.desired else None,
        running_version=st.running_version if st else None, running_label=c.running_label,
        running_digest=st.running_digest if st else "", agent=st.agent if st else "", drift=c.drift,
        drift_text=c.drift_text, last_version=st.last_version if st else None, last_status=st.last_status if st else "",
        last_detail=st.last_detail if st else "", last_at=st.last_at if st else None,
        last_devices=dict(st.last_devices) if st else {},
        last_problems=[ProblemOut(line=x.get("line", 0), key=x.get("key", ""), message=x.get("message", ""))
                       for x in (st.last_problems if st else [])])


@router.get("/sites/{site}/configs", response_model=list[GatewayConfigOut],
            description="Every gateway's desired and running config version and drift.")
def configs(site: str, request: Request, p: Principal = Configure) -> list[GatewayConfigOut]:
    site_of(p, site, known_sites(request))
    svc = service(request)
    return [config_out(svc.view(site, g.id)) for g in source(request).gateways(site)]


@router.get("/sites/{site}/gateways/{gateway}/config", response_model=GatewayConfigOut)
def config(site: str, gateway: str, request: Request, p: Principal = Configure) -> GatewayConfigOut:
    gateway_of(request, p, site, gateway)
    return config_out(service(request).view(site, gateway))


@router.put("/sites/{site}/gateways/{gateway}/config", response_model=VersionInfo, status_code=201,
            description="A new desired config: checked like `edge-agent check` (plus the remote rules) before it is "
                        "stored, then sent to the gateway. 422 with every problem when it does not pass.")
def put_config(site: str, gateway: str, body: ConfigIn, request: Request, p: Principal = Configure) -> VersionInfo:
    gateway_of(request, p, site, gateway)
    try:
        v = service(request).submit(site, gateway, body.yaml, p.username, body.comment, body.probe_s, body.confirm_s)
    except ConfigRejected as e:
        raise rejected(e) from None
    return v.info()


@router.post("/sites/{site}/gateways/{gateway}/config/check", response_model=CheckOut,
             description="Check a config without storing or sending it.")
def check_config(site: str, gateway: str, body: CheckIn, request: Request, p: Principal = Configure) -> CheckOut:
    gateway_of(request, p, site, gateway)
    v = service(request).check(site, gateway, body.yaml)
    return CheckOut(ok=v.ok, problems=[ProblemOut(line=i.line, key=i.key, message=i.message) for i in v.problems],
                    warnings=v.warnings, budgets=v.budgets, digest=v.digest)


@router.post("/sites/{site}/gateways/{gateway}/config/rollback", response_model=VersionInfo, status_code=201,
             description="Make an older version desired again (as a new version with its text).")
def rollback(site: str, gateway: str, body: RollbackIn, request: Request, p: Principal = Configure) -> VersionInfo:
    gateway_of(request, p, site, gateway)
    try:
        return service(request).rollback(site, gateway, body.version, p.username, body.comment).info()
    except ConfigRejected as e:
        raise rejected(e) from None


@router.get("/sites/{site}/gateways/{gateway}/config/versions", response_model=list[VersionInfo])
def versions(site: str, gateway: str, request: Request, p: Principal = Configure) -> list[VersionInfo]:
    gateway_of(request, p, site, gateway)
    return [v.info() for v in service(request).store.versions(site, gateway)]


@router.get("/sites/{site}/gateways/{gateway}/config/versions/{version}", response_model=Version)
def version(site: str, gateway: str, version: int, request: Request, p: Principal = Configure) -> Version:
    gateway_of(request, p, site, gateway)
    v = service(request).store.version(site, gateway, version) if 1 <= version <= 2**31 else None
    if v is None:
        raise HTTPException(404, f"no version {version}")
    return v


@router.get("/sites/{site}/gateways/{gateway}/config/diff", response_class=Response,
            responses={200: {"content": {"text/plain": {}}}},
            description="Unified diff between two versions; `a`/`b` are version numbers, `desired` or `running`.")
def diff(site: str, gateway: str, request: Request, a: str = Query(default="running", max_length=12),
         b: str = Query(default="desired", max_length=12), p: Principal = Configure) -> Response:
    gateway_of(request, p, site, gateway)
    try:
        return Response(service(request).diff(site, gateway, a, b), media_type="text/plain")
    except ConfigRejected as e:
        raise rejected(e) from None


@router.get("/sites/{site}/gateways/{gateway}/config/history", response_model=list[Event],
            description="Every change and every gateway answer, newest first, with who.")
def history(site: str, gateway: str, request: Request, limit: int = Query(default=100, ge=1, le=1000),
            p: Principal = Configure) -> list[Event]:
    gateway_of(request, p, site, gateway)
    return service(request).store.events(site, gateway, limit)


@router.post("/sites/{site}/config-rollouts", response_model=Rollout, status_code=201,
             description="Apply one change to several gateways, one at a time; stops at the first refusal, "
                         "rollback or silence. Every gateway's patched config is checked before the first is sent.")
def start_rollout(site: str, body: RolloutIn, request: Request, p: Principal = Configure) -> Rollout:
    site_of(p, site, known_sites(request))
    try:
        r = service(request).start_rollout(site, body.gateways, body.patch, p.username, body.comment,
                                           body.step_timeout_s, body.probe_s, body.confirm_s)
    except ConfigRejected as e:
        raise rejected(e) from None
    return r


@router.get("/sites/{site}/config-rollouts", response_model=list[Rollout])
def rollouts(site: str, request: Request, p: Principal = Configure) -> list[Rollout]:
    site_of(p, site, known_sites(request))
    return service(request).store.rollouts(site)


@router.get("/sites/{site}/config-rollouts/{rollout_id}", response_model=Rollout)
def rollout(site: str, rollout_id: int, request: Request, p: Principal = Configure) -> Rollout:
    site_of(p, site, known_sites(request))
    r = service(request).store.rollout(rollout_id) if 1 <= rollout_id <= 2**62 else None
    if r is None or r.site != site:
        raise HTTPException(404, "no such rollout")
    return r
