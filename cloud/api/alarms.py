"""Alarm API (minimal; the web part mounts this router behind its auth).

`GET /ack/{token}` only shows a confirm page — link previews in chat apps fetch URLs, and a
preview must never acknowledge a fire. The tap on the page's button is the `POST`.
"""

from __future__ import annotations

import html
import time
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from cloud.alarms.engine import AlarmEngine
from cloud.notify.links import AckSigner, LinkError

router = APIRouter()


def get_engine(request: Request) -> AlarmEngine:
    engine: AlarmEngine = request.app.state.alarm_engine
    return engine


def get_signer(request: Request) -> AckSigner:
    signer: AckSigner = request.app.state.ack_signer
    return signer


Engine = Annotated[AlarmEngine, Depends(get_engine)]
Signer = Annotated[AckSigner, Depends(get_signer)]


class Actor(BaseModel):
    who: str = Field(min_length=1, max_length=64)
    via: str = Field(default="api", max_length=32)


class ResolveBody(Actor):
    note: str = ""


class SilenceBody(Actor):
    reason: str = Field(min_length=1, max_length=500)
    until: datetime


class WindowBody(BaseModel):
    site: str
    start: datetime
    end: datetime
    reason: str = "sprinkler inspection"
    by: str = ""


def _alarm_or_404(engine: AlarmEngine, alarm_id: int) -> dict[str, Any]:
    a = engine.store.get(alarm_id)
    if a is None:
        raise HTTPException(404, f"no alarm {alarm_id}")
    return a.to_json()


@router.get("/alarms")
def list_alarms(
    engine: Engine, site: str | None = None, active: bool | None = None, limit: int = 200
) -> list[dict[str, Any]]:
    return [a.to_json() for a in engine.store.list_alarms(site=site, active=active, limit=min(limit, 1000))]


@router.get("/alarms/{alarm_id}")
def get_alarm(engine: Engine, alarm_id: int) -> dict[str, Any]:
    out = _alarm_or_404(engine, alarm_id)
    out["audit"] = engine.store.audit_of(alarm_id)
    out["notifications"] = engine.store.attempts(alarm_id)
    return out


@router.post("/alarms/{alarm_id}/ack")
def ack(engine: Engine, alarm_id: int, body: Actor) -> dict[str, Any]:
    _alarm_or_404(engine, alarm_id)
    return {"acknowledged": engine.acknowledge(alarm_id, body.who, body.via)}


@router.post("/alarms/{alarm_id}/resolve")
def resolve(engine: Engine, alarm_id: int, body: ResolveBody) -> dict[str, Any]:
    _alarm_or_404(engine, alarm_id)
    return {"resolved": engine.resolve(alarm_id, body.who, body.via, body.note)}


@router.post("/alarms/{alarm_id}/silence")
def silence(engine: Engine, alarm_id: int, body: SilenceBody) -> dict[str, Any]:
    _alarm_or_404(engine, alarm_id)
    until = body.until.timestamp()
    if until <= time.time():
        raise HTTPException(422, "`until` must be in the future")
    return {"silenced": engine.silence(alarm_id, until, body.reason, body.who, body.via)}


@router.get("/inspection-windows")
def windows(engine: Engine, site: str | None = None) -> list[dict[str, Any]]:
    out = engine.store.list_windows(site)
    for s in engine.sites.values():
        if site and s.site != site:
            continue
        out += [
            {
                "site": s.site,
                "start": w.start.timestamp(),
                "end": w.end.timestamp(),
                "reason": w.reason,
                "by": w.by,
                "source": "site file",
            }
            for w in s.inspection_windows
        ]
    return out


@router.post("/inspection-windows")
def add_window(engine: Engine, body: WindowBody) -> dict[str, Any]:
    if body.site not in engine.sites:
        raise HTTPException(404, f"unknown site {body.site!r}")
    if body.start.tzinfo is None or body.end.tzinfo is None or body.end <= body.start:
        raise HTTPException(422, "start and end need a time zone and end must be after start")
    wid = engine.add_window(body.site, body.start.timestamp(), body.end.timestamp(), body.reason, body.by)
    return {"id": wid}


@router.get("/people")
def people(engine: Engine, site: str | None = None) -> list[dict[str, Any]]:
    from cloud.notify.dispatch import redact

    out = []
    for s in engine.sites.values():
        if site and s.site != site:
            continue
        for p in s.people:
            d = p.model_dump(mode="json")
            d["site"] = s.site
            d["channels"] = [
                {"url": redact(c.url), "name": c.name, "limit_per_min": c.effective_limit} for c in p.channels
            ]
            out.append(d)
    return out


@router.get("/escalation")
def escalation(engine: Engine) -> dict[str, Any]:
    return {s.site: s.escalation.model_dump(mode="json", by_alias=True) for s in engine.sites.values()}


def _claim(token: str, signer: AckSigner) -> Any:
    try:
        return signer.verify(token, time.time())
    except LinkError as e:
        msg = {
            "expired": "This link has expired. 链接已过期。",
            "bad_signature": "Invalid link. 链接无效。",
            "malformed": "Invalid link. 链接无效。",
        }[e.reason]
        raise HTTPException(403, msg) from None


@router.get("/ack/{token}", response_class=HTMLResponse)
def ack_page(engine: Engine, signer: Signer, token: str) -> HTMLResponse:
    claim = _claim(token, signer)
    a = engine.store.get(claim.alarm_id)
    if a is None:
        raise HTTPException(404, "alarm not found")
    title = html.escape(f"{a.name_zh} {a.name}")
    where = html.escape(f"{a.site} / {a.device} {a.instance}")
    state = "已确认 acknowledged" if a.acked else "未确认 not acknowledged"
    return HTMLResponse(
        "<!doctype html><html><head><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width,initial-scale=1'>"
        "<title>确认报警 Acknowledge</title></head>"
        f"<body><h1>{title}</h1><p>{where}</p><p>{state}</p>"
        f"<form method=post action='/ack/{html.escape(token)}'>"
        "<button type=submit style='font-size:2em;padding:.5em 1em'>我来处理 I'm on it</button>"
        "</form></body></html>"
    )


@router.post("/ack/{token}")
def ack_link(engine: Engine, signer: Signer, token: str) -> dict[str, Any]:
    claim = _claim(token, signer)
    if engine.store.get(claim.alarm_id) is None:
        raise HTTPException(404, "alarm not found")
    return {
        "alarm": claim.alarm_id,
        "acknowledged": engine.acknowledge(claim.alarm_id, claim.person, "link"),
        "by": claim.person,
    }
