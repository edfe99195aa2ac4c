"""People's alarm actions and the alarm settings they may read, under /api/v1 (docs/alarms.md).

Resolve (edge actions such as an interlock clear no other way), silence, sprinkler inspection
windows (kept in the alarm store, so they outlive a restart and hold back the pushes of sprinkler
alarms), people and escalation with channel secrets redacted. Each route states its permission
(cloud/auth/roles.py); an alarm, window or site of another estate answers 404 like one that does
not exist. Who acted comes from the login, never from the body.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from pydantic import AwareDatetime, BaseModel, Field

from cloud.api.alarms import people_of, windows_of
from cloud.api.deps import require, site_of
from cloud.api.routes_api import AlarmId, engine_of, known_sites, visible_alarm
from cloud.auth.roles import Perm, Principal

router = APIRouter(prefix="/api/v1", tags=["alarms"])

SiteQ = Annotated[str | None, Query(max_length=64)]
WindowId = Annotated[int, Path(ge=1, le=2**62)]
MAX_SILENCE_S = 7 * 86400  # an alarm silenced longer is forgotten: resolve it, or fix the rule
MAX_WINDOW_S = 86400  # a sprinkler test takes hours; a longer window would hide fires for days


class ResolveIn(BaseModel):
    note: str = Field(default="", max_length=500, examples=["port checked, bike removed"])


class ResolveOut(BaseModel):
    alarm: int
    resolved: bool
    by: str


class SilenceIn(BaseModel):
    reason: str = Field(min_length=1, max_length=500, examples=["electrician on site"])
    until: AwareDatetime = Field(description="when pushes resume (at most 7 days ahead)")


class SilenceOut(BaseModel):
    alarm: int
    silenced_until: float
    by: str


class WindowIn(BaseModel):
    site: str = Field(max_length=64)
    start: AwareDatetime
    end: AwareDatetime = Field(description="after start and in the future; at most 24 h after start")
    reason: str = Field(default="sprinkler inspection", min_length=1, max_length=500)


class WindowOut(BaseModel):
    id: int | None = Field(description="None for a window of the site file (edit the file to change it)")
    site: str
    start: datetime
    end: datetime
    reason: str
    by: str
    source: Literal["api", "site file"]
    open: bool


class ChannelOut(BaseModel):
    url: str = Field(description="redacted: scheme and, for webhooks and e-mail, the host")
    name: str
    limit_per_min: int | None


class PersonOut(BaseModel):
    site: str
    id: str
    name: str
    role: str
    tier: int
    lang: str
    delivery: str
    channels: list[ChannelOut]


class TierOut(BaseModel):
    tier: int
    after: float


class EscalationOut(BaseModel):
    site: str
    tiers: list[TierOut]
    repeat: float
    min_severity: str
    notify_resolution: bool
    retries: int
    retry_delay: float


def _active_alarm(request: Request, p: Principal, alarm_id: int) -> Any:
    a = visible_alarm(request, p, alarm_id)
    if not a.active:
        raise HTTPException(409, f"alarm {alarm_id} is no longer active")
    return a


def _sites(request: Request, p: Principal, site: str | None) -> list[str]:
    if site:
        return [site_of(p, site, known_sites(request))]
    return p.visible(known_sites(request))


def _window_out(w: dict[str, Any]) -> WindowOut:
    return WindowOut(**{**w, "start": datetime.fromtimestamp(w["start"], UTC),
                        "end": datetime.fromtimestamp(w["end"], UTC)})


@router.post("/alarms/{alarm_id}/resolve", response_model=ResolveOut,
             description="Close an active alarm by hand: edge actions (interlocks) clear no other way. An "
                         "alarm whose condition still holds is raised again by the engine.")
def resolve(alarm_id: AlarmId, request: Request, body: ResolveIn | None = None,
            p: Principal = Depends(require(Perm.RESOLVE_ALARMS))) -> ResolveOut:
    _active_alarm(request, p, alarm_id)
    note = body.note if body else ""
    done = engine_of(request).resolve(alarm_id, p.username, "api" if p.via_token else "web", note)
    return ResolveOut(alarm=alarm_id, resolved=bool(done), by=p.username)


@router.post("/alarms/{alarm_id}/silence", response_model=SilenceOut,
             description="Pause an active alarm's pushes (escalation, reminders) until `until`.")
def silence(alarm_id: AlarmId, body: SilenceIn, request: Request,
            p: Principal = Depends(require(Perm.SILENCE_ALARMS))) -> SilenceOut:
    _active_alarm(request, p, alarm_id)
    until = body.until.timestamp()
    if not time.time() < until <= time.time() + MAX_SILENCE_S:
        raise HTTPException(422, "`until` must be in the future and at most 7 days ahead")
    engine_of(request).silence(alarm_id, until, body.reason, p.username, "api" if p.via_token else "web")
    return SilenceOut(alarm=alarm_id, silenced_until=until, by=p.username)


@router.get("/inspection-windows", response_model=list[WindowOut])
def windows(request: Request, site: SiteQ = None,
            p: Principal = Depends(require(Perm.VIEW_WINDOWS))) -> list[WindowOut]:
    sites = _sites(request, p, site)
    return [_window_out(w) for w in windows_of(engine_of(request), sites, time.time())]


@router.post("/inspection-windows", response_model=WindowOut, status_code=201,
             description="While a window of the site is open, alarms of sprinkler rules (waterflow, valve "
                         "tamper, low pressure) are raised and recorded but push nobody. Kept in the alarm "
                         "store (survives a restart).")
def add_window(body: WindowIn, request: Request,
               p: Principal = Depends(require(Perm.MANAGE_WINDOWS))) -> WindowOut:
    site_of(p, body.site, known_sites(request))
    eng = engine_of(request)
    start, end = body.start.timestamp(), body.end.timestamp()
    if end <= start or end <= time.time() or end - start > MAX_WINDOW_S:
        raise HTTPException(422, "`end` must be after `start`, in the future, and at most 24 h after `start`")
    wid = eng.add_window(body.site, start, end, body.reason, p.username)
    return _window_out({"id": wid, "site": body.site, "start": start, "end": end, "reason": body.reason,
                        "by": p.username, "source": "api", "open": start <= time.time() < end})


@router.post("/inspection-windows/{window_id}/end", response_model=WindowOut,
             description="End a window added over the API now; held-back alarms still active are pushed.")
def end_window(window_id: WindowId, request: Request,
               p: Principal = Depends(require(Perm.MANAGE_WINDOWS))) -> WindowOut:
    eng = engine_of(request)
    mine = [w for w in eng.store.list_windows() if w["id"] == window_id and p.sees(w["site"])]
    if not mine:
        raise HTTPException(404, f"no inspection window {window_id}")
    w = eng.end_window(window_id)
    if w is None:
        raise HTTPException(404, f"no inspection window {window_id}")
    return _window_out({**w, "source": "api", "open": False})


@router.get("/people", response_model=list[PersonOut],
            description="Who is notified, in which tier, through which channels (URLs redacted).")
def people(request: Request, site: SiteQ = None,
           p: Principal = Depends(require(Perm.VIEW_PEOPLE))) -> list[PersonOut]:
    return [PersonOut(**d) for d in people_of(engine_of(request), _sites(request, p, site))]


@router.get("/escalation", response_model=list[EscalationOut])
def escalation(request: Request, site: SiteQ = None,
               p: Principal = Depends(require(Perm.VIEW_PEOPLE))) -> list[EscalationOut]:
    eng = engine_of(request)
    out = []
    for s in _sites(request, p, site):
        cfg = eng.sites.get(s)
        if cfg is not None:
            out.append(EscalationOut(site=s, **cfg.escalation.model_dump(mode="json", by_alias=True)))
    return out
