"""Settings of the web/API process. Everything has a safe default except the secret, which must
come from the environment or a file in production (the demo makes a random one per run)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from pydantic import BaseModel, Field


class WebSettings(BaseModel):
    db_url: str = Field(default="sqlite:///shelterwatch-state.db", description="web tables (users, commands…)")
    secret: str = Field(default="", description="signs session cookies; >= 32 random characters")
    mqtt_url: str | None = Field(default=None, description="broker for commands (mqtt://host:port)")
    mqtt_username: str | None = None
    mqtt_password: str | None = None
    gateway_broker_url: str = Field(default="mqtt://127.0.0.1:1883",
                                    description="broker address written into enrolled gateways' configs")
    public_parking: bool = Field(default=True, description="parking availability readable without login")
    command_timeout_s: float = Field(default=8.0, gt=0, le=120)
    session_hours: float = Field(default=12.0, gt=0, le=24 * 30)
    cookie_secure: bool = Field(default=False, description="set behind HTTPS")
    login_max_failures: int = Field(default=5, ge=1)
    login_window_s: float = Field(default=300.0, gt=0)
    poll_ms: int = Field(default=2000, ge=200, le=60000, description="how often live pages refresh")

    @classmethod
    def from_env(cls) -> WebSettings:
        secret = os.environ.get("SHELTERWATCH_SECRET", "")
        if not secret and (f := os.environ.get("SHELTERWATCH_SECRET_FILE")):
            secret = Path(f).read_text().strip()
        return cls(db_url=os.environ.get("SHELTERWATCH_DB", cls.model_fields["db_url"].default),
                   secret=secret, mqtt_url=os.environ.get("SHELTERWATCH_MQTT") or None)

    def secret_bytes(self) -> bytes:
        if len(self.secret) < 32:
            raise ValueError("set SHELTERWATCH_SECRET (or SHELTERWATCH_SECRET_FILE) to at least 32 random "
                             f"characters, e.g. {secrets.token_urlsafe(32)}")
        return self.secret.encode()
