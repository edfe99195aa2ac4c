"""Pages of remote configuration: drift per gateway, edit with located errors, history with who,
diffs, roll back, roll out. Installers and managers only (`Perm.CONFIGURE`); every form carries
the session's CSRF token, as everywhere else."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from cloud.api.pages import page_user, pick_site, render
from cloud.api.routes_api import source
from cloud.api.routes_config import service
from cloud.auth.roles import Perm
from cloud.remote_config.service import ConfigRejected

router = APIRouter(include_in_schema=False)


def _gateway(request: Request, site: str, gateway: str) -> None:
    if gateway not in {g.id for g in source(request).gateways(site)}:
        raise HTTPException(404, f"no gateway {gateway!r}")


def _site_ctx(request: Request, site: str) -> dict[str, Any]:
    svc = service(request)
    gws = source(request).gateways(site)
    return {"configs": [(g, svc.view(site, g.id)) for g in gws], "rollouts": svc.store.rollouts(site, limit=10)}


@router.get("/config")
async def config_site(request: Request, site: str | None = None) -> HTMLResponse:
    p = await page_user(request, Perm.CONFIGURE)
    site_id, sites = pick_site(request, p, site)
    return render(request, "config.html", site=site_id, sites=sites, live=f"/frag/config?site={quote(site_id)}",
                  **_site_ctx(request, site_id))


@router.get("/frag/config")
async def config_frag(request: Request, site: str | None = None) -> HTMLResponse:
    p = await page_user(request, Perm.CONFIGURE)
    site_id, _ = pick_site(request, p, site)
    return render(request, "_config.html", site=site_id, **_site_ctx(request, site_id))


def _gw_ctx(request: Request, site: str, gateway: str) -> dict[str, Any]:
    svc = service(request)
    return {"c": svc.view(site, gateway), "versions": svc.store.versions(site, gateway),
            "events": svc.store.events(site, gateway, 50)}


@router.get("/config/{site}/{gateway}")
async def config_gateway(request: Request, site: str, gateway: str, saved: int | None = None) -> HTMLResponse:
    p = await page_user(request, Perm.CONFIGURE)
    site_id, _ = pick_site(request, p, site)
    _gateway(request, site_id, gateway)
    svc = service(request)
    return render(request, "config_gateway.html", site=site_id, gateway=gateway, text=svc.base_text(site_id, gateway),
                  saved=saved, live=f"/frag/config/{quote(site_id)}/{quote(gateway)}",
                  **_gw_ctx(request, site_id, gateway))


@router.get("/frag/config/{site}/{gateway}")
async def config_gateway_frag(request: Request, site: str, gateway: str) -> HTMLResponse:
    p = await page_user(request, Perm.CONFIGURE)
    site_id, _ = pick_site(request, p, site)
    _gateway(request, site_id, gateway)
    return render(request, "_config_gateway.html", site=site_id, gateway=gateway, **_gw_ctx(request, site_id, gateway))


@router.post("/config/{site}/{gateway}")
async def config_save(request: Request, site: str, gateway: str) -> Response:
    p = await page_user(request, Perm.CONFIGURE)
    site_id, _ = pick_site(request, p, site)
    _gateway(request, site_id, gateway)
    form = await request.form()
    text, comment = str(form.get("yaml", "")), str(form.get("comment", ""))[:500]
    try:
        v = service(request).submit(site_id, gateway, text, p.username, comment)
    except ConfigRejected as e:
        return render(request, "config_gateway.html", status=e.status, site=site_id, gateway=gateway, text=text,
                      comment=comment, error=str(e), problems=e.problems, saved=None,
                      live=f"/frag/config/{quote(site_id)}/{quote(gateway)}", **_gw_ctx(request, site_id, gateway))
    return RedirectResponse(f"/config/{quote(site_id)}/{quote(gateway)}?saved={v.version}", status_code=303)


@router.post("/config/{site}/{gateway}/rollback")
async def config_rollback(request: Request, site: str, gateway: str) -> Response:
    p = await page_user(request, Perm.CONFIGURE)
    site_id, _ = pick_site(request, p, site)
    _gateway(request, site_id, gateway)
    form = await request.form()
    raw = str(form.get("version", ""))
    if not raw.isdigit():
        raise HTTPException(422, "which version?")
    try:
        v = service(request).rollback(site_id, gateway, int(raw), p.username)
    except ConfigRejected as e:
        raise HTTPException(e.status, str(e) + "".join(f"; {i}" for i in e.problems)) from None
    return RedirectResponse(f"/config/{quote(site_id)}/{quote(gateway)}?saved={v.version}", status_code=303)


@router.get("/config/{site}/{gateway}/diff")
async def config_diff(request: Request, site: str, gateway: str, a: str, b: str = "desired") -> HTMLResponse:
    p = await page_user(request, Perm.CONFIGURE)
    site_id, _ = pick_site(request, p, site)
    _gateway(request, site_id, gateway)
    try:
        text = service(request).diff(site_id, gateway, a[:12], b[:12])
    except ConfigRejected as e:
        raise HTTPException(e.status, str(e)) from None
    return render(request, "config_diff.html", site=site_id, gateway=gateway, a=a, b=b, lines=text.splitlines())


@router.post("/config/{site}/rollouts")
async def config_rollout(request: Request, site: str) -> Response:
    p = await page_user(request, Perm.CONFIGURE)
    site_id, sites = pick_site(request, p, site)
    form = await request.form()
    gateways = [str(g) for g in form.getlist("gateways")]
    patch, comment = str(form.get("patch", "")), str(form.get("comment", ""))[:500]
    try:
        service(request).start_rollout(site_id, gateways, patch, p.username, comment)
    except ConfigRejected as e:
        return render(request, "config.html", status=e.status, site=site_id, sites=sites, error=str(e),
                      problems=e.problems, patch=patch, comment=comment, chosen=gateways,
                      live=f"/frag/config?site={quote(site_id)}", **_site_ctx(request, site_id))
    return RedirectResponse(f"/config?site={quote(site_id)}", status_code=303)
