"""Password hashing with argon2id (argon2-cffi's RFC 9106 low-memory profile) and a minimal policy.

Verification of an unknown user still runs one argon2 verify against a dummy hash, so response time
does not reveal which user names exist.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_hasher = PasswordHasher()
_DUMMY = _hasher.hash("not-a-real-password-just-for-timing")
MIN_LENGTH = 10


class WeakPassword(ValueError):
    pass


def check_policy(password: str, username: str = "") -> None:
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"password must have at least {MIN_LENGTH} characters")
    if username and password.lower() == username.lower():
        raise WeakPassword("password must differ from the user name")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(stored_hash or _DUMMY, password) and stored_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    return _hasher.check_needs_rehash(stored_hash)
