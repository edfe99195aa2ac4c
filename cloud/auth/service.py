"""The auth service: users, tokens and sessions in the database. The web layer calls only this.

Session cookie = HMAC-signed random id; the database row holds the user, the CSRF token and the
expiry, so logging out (or deactivating a user) ends the session at once.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from cloud.auth import passwords, signing
from cloud.auth.models import ApiToken, User, UserSite, WebSession, utcnow
from cloud.auth.roles import ALL_SITES, Principal, Role
from device_profiles.wire import ID_RE

TOKEN_PREFIX = "swt_"
USERNAME_RE = r"^[a-z0-9][a-z0-9._@-]{1,63}$"
SESSION_PURPOSE = "session"


class AuthError(ValueError):
    """A request to the auth service that cannot be honoured (bad name, weak password, unknown user)."""


def _digest(secret_value: str) -> str:
    return hashlib.sha256(secret_value.encode()).hexdigest()


def principal_of(user: User, via_token: bool = False) -> Principal:
    return Principal(user_id=user.id, username=user.username, role=Role(user.role),
                     sites=frozenset(s.site for s in user.sites), display_name=user.display_name,
                     via_token=via_token)


@dataclass(frozen=True, slots=True)
class SessionInfo:
    principal: Principal
    csrf: str


class AuthService:
    def __init__(self, db: sessionmaker[Session], secret: bytes, session_hours: float = 12.0) -> None:
        if len(secret) < 16:
            raise ValueError("the session secret must be at least 16 bytes")
        self.db = db
        self.secret = secret
        self.session_ttl = timedelta(hours=session_hours)

    # ----------------------------------------------------------------------------------- users
    def add_user(self, username: str, password: str, role: Role | str, sites: list[str],
                 display_name: str = "", check_strength: bool = True) -> Principal:
        import re

        username = username.strip().lower()
        if not re.match(USERNAME_RE, username):
            raise AuthError(f"user name {username!r} must match {USERNAME_RE}")
        try:
            role_ = Role(role)
        except ValueError:
            raise AuthError(f"unknown role {role!r}; roles: {', '.join(r.value for r in Role)}") from None
        if not sites:
            raise AuthError("a user needs at least one site (or '*' for every site)")
        for site in sites:
            if site != ALL_SITES and not ID_RE.match(site):
                raise AuthError(f"site id {site!r} must match {ID_RE.pattern}")
        if check_strength:
            try:
                passwords.check_policy(password, username)
            except passwords.WeakPassword as e:
                raise AuthError(str(e)) from None
        with self.db.begin() as s:
            if s.scalar(select(User).where(User.username == username)) is not None:
                raise AuthError(f"user {username!r} already exists")
            user = User(username=username, display_name=display_name or username,
                        password_hash=passwords.hash_password(password), role=role_.value,
                        sites=[UserSite(site=x) for x in sorted(set(sites))])
            s.add(user)
            s.flush()
            return principal_of(user)

    def set_password(self, username: str, password: str) -> None:
        passwords.check_policy(password, username)
        with self.db.begin() as s:
            user = s.scalar(select(User).where(User.username == username))
            if user is None:
                raise AuthError(f"no user {username!r}")
            user.password_hash = passwords.hash_password(password)
            s.execute(delete(WebSession).where(WebSession.user_id == user.id))

    def list_users(self) -> list[Principal]:
        with self.db() as s:
            return [principal_of(u) for u in s.scalars(select(User).order_by(User.username))]

    def authenticate(self, username: str, password: str) -> Principal | None:
        """The user if the password matches and the account is active; None otherwise (same time)."""
        username = username.strip().lower()
        with self.db.begin() as s:
            user = s.scalar(select(User).where(User.username == username))
            ok = passwords.verify_password(user.password_hash if user else None, password)
            if not ok or user is None or not user.active:
                return None
            if passwords.needs_rehash(user.password_hash):
                user.password_hash = passwords.hash_password(password)
            return principal_of(user)

    # ---------------------------------------------------------------------------------- tokens
    def create_token(self, username: str, name: str) -> str:
        """A new API token for `username`; the plain value is returned once and never stored."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self.db.begin() as s:
            user = s.scalar(select(User).where(User.username == username.strip().lower()))
            if user is None:
                raise AuthError(f"no user {username!r}")
            s.add(ApiToken(user_id=user.id, name=name, digest=_digest(token)))
        return token

    def token_principal(self, token: str) -> Principal | None:
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        with self.db() as s:
            row = s.scalar(select(ApiToken).where(ApiToken.digest == _digest(token)))
            if row is None:
                return None
            user = s.get(User, row.user_id)
            if user is None or not user.active:
                return None
            # `last_used` is for audits, to the minute: no write transaction on every API call.
            now = utcnow()
            if row.last_used is None or now - _aware(row.last_used) > timedelta(minutes=1):
                row.last_used = now
                s.commit()
            return principal_of(user, via_token=True)

    # -------------------------------------------------------------------------------- sessions
    def open_session(self, principal: Principal) -> tuple[str, str]:
        """(signed cookie value, CSRF token) for a user who just logged in."""
        sid = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(24)
        with self.db.begin() as s:
            s.execute(delete(WebSession).where(WebSession.expires < utcnow()))
            s.add(WebSession(digest=_digest(sid), user_id=principal.user_id, csrf=csrf,
                             expires=utcnow() + self.session_ttl))
        return signing.sign(self.secret, SESSION_PURPOSE, sid), csrf

    def session(self, cookie: str) -> SessionInfo | None:
        try:
            sid = signing.unsign(self.secret, SESSION_PURPOSE, cookie, self.session_ttl.total_seconds())
        except signing.BadSignature:
            return None
        with self.db() as s:
            row = s.scalar(select(WebSession).where(WebSession.digest == _digest(sid)))
            if row is None or _aware(row.expires) < utcnow():
                return None
            user = s.get(User, row.user_id)
            if user is None or not user.active:
                return None
            return SessionInfo(principal_of(user), row.csrf)

    def close_session(self, cookie: str) -> None:
        try:
            sid = signing.unsign(self.secret, SESSION_PURPOSE, cookie, self.session_ttl.total_seconds())
        except signing.BadSignature:
            return
        with self.db.begin() as s:
            s.execute(delete(WebSession).where(WebSession.digest == _digest(sid)))


def _aware(t: datetime) -> datetime:
    """SQLite gives naive datetimes back; they were stored as UTC."""

    return t if t.tzinfo else t.replace(tzinfo=UTC)
