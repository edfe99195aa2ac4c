"""SQLAlchemy models of the registry. JSON columns keep labels and last values schema-free."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Boolean, Float, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class SiteRow(Base):
    __tablename__ = "sites"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    name_zh: Mapped[str] = mapped_column(String(200), default="")
    auto_enrol: Mapped[bool] = mapped_column(Boolean, default=False)
    extra: Mapped[dict[str, Any]] = mapped_column(
        JSON, default=dict
    )  # people, escalation, … (alarm engine's)


class GatewayRow(Base):
    __tablename__ = "gateways"
    site_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    location: Mapped[str] = mapped_column(String(200), default="")
    labels: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    enrolled_by: Mapped[str] = mapped_column(String(16), default="site-file")
    online: Mapped[bool | None] = mapped_column(Boolean, nullable=True, default=None)
    status_ts: Mapped[float | None] = mapped_column(Float, nullable=True)
    status_reason: Mapped[str] = mapped_column(String(200), default="")
    agent: Mapped[str] = mapped_column(String(100), default="")


class DeviceRow(Base):
    __tablename__ = "devices"
    site_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    gateway_id: Mapped[str] = mapped_column(String(64))
    profile: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200), default="")
    labels: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    instance_labels: Mapped[dict[str, dict[str, str]]] = mapped_column(JSON, default=dict)
    enrolled_by: Mapped[str] = mapped_column(String(16), default="site-file")
    last_values: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    last_ts: Mapped[float | None] = mapped_column(Float, nullable=True)


class SeqStateRow(Base):
    """The replay window of one device, so a restarted ingester still recognises replays."""

    __tablename__ = "seq_state"
    site_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class GatewayClockRow(Base):
    """What the cloud knows of a gateway's clock (cloud/ingest/timepolicy.py), for the health page.
    A table of its own, so existing databases gain it without a migration."""

    __tablename__ = "gateway_clock"
    site_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    gateway_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    skew_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    source: Mapped[str] = mapped_column(String(16), default="")
    measured: Mapped[float] = mapped_column(Float, default=0.0)
    rebased: Mapped[int] = mapped_column(Integer, default=0)
    last_rebased: Mapped[float | None] = mapped_column(Float, nullable=True)
