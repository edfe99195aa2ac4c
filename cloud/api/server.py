"""The web/API application: `build_app(settings, …)` wires auth, the registry view, the alarm
engine, commands and the pages into one FastAPI app (others may mount /metrics on it).

Parts that live elsewhere are passed in, so tests and the demo decide what runs: `estate` reads the
ingester's registry, `alarm_engine` is cloud.alarms' engine (its signed one-tap ack links are mounted
as they are: the signature is their authorisation), `commander` sends commands over MQTT.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from cloud.api import pages
from cloud.api.alarms import router as ack_links_router
from cloud.api.energy import EnergyToday
from cloud.api.estate import EstateSource
from cloud.api.pages_config import router as config_pages
from cloud.api.routes_alarms import router as alarms_api_router
from cloud.api.routes_api import router as api_router
from cloud.api.routes_config import router as config_api
from cloud.api.settings import WebSettings
from cloud.auth.models import make_engine, make_sessionmaker
from cloud.auth.ratelimit import LoginLimiter
from cloud.auth.service import AuthService

STATIC = Path(__file__).parent / "static"
ACK_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,2000}\.[A-Za-z0-9_-]{1,200}$")


def build_app(settings: WebSettings, estate: EstateSource, alarm_engine: Any = None, ack_signer: Any = None,
              commander: Any = None, db: Any = None, storage: Any = None, configs: Any = None,
              sessions: Any = None) -> FastAPI:
    app = FastAPI(title="shelterwatch", version="1",
                  description="E-bike shelters, chargers, sprinklers and parking of residential estates. "
                              "Authenticate with `Authorization: Bearer <token>` (`shelterwatch cloud user "
                              "token`) or the pages' session cookie.")
    db = db or make_sessionmaker(make_engine(settings.db_url))
    app.state.settings = settings
    app.state.db = db
    app.state.auth = AuthService(db, settings.secret_bytes(), settings.session_hours)
    app.state.limiter = SimpleNamespace(
        user=LoginLimiter(settings.login_max_failures, settings.login_window_s),
        ip=LoginLimiter(settings.login_max_failures * 4, settings.login_window_s))
    app.state.estate = estate
    app.state.alarm_engine = alarm_engine
    app.state.ack_signer = ack_signer
    app.state.commander = commander
    app.state.storage = storage  # () -> the ingester's storage status (health page), or None
    app.state.configs = configs  # cloud.remote_config.service.ConfigService (None: remote config off)
    app.state.energy = EnergyToday(db)
    app.state.sessions = sessions  # cloud.history.charge_session.ChargeSessions: the session curves

    app.include_router(api_router)
    app.include_router(alarms_api_router)
    app.include_router(config_api)
    app.include_router(pages.router)
    app.include_router(config_pages)
    if alarm_engine is not None and ack_signer is not None:
        app.include_router(ack_links_router, tags=["ack-links"])  # the signature is their authorisation
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(pages.LoginRequired)
    async def _login(request: Request, _exc: Exception) -> Response:
        nxt = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(nxt)}", status_code=303)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if _is_api(request):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
        t = pages.i18n.translator(pages.lang_of(request))
        msg = t("forbidden") if exc.status_code == 403 else str(exc.detail)
        return pages.render(request, "error.html", status=exc.status_code, code=exc.status_code, message=msg)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return JSONResponse({"detail": _jsonable(exc.errors())}, status_code=422)

    @app.middleware("http")
    async def _headers(request: Request, call_next: Any) -> Response:
        path = request.url.path
        if path.startswith("/ack/") and not ACK_TOKEN.match(path[5:]):
            # A signed link is url-safe base64: refuse anything else before routing (cheap, and a
            # clear bilingual answer for a mangled link pasted from a chat app).
            return JSONResponse({"detail": "Invalid link. 链接无效。"}, status_code=403)
        resp: Response = await call_next(request)
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("X-Frame-Options", "DENY")
        resp.headers.setdefault("Referrer-Policy", "same-origin")
        return resp

    return app


def _is_api(request: Request) -> bool:
    return request.url.path.startswith(("/api/", "/openapi", "/docs"))


def _jsonable(errors: Any) -> Any:
    from fastapi.encoders import jsonable_encoder

    return jsonable_encoder(errors, custom_encoder={bytes: lambda b: b.decode("utf-8", "replace"),
                                                    Exception: str})
