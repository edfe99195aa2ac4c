"""The alarm engine seen from HTTP: the signed one-tap acknowledge links, and the views of windows,
people and notification attempts that the authenticated API (cloud/api/routes_alarms.py) serves.

`GET /ack/{token}` only shows a confirm page — link previews in chat apps fetch URLs, and a
preview must never acknowledge a fire. The tap on the page's button is the `POST`. The signature is
the link's authorisation, so these two routes need no login.

Nothing here lets a channel secret out: people's channel URLs go through `redact`, and the error
text of a notification attempt through `scrub` against every configured channel URL.
"""

from __future__ import annotations

import html
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse

from cloud.alarms.engine import AlarmEngine
from cloud.notify.dispatch import redact, scrub
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


# ------------------------------------------------------------------------------ views (no routes)
def windows_of(engine: AlarmEngine, sites: list[str], now: float) -> list[dict[str, Any]]:
    """Inspection windows of `sites`: added over the API (kept in the alarm store, with an id) and
    from the site files (no id: edit the file to change them), in order of start."""
    out = [{**w, "source": "api"} for w in engine.store.list_windows() if w["site"] in sites]
    for s in sites:
        cfg = engine.sites.get(s)
        out += [{"id": None, "site": s, "start": w.start.timestamp(), "end": w.end.timestamp(),
                 "reason": w.reason, "by": w.by, "source": "site file"}
                for w in (cfg.inspection_windows if cfg else [])]
    for w in out:
        w["open"] = w["start"] <= now < w["end"]
    return sorted(out, key=lambda w: (w["start"], w["site"]))


def people_of(engine: AlarmEngine, sites: list[str]) -> list[dict[str, Any]]:
    """Who is notified and how, with every channel URL redacted (scheme and host at most)."""
    out = []
    for s in sites:
        cfg = engine.sites.get(s)
        for p in cfg.people if cfg else []:
            d = p.model_dump(mode="json")
            d["site"] = s
            d["channels"] = [{"url": redact(c.url), "name": c.name, "limit_per_min": c.effective_limit}
                             for c in p.channels]
            out.append(d)
    return out


def attempts_of(engine: AlarmEngine, alarm_id: int) -> list[dict[str, Any]]:
    """Notification attempts of one alarm; channels are stored redacted, errors are scrubbed again
    here against every configured channel (rows written before scrubbing existed, or by a sender
    that quoted a piece of a URL)."""
    urls = [c.url for cfg in engine.sites.values() for p in cfg.people for c in p.channels]
    rows = engine.store.attempts(alarm_id)
    for r in rows:
        r["channel"] = scrub(r["channel"], urls)
        r["error"] = scrub(r["error"], urls)
    return rows


# ------------------------------------------------------------------------- signed one-tap links
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
