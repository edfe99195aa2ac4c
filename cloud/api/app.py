"""A tiny app serving only the signed acknowledge links, for tests (`build_app` builds the real one)."""

from __future__ import annotations

from fastapi import FastAPI

from cloud.alarms.engine import AlarmEngine
from cloud.api.alarms import router
from cloud.notify.links import AckSigner


def create_app(engine: AlarmEngine, signer: AckSigner) -> FastAPI:
    app = FastAPI(title="shelterwatch alarms")
    app.state.alarm_engine = engine
    app.state.ack_signer = signer
    app.include_router(router)
    return app
