"""HMAC-signed, time-stamped strings for cookies and links.

The session cookie carries an opaque random id (the session lives in the database, so logout and
password changes end it); signing it means a forged or truncated cookie is refused before any
database lookup. `purpose` separates keys so a value signed for one use cannot be replayed as another.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time


class BadSignature(ValueError):
    """Tampered, truncated, for another purpose, or expired."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, purpose: str, body: str) -> str:
    key = hmac.new(secret, purpose.encode(), hashlib.sha256).digest()
    return _b64(hmac.new(key, body.encode(), hashlib.sha256).digest())


def sign(secret: bytes, purpose: str, value: str, now: float | None = None) -> str:
    ts = int(time.time() if now is None else now)
    body = f"{_b64(value.encode())}.{ts:x}"
    return f"{body}.{_mac(secret, purpose, body)}"


def unsign(secret: bytes, purpose: str, signed: str, max_age_s: float, now: float | None = None) -> str:
    try:
        value_b64, ts_hex, mac = signed.split(".")
        body = f"{value_b64}.{ts_hex}"
        if not hmac.compare_digest(mac.encode(), _mac(secret, purpose, body).encode()):
            raise BadSignature("signature does not match")
        ts = int(ts_hex, 16)
        value = _unb64(value_b64).decode()
    except BadSignature:
        raise
    except (ValueError, UnicodeDecodeError) as e:
        raise BadSignature(f"malformed: {e}") from None
    t = time.time() if now is None else now
    if t - ts > max_age_s:
        raise BadSignature("expired")
    return value
