"""Signed, expiring one-tap acknowledge links.

token = base64url(json {a: alarm id, p: person, e: expiry epoch}) "." base64url(HMAC-SHA256).
Stateless (no table of issued links), tamper-evident (any changed byte breaks the MAC, compared in
constant time) and expiring (a link forwarded next week acknowledges nothing).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass


class LinkError(ValueError):
    """`reason`: malformed / bad_signature / expired."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class AckClaim:
    alarm_id: int
    person: str
    expires: float


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def _unb64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class AckSigner:
    def __init__(self, secret: bytes | str) -> None:
        key = secret.encode() if isinstance(secret, str) else secret
        if len(key) < 16:
            raise ValueError("the ack link secret must be at least 16 bytes")
        self._key = key

    def _mac(self, body: str) -> str:
        return _b64(hmac.new(self._key, b"ack1." + body.encode(), hashlib.sha256).digest())

    def sign(self, alarm_id: int, person: str, expires: float) -> str:
        body = _b64(
            json.dumps({"a": alarm_id, "p": person, "e": round(expires)}, separators=(",", ":")).encode()
        )
        return f"{body}.{self._mac(body)}"

    def verify(self, token: str, now: float) -> AckClaim:
        body, sep, mac = token.partition(".")
        if not sep or not body or not mac:
            raise LinkError("malformed")
        if not mac.isascii() or not hmac.compare_digest(self._mac(body), mac):  # compare_digest refuses non-ASCII
            raise LinkError("bad_signature")
        try:
            d = json.loads(_unb64(body))
            claim = AckClaim(int(d["a"]), str(d["p"]), float(d["e"]))
        except (ValueError, KeyError, TypeError):
            raise LinkError("malformed") from None
        if now > claim.expires:
            raise LinkError("expired")
        return claim
