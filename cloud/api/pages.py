"""Server-rendered pages: small, mobile-first, Chinese and English.

Live parts (alarm list, parking numbers, ports, health) are HTML fragments under /frag/… that a few
lines of JavaScript re-fetch every `poll_ms`; without JavaScript the page still works (reload).
Every form that changes something carries the session's CSRF token.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from cloud.api import estate, i18n, session_curve
from cloud.api.commands import CommandRefused
from cloud.api.deps import COOKIE, check_csrf, current
from cloud.api.routes_api import alarms_for, health_of, parking_of, ports_of, source
from cloud.api.storage import StorageView, storage_view
from cloud.auth.roles import Perm, Principal, Role
from device_profiles.charge_session import describe

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
LOGIN_COOKIE = "sw_login"
LOCAL_TZ = timezone(timedelta(hours=8))


def _ts(value: float | None) -> str:
    if value is None:
        return ""
    return datetime.fromtimestamp(value, UTC).astimezone(LOCAL_TZ).strftime("%m-%d %H:%M:%S")


def _num(value: Any) -> Any:
    """Readings as people read them: 505.014893 → 505.01; booleans and text unchanged."""
    if isinstance(value, float):
        return f"{value:.2f}".rstrip("0").rstrip(".")
    return value


templates.env.filters["ts"] = _ts
templates.env.filters["num"] = _num


class LoginRequired(Exception):
    pass


def lang_of(request: Request) -> str:
    return i18n.pick(request.query_params.get("lang"), request.cookies.get("lang"),
                     request.headers.get("accept-language"))


def render(request: Request, template: str, status: int = 200, **ctx: Any) -> HTMLResponse:
    lang = lang_of(request)
    p = current(request)
    resp = templates.TemplateResponse(request, template, {
        "t": i18n.translator(lang), "lang": lang, "other_lang": "en" if lang == "zh" else "zh",
        "me": p, "csrf": getattr(request.state, "csrf", None), "Perm": Perm,
        "poll_ms": request.app.state.settings.poll_ms, **ctx}, status_code=status)
    if request.query_params.get("lang") in i18n.LANGS:
        resp.set_cookie("lang", lang, max_age=365 * 86400, samesite="lax")
    return resp


async def page_user(request: Request, perm: Perm) -> Principal:
    p = current(request)
    if p is None:
        raise LoginRequired()
    if not p.can(perm):
        raise HTTPException(403, "forbidden")
    await check_csrf(request, p)
    return p


def pick_site(request: Request, p: Principal | None, site: str | None) -> tuple[str, list[estate.SiteRec]]:
    all_sites = source(request).sites()
    mine = [s for s in all_sites if p is None or p.sees(s.id)]
    if site is None:
        if not mine:
            raise HTTPException(404, "no site")
        return mine[0].id, mine
    if site not in {s.id for s in mine}:
        raise HTTPException(404, f"no site {site!r}")
    return site, mine


# ---------------------------------------------------------------------------------- login / out
@router.get("/login")
def login_page(request: Request, next: str = "/") -> Response:
    token = secrets.token_urlsafe(16)
    resp: Response = render(request, "login.html", next=_safe_next(next), login_csrf=token)
    resp.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", max_age=3600)
    return resp


def _safe_next(nxt: str) -> str:
    """Only local paths: a login link must not bounce the user to another site."""
    return nxt if nxt.startswith("/") and not nxt.startswith("//") and "\\" not in nxt else "/"


@router.post("/login")
async def login(request: Request) -> Response:
    form = await request.form()
    username = str(form.get("username", ""))[:64].strip().lower()
    password = str(form.get("password", ""))[:1024]
    nxt = _safe_next(str(form.get("next", "/")))
    sent = str(form.get("login_csrf", ""))
    if not sent or not secrets.compare_digest(sent.encode(), request.cookies.get(LOGIN_COOKIE, "").encode()):
        raise HTTPException(403, "missing or wrong CSRF token (reload the login page)")
    limiter = request.app.state.limiter
    ip = request.client.host if request.client else "?"
    keys = [f"user:{username}", f"ip:{ip}"]
    t = i18n.translator(lang_of(request))
    wait = max(limiter.user.retry_after(keys[0]), limiter.ip.retry_after(keys[1]))
    if wait > 0:
        limited = render(request, "login.html", status=429, next=nxt, login_csrf=sent,
                         error=t("too_many", s=int(wait) + 1), username=username)
        limited.headers["Retry-After"] = str(int(wait) + 1)
        return limited
    p = request.app.state.auth.authenticate(username, password)
    if p is None:
        limiter.user.failed(keys[0])
        limiter.ip.failed(keys[1])
        return render(request, "login.html", status=401, next=nxt, login_csrf=sent, error=t("bad_login"),
                      username=username)
    limiter.user.succeeded(keys[0])
    cookie, _csrf = request.app.state.auth.open_session(p)
    resp = RedirectResponse(nxt if nxt != "/" else home_of(p), status_code=303)
    s = request.app.state.settings
    resp.set_cookie(COOKIE, cookie, httponly=True, samesite="lax", secure=s.cookie_secure,
                    max_age=int(s.session_hours * 3600))
    resp.delete_cookie(LOGIN_COOKIE)
    return resp


@router.post("/logout")
async def logout(request: Request) -> Response:
    p = current(request)
    if p is not None:
        await check_csrf(request, p)
        request.app.state.auth.close_session(request.cookies.get(COOKIE, ""))
    resp = RedirectResponse("/login", status_code=303)
    resp.delete_cookie(COOKIE)
    return resp


def home_of(p: Principal) -> str:
    return {Role.MANAGER: "/estate", Role.VOLUNTEER: "/alarms", Role.INSTALLER: "/health",
            Role.RESIDENT: "/parking"}[p.role]


@router.get("/")
def home(request: Request) -> Response:
    p = current(request)
    return RedirectResponse(home_of(p) if p else "/login", status_code=303)


# ---------------------------------------------------------------------------------------- alarms
@router.get("/alarms")
async def alarms_page(request: Request, site: str | None = None) -> HTMLResponse:
    p = await page_user(request, Perm.VIEW_ALARMS)
    site_id, sites = pick_site(request, p, site)
    return render(request, "alarms.html", site=site_id, sites=sites, live=f"/frag/alarms?site={quote(site_id)}",
                  **_alarm_ctx(request, p, site_id))


@router.get("/frag/alarms")
async def alarms_frag(request: Request, site: str | None = None) -> HTMLResponse:
    p = await page_user(request, Perm.VIEW_ALARMS)
    site_id, _ = pick_site(request, p, site)
    return render(request, "_alarms.html", site=site_id, **_alarm_ctx(request, p, site_id))


def _alarm_ctx(request: Request, p: Principal, site: str) -> dict[str, Any]:
    every = alarms_for(request, p, site, None, 100)
    return {"active": [a for a in every if a.active or not a.acked][:50],
            "history": [a for a in every if not (a.active or not a.acked)][:50]}


async def _page_alarm(request: Request, perm: Perm, alarm_id: int) -> tuple[Principal, Any]:
    """The user of a form that acts on an alarm, and that alarm (404 outside the user's sites)."""
    p = await page_user(request, perm)
    if not 1 <= alarm_id <= 2**62:
        raise HTTPException(404, "no such alarm")
    from cloud.api.routes_api import visible_alarm

    return p, visible_alarm(request, p, alarm_id)


@router.post("/alarms/{alarm_id}/ack")
async def alarms_ack(alarm_id: int, request: Request) -> Response:
    p, a = await _page_alarm(request, Perm.ACK_ALARMS, alarm_id)
    request.app.state.alarm_engine.acknowledge(alarm_id, p.username, "web")
    return RedirectResponse(f"/alarms?site={quote(a.site)}", status_code=303)


@router.post("/alarms/{alarm_id}/resolve")
async def alarms_resolve(alarm_id: int, request: Request) -> Response:
    """The page's Resolve button (edge actions such as an interlock clear no other way)."""
    p, a = await _page_alarm(request, Perm.RESOLVE_ALARMS, alarm_id)
    note = str((await request.form()).get("note", ""))[:500]
    request.app.state.alarm_engine.resolve(alarm_id, p.username, "web", note)
    return RedirectResponse(f"/alarms?site={quote(a.site)}", status_code=303)


# ---------------------------------------------------------------------------------------- estate
@router.get("/estate")
async def estate_page(request: Request, site: str | None = None, cmd: str | None = None) -> HTMLResponse:
    p = await page_user(request, Perm.VIEW_ESTATE)
    site_id, sites = pick_site(request, p, site)
    last = None
    if cmd and request.app.state.commander is not None:
        v = request.app.state.commander.get(cmd)
        last = v if v and p.sees(v.site) else None
    return render(request, "estate.html", site=site_id, sites=sites, last_cmd=last,
                  live=f"/frag/estate?site={quote(site_id)}", **_estate_ctx(request, p, site_id))


@router.get("/frag/estate")
async def estate_frag(request: Request, site: str | None = None) -> HTMLResponse:
    p = await page_user(request, Perm.VIEW_ESTATE)
    site_id, _ = pick_site(request, p, site)
    return render(request, "_estate.html", site=site_id, **_estate_ctx(request, p, site_id))


def _sessions(request: Request, site: str, lang: str) -> dict[tuple[str, int], dict[str, Any]]:
    """Each port's current (or last) charge session: its curve and a line saying what it was."""
    tracker = getattr(request.app.state, "sessions", None)
    if tracker is None:
        return {}
    out = {}
    for v in tracker.view(site):
        said = describe({"reason": v.flagged}, lang=lang) if v.flagged else ""
        title = f"{v.device} #{v.port}: {v.energy_kwh:.2f} kWh, max {v.peak_c:.1f} °C" + (f" — {said}" if said else "")
        out[(v.device, v.port)] = {"v": v, "svg": session_curve.svg(v.curve, title, bool(v.flagged)), "said": said}
    return out


def _estate_ctx(request: Request, p: Principal, site: str) -> dict[str, Any]:
    src = source(request)
    devices = src.devices(site)
    cmd = request.app.state.commander
    return {
        "sessions": _sessions(request, site, lang_of(request)),
        "gateways": src.gateways(site),
        "ports": ports_of(request, site),
        "chargers": [d for d in devices if estate.family_of(d) == "charger"],
        "sprinklers": [d for d in devices if estate.family_of(d) == "sprinkler"],
        "parking": parking_of(request, site),
        "commands": cmd.recent([site], 10) if (cmd is not None and p.can(Perm.COMMAND)) else [],
    }


@router.post("/commands")
async def command_form(request: Request) -> Response:
    p = await page_user(request, Perm.COMMAND)
    form = await request.form()
    site, gateway, device = (str(form.get(k, "")) for k in ("site", "gateway", "device"))
    command = str(form.get("command", ""))
    index = int(str(form["index"])) if str(form.get("index", "")).isdigit() else None
    raw = str(form.get("value", ""))
    value: bool | None = {"true": True, "false": False}.get(raw)
    site_id, _ = pick_site(request, p, site)
    cmd = request.app.state.commander
    if cmd is None:
        raise HTTPException(503, "commands are not configured (no MQTT broker)")
    dev = next((d for d in source(request).devices(site_id) if d.id == device), None)
    try:
        v = cmd.send(dev, site_id, gateway, command, index, value, p.username)
    except CommandRefused as e:
        raise HTTPException(e.status, str(e)) from None
    return RedirectResponse(f"/estate?site={quote(site_id)}&cmd={v.id}", status_code=303)


# --------------------------------------------------------------------------------------- parking
def _parking_reader(request: Request) -> Principal | None:
    p = current(request)
    if p is None and not request.app.state.settings.public_parking:
        raise LoginRequired()
    return p


@router.get("/parking")
def parking_index(request: Request) -> Response:
    p = _parking_reader(request)
    sites = [s for s in source(request).sites() if p is None or p.sees(s.id)]
    if len(sites) == 1:
        return RedirectResponse(f"/parking/{quote(sites[0].id)}", status_code=303)
    return render(request, "parking_index.html", sites=sites)


@router.get("/parking/{site}")
def parking_page(site: str, request: Request) -> HTMLResponse:
    p = _parking_reader(request)
    site_id, sites = pick_site(request, p, site)
    rec = next(s for s in sites if s.id == site_id)
    return render(request, "parking.html", site=site_id, site_rec=rec, parking=parking_of(request, site_id),
                  live=f"/frag/parking/{quote(site_id)}")


@router.get("/frag/parking/{site}")
def parking_frag(site: str, request: Request) -> HTMLResponse:
    p = _parking_reader(request)
    site_id, _ = pick_site(request, p, site)
    return render(request, "_parking.html", site=site_id, parking=parking_of(request, site_id))


# ---------------------------------------------------------------------------------------- health
@router.get("/health")
async def health_page(request: Request, site: str | None = None) -> HTMLResponse:
    p = await page_user(request, Perm.VIEW_HEALTH)
    site_id, sites = pick_site(request, p, site)
    return render(request, "health.html", site=site_id, sites=sites, live=f"/frag/health?site={quote(site_id)}",
                  rows=health_of(request, site_id), gateways=source(request).gateways(site_id),
                  storage=storage_of(request), configs=_configs(request, p, site_id))


@router.get("/frag/health")
async def health_frag(request: Request, site: str | None = None) -> HTMLResponse:
    p = await page_user(request, Perm.VIEW_HEALTH)
    site_id, _ = pick_site(request, p, site)
    return render(request, "_health.html", site=site_id, rows=health_of(request, site_id),
                  gateways=source(request).gateways(site_id), storage=storage_of(request),
                  configs=_configs(request, p, site_id))


def storage_of(request: Request) -> StorageView | None:
    status = getattr(request.app.state, "storage", None)
    return storage_view(status()) if status is not None else None


def _configs(request: Request, p: Principal, site: str) -> list[Any]:
    """Each gateway's running config and agent version, and the drift from its desired config."""
    svc = getattr(request.app.state, "configs", None)
    if svc is None or not p.can(Perm.CONFIGURE):
        return []
    return [svc.view(site, g.id) for g in source(request).gateways(site)]


# ---------------------------------------------------------------------------------------- enrol
@router.get("/enrol")
async def enrol_page(request: Request, site: str | None = None) -> HTMLResponse:
    p = await page_user(request, Perm.ENROL)
    site_id, sites = pick_site(request, p, site)
    from device_profiles.loader import catalog

    return render(request, "enrol.html", site=site_id, sites=sites, profiles=sorted(catalog().values(),
                                                                                     key=lambda x: x.id))


@router.post("/enrol")
async def enrol_submit(request: Request) -> HTMLResponse:
    import base64

    from cloud.api.enrolment import EnrolConflict, enrol_and_store
    from cloud.enrol import EnrolError, parse_devices
    from device_profiles.loader import catalog

    p = await page_user(request, Perm.ENROL)
    form = await request.form()
    site_id, sites = pick_site(request, p, str(form.get("site", "")))
    gateway = str(form.get("gateway", "")).strip()
    name = str(form.get("name", ""))[:128]
    devices_text = str(form.get("devices", ""))
    try:
        e = enrol_and_store(request.app, site_id, gateway, name, parse_devices(devices_text), p.username)
    except (EnrolError, EnrolConflict) as ex:
        return render(request, "enrol.html", status=422, site=site_id, sites=sites, error=str(ex),
                      gateway=gateway, name=name, devices_text=devices_text,
                      profiles=sorted(catalog().values(), key=lambda x: x.id))
    data_url = "data:application/x-yaml;base64," + base64.b64encode(e.edge_config.encode()).decode()
    resp = render(request, "enrolled.html", site=site_id, e=e, data_url=data_url)
    resp.headers["Cache-Control"] = "no-store"
    return resp
