"""Tables of the web part: users, their sites, API tokens, sessions (SQLAlchemy 2).

Same kind of DB URL as the rest of the cloud (SQLite by default, PostgreSQL at scale). Secrets are
never stored: passwords as argon2 hashes, API tokens and session ids as SHA-256 digests (they are
long random values, so a fast hash is enough and lookups stay indexed).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String, UniqueConstraint, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker


def utcnow() -> datetime:
    return datetime.now(UTC)


class WebBase(DeclarativeBase):
    """Metadata of the web part's own tables (kept apart from ingest's registry tables)."""


class User(WebBase):
    __tablename__ = "web_users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    display_name: Mapped[str] = mapped_column(String(128), default="")
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16))
    active: Mapped[bool] = mapped_column(default=True)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    sites: Mapped[list[UserSite]] = relationship(back_populates="user", cascade="all, delete-orphan",
                                                 lazy="selectin")


class UserSite(WebBase):
    """A user belongs to one or more sites ("*" = every site, for operators)."""

    __tablename__ = "web_user_sites"
    __table_args__ = (UniqueConstraint("user_id", "site"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("web_users.id", ondelete="CASCADE"), index=True)
    site: Mapped[str] = mapped_column(String(64))
    user: Mapped[User] = relationship(back_populates="sites")


class ApiToken(WebBase):
    __tablename__ = "web_api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("web_users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    digest: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_used: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class WebSession(WebBase):
    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("web_users.id", ondelete="CASCADE"), index=True)
    csrf: Mapped[str] = mapped_column(String(64))
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class CommandRecord(WebBase):
    """One remote command: who asked, what was sent, and what the gateway answered."""

    __tablename__ = "web_commands"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    site: Mapped[str] = mapped_column(String(64), index=True)
    gateway: Mapped[str] = mapped_column(String(64))
    device: Mapped[str] = mapped_column(String(64))
    command: Mapped[str] = mapped_column(String(48))
    index: Mapped[int | None] = mapped_column(Integer, nullable=True)
    value: Mapped[int | None] = mapped_column(Integer, nullable=True)
    by: Mapped[str] = mapped_column(String(64))
    requested: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # sent | done | refused | failed | expired | timeout
    status: Mapped[str] = mapped_column(String(16), default="sent")
    detail: Mapped[str] = mapped_column(String(512), default="")
    answered: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class EnrolledGateway(WebBase):
    """A gateway created by an installer: its MQTT user name and password-file line (hash only)."""

    __tablename__ = "web_enrolled_gateways"
    __table_args__ = (UniqueConstraint("site", "gateway"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site: Mapped[str] = mapped_column(String(64), index=True)
    gateway: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(128), default="")
    mqtt_user: Mapped[str] = mapped_column(String(140), unique=True)
    passwd_line: Mapped[str] = mapped_column(String(512))
    devices: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    created_by: Mapped[str] = mapped_column(String(64))
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class NatsGatewayUser(WebBase):
    """A gateway's account on a NATS cluster: the bcrypt hash of the password enrolment made (NATS
    does not read mosquitto's PBKDF2 lines). Its own table, so databases made before it get it from
    `create_all` (cloud/cluster/natsusers.py renders the nodes' include file from these rows)."""

    __tablename__ = "web_nats_gateway_users"
    __table_args__ = (UniqueConstraint("site", "gateway"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site: Mapped[str] = mapped_column(String(64), index=True)
    gateway: Mapped[str] = mapped_column(String(64))
    bcrypt_hash: Mapped[str] = mapped_column(String(128))
    updated: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets WAL and foreign keys, and may be used from several threads."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(conn: Any, _record: Any) -> None:
            cur = conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            if ":memory:" not in url:
                cur.execute("PRAGMA journal_mode=WAL")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    WebBase.metadata.create_all(engine)
    return sessionmaker(engine, expire_on_commit=False)


class EnergyBaseline(WebBase):
    """The first energy-meter reading of a port seen on a given (UTC+8 local) day: "energy today"
    is the current reading minus this. Meters only count up; a lower reading (meter reset or
    replaced device) restarts the baseline."""

    __tablename__ = "web_energy_baseline"
    __table_args__ = (UniqueConstraint("site", "device", "port", "day"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site: Mapped[str] = mapped_column(String(64))
    device: Mapped[str] = mapped_column(String(64))
    port: Mapped[int] = mapped_column(Integer)
    day: Mapped[str] = mapped_column(String(10))
    kwh: Mapped[float] = mapped_column()
