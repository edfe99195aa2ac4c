"""The cloud's own broker account, kept apart from the broker's address.

A password inside `--broker mqtt://user:secret@host` is printed by every log line that names the
broker, shows in `ps`, and used to be copied into every edge config enrolment hands out — a
gateway could then command every other gateway. So the address is only an address, and the
account comes from the environment (docs/operations.md, "Broker account"):

    SHELTERWATCH_BROKER_USER            the cloud's user name (or `--broker-user`)
    SHELTERWATCH_BROKER_PASSWORD_FILE   a file holding its password (first line), or
    SHELTERWATCH_BROKER_PASSWORD        the password itself

`BrokerAccount` never shows its password in a repr; `redact` hides any password left in a URL.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


class BrokerAccountError(ValueError):
    """The broker address or account cannot be used as given (says what to do instead)."""


@dataclass(frozen=True, slots=True)
class BrokerAccount:
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def __bool__(self) -> bool:
        return bool(self.username)


def from_env(username: str | None = None, env: Mapping[str, str] | None = None) -> BrokerAccount:
    """The account the environment names (`username` overrides SHELTERWATCH_BROKER_USER)."""
    env = os.environ if env is None else env
    user = username or env.get("SHELTERWATCH_BROKER_USER") or None
    password = env.get("SHELTERWATCH_BROKER_PASSWORD") or None
    path = env.get("SHELTERWATCH_BROKER_PASSWORD_FILE")
    if path:
        try:
            lines = Path(path).read_text().splitlines()
        except OSError as e:
            raise BrokerAccountError(f"SHELTERWATCH_BROKER_PASSWORD_FILE: cannot read {path}: {e.strerror}") from None
        password = lines[0].strip() if lines else ""
    if password and not user:
        raise BrokerAccountError("a broker password is set but no user: set SHELTERWATCH_BROKER_USER")
    return BrokerAccount(user, password)


def check_address(url: str) -> str:
    """`url` if it holds no credentials; else BrokerAccountError saying where they belong."""
    u = urllib.parse.urlsplit(url if "://" in url else f"mqtt://{url}")
    if u.username is not None or u.password is not None:
        raise BrokerAccountError(
            f"--broker {redact(url)}: give the broker's address only; the account comes from "
            "SHELTERWATCH_BROKER_USER and SHELTERWATCH_BROKER_PASSWORD_FILE (or --broker-user)"
        )
    return url


def redact(url: str) -> str:
    """The URL with any password replaced by `***` (for logs and pages)."""
    u = urllib.parse.urlsplit(url if "://" in url else f"mqtt://{url}")
    if u.password is None:
        return url
    host = u.hostname or ""
    netloc = f"{u.username}:***@{host}" + (f":{u.port}" if u.port else "")
    return urllib.parse.urlunsplit((u.scheme, netloc, u.path, u.query, u.fragment))


def without_credentials(url: str) -> str:
    """The URL's address alone (what a gateway may be told about the broker)."""
    u = urllib.parse.urlsplit(url if "://" in url else f"mqtt://{url}")
    host = u.hostname or ""
    netloc = host + (f":{u.port}" if u.port else "")
    return urllib.parse.urlunsplit((u.scheme, netloc, u.path, u.query, u.fragment))
