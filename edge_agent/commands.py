"""Downlink commands: validate an incoming `cmd` message against the wire contract, the device list
and the device's profile. Pure: returns either a refusal with its reason or the exact write to make.
Anything the profile does not declare is refused, with the list of what it does declare."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from device_profiles import wire
from device_profiles.model import Profile
from device_profiles.points import CommandError, ResolvedCommand, resolve_command


@dataclass(frozen=True, slots=True)
class Prepared:
    device: str | None
    cmd_id: str | None
    command: wire.Command | None
    write: ResolvedCommand | None
    refusal: str | None
    status: str = "refused"


def prepare(
    topic: str, payload: bytes, site: str, gateway: str, profiles: dict[str, Profile], now: datetime
) -> Prepared:
    try:
        t = wire.parse_topic(topic)
    except wire.WireError as e:
        return Prepared(None, None, None, None, str(e))
    if t.site != site or t.gateway != gateway or t.kind is not wire.Kind.CMD or t.device is None:
        return Prepared(None, None, None, None, f"not a command for {site}/{gateway}: {topic}")
    try:
        cmd: wire.Command = wire.decode(wire.Kind.CMD, payload)
    except wire.WireError as e:
        return Prepared(t.device, _id_of(payload), None, None, f"malformed command: {e}")
    prof = profiles.get(t.device)
    if prof is None:
        return Prepared(t.device, cmd.id, cmd, None, f"no device {t.device!r} on gateway {gateway}")
    if cmd.expires is not None and cmd.expires < now:
        return Prepared(t.device, cmd.id, cmd, None, f"expired at {cmd.expires.isoformat()}", status="expired")
    try:
        w = resolve_command(prof, cmd.command, cmd.index, cmd.value)
    except CommandError as e:
        return Prepared(t.device, cmd.id, cmd, None, str(e))
    return Prepared(t.device, cmd.id, cmd, w, None, status="ok")


def _id_of(payload: bytes) -> str | None:
    """Best effort: answer even a malformed command under its id, if it has a usable one."""
    import json

    try:
        v = json.loads(payload).get("id")
    except (ValueError, AttributeError):
        return None
    return v if isinstance(v, str) and 8 <= len(v) <= 64 else None
