"""Who is asking, and may they? FastAPI dependencies shared by the JSON API and the pages.

A request is authenticated by `Authorization: Bearer swt_…` (API tokens: scripts, phones) or by
the session cookie (pages). Cookie-authenticated requests that change something must carry the
session's CSRF token (form field `csrf` or header `X-CSRF-Token`); token requests need none,
because a browser never attaches a bearer token by itself.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from fastapi import HTTPException, Request

from cloud.auth.roles import Perm, Principal
from cloud.auth.service import AuthService

COOKIE = "sw_session"
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


def auth_service(request: Request) -> AuthService:
    svc: AuthService = request.app.state.auth
    return svc


def current(request: Request) -> Principal | None:
    """The principal of this request, or None for anonymous (cached on request.state)."""
    if hasattr(request.state, "principal"):
        cached: Principal | None = request.state.principal
        return cached
    svc = auth_service(request)
    principal: Principal | None = None
    request.state.csrf = None
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        principal = svc.token_principal(header[7:].strip())
    elif cookie := request.cookies.get(COOKIE):
        info = svc.session(cookie)
        if info is not None:
            principal, request.state.csrf = info.principal, info.csrf
    request.state.principal = principal
    return principal


async def check_csrf(request: Request, principal: Principal) -> None:
    if request.method not in UNSAFE or principal.via_token:
        return
    expected = getattr(request.state, "csrf", None)
    sent = request.headers.get("x-csrf-token")
    if sent is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()
        v = form.get("csrf")
        sent = v if isinstance(v, str) else None
    if not expected or not sent or not hmac.compare_digest(expected.encode(), sent.encode()):
        raise HTTPException(403, "missing or wrong CSRF token")


def require(perm: Perm) -> Callable[[Request], Awaitable[Principal]]:
    """Dependency: a logged-in principal whose role grants `perm` (401 anonymous, 403 wrong role)."""

    async def dep(request: Request) -> Principal:
        p = current(request)
        if p is None:
            raise HTTPException(401, "log in or send an API token", headers={"WWW-Authenticate": "Bearer"})
        if not p.can(perm):
            raise HTTPException(403, f"role {p.role.value} may not {perm.value}")
        await check_csrf(request, p)
        return p

    return dep


def site_of(principal: Principal | None, site: str, known: list[str]) -> str:
    """404 for a site that does not exist or that this user does not belong to (no existence leak)."""
    if site not in known or (principal is not None and not principal.sees(site)):
        raise HTTPException(404, f"no site {site!r}")
    return site
