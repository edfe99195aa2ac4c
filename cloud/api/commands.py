"""Remote commands: check, record, publish the wire `Command`, wait for its `cmd-result`.

Checks happen before anything is sent: the device must be registered on that site AND on the
gateway named in the request (a gateway must never be asked to act on a device it does not own),
and the command must be declared by the device's profile with fitting arguments
(`device_profiles.points.resolve_command`). Every command is stored with who asked and, when the
gateway answers, its outcome — an answer arriving after the page stopped waiting still lands.

The same connection keeps the latest device `health` message per device for the health page
(the ingester stores those as time series only). The connection is MQTT or, on a NATS cluster,
NATS (cloud/api/command_link.py, chosen by the broker URL).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from cloud.api.command_link import make_link
from cloud.api.estate import DeviceRec
from cloud.auth.models import CommandRecord, utcnow
from cloud.ratelog import RateLimitedLog
from device_profiles import wire
from device_profiles.loader import catalog
from device_profiles.points import CommandError, resolve_command

log = logging.getLogger(__name__)
bad_input = RateLimitedLog(log)  # one line per kind of malformed message a minute, not one each
MAX_HEALTH_ENTRIES = 100_000


class CommandRefused(ValueError):
    """Refused before sending; `status` is the HTTP status the API answers with."""

    def __init__(self, status: int, detail: str) -> None:
        self.status = status
        super().__init__(detail)


# A stored command as the API answers it; also its `response_model` (FastAPI takes a dataclass), so
# there is one definition. No docstring: it would become the schema's description in /openapi.json.
@dataclass(frozen=True, slots=True)
class CommandView:
    id: str
    site: str
    gateway: str
    device: str
    command: str
    index: int | None
    value: int | None
    by: str
    requested: str
    status: str
    detail: str
    answered: str | None


def view(r: CommandRecord) -> CommandView:
    return CommandView(r.id, r.site, r.gateway, r.device, r.command, r.index, r.value, r.by,
                       r.requested.isoformat(), r.status, r.detail, r.answered.isoformat() if r.answered else None)


def check_command(device: DeviceRec | None, site: str, gateway: str, command: str, index: int | None,
                  value: bool | int | None) -> None:
    """Raise CommandRefused unless this command may be sent (pure: no I/O)."""
    if device is None or device.site != site:
        raise CommandRefused(404, "no such device on this site")
    if device.gateway != gateway:
        raise CommandRefused(409, f"device {device.id} is not on gateway {gateway}")
    profile = catalog().get(device.profile)
    if profile is None:
        raise CommandRefused(409, f"device {device.id} has an unknown profile {device.profile}")
    try:
        resolve_command(profile, command, index, value)
    except CommandError as e:
        raise CommandRefused(422, str(e)) from None


class Commander:
    def __init__(self, db: sessionmaker[Session], mqtt_url: str, username: str | None = None,
                 password: str | None = None, timeout_s: float = 8.0) -> None:
        self.db = db
        self.link = make_link(mqtt_url, username, password)
        self.timeout_s = timeout_s
        self._waiting: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self.health: dict[tuple[str, str], dict[str, Any]] = {}
        self._client: Any = None
        self.on_result: Callable[[str, str], None] | None = None
        self.malformed = 0  # health / cmd-result messages that did not follow the wire contract

    def start(self) -> Commander:
        self.link.start(self._on_message, "sw-api")
        self._client = self.link
        return self

    def stop(self) -> None:
        if self._client is not None:
            self.link.stop()
            self._client = None

    # ----------------------------------------------------------------------------------- inbound
    def _on_message(self, topic: str, payload: bytes) -> None:
        try:
            t = wire.parse_topic(topic)
            if t.kind is wire.Kind.CMD_RESULT:
                self._result(t, wire.decode(t.kind, payload))
            elif t.kind is wire.Kind.HEALTH and t.device:
                h: wire.DeviceHealth = wire.decode(t.kind, payload)
                key = (t.site, t.device)
                if key in self.health or len(self.health) < MAX_HEALTH_ENTRIES:  # bounded memory
                    self.health[key] = {f: getattr(h, f) for f in h.__struct_fields__}
        except wire.WireError as e:
            self.malformed += 1
            bad_input.warning(e.reason, "ignored a malformed message on %s: %s", topic, e)
        except Exception:  # never let one bad message stop the connection's thread
            log.exception("failed to handle %s", topic)

    def _result(self, t: wire.Topic, r: wire.CommandResult) -> None:
        detail = r.detail[:512]
        c = CommandRecord
        # One conditional UPDATE, not read-then-write: every replica of a cluster hears the answer at
        # the same moment, and the same answer heard again (another replica, a redelivery) must keep
        # the time it was first recorded. Only the gateway the command went to may answer it.
        mine = (c.id == r.id, c.site == t.site, c.gateway == t.gateway, c.device == t.device)
        with self.db.begin() as s:
            s.execute(update(c).where(*mine, or_(c.answered.is_(None), c.status != r.status, c.detail != detail))
                      .values(status=r.status, detail=detail, answered=utcnow()))
            # wake the page waiting for it even when another replica recorded the answer first
            if s.execute(select(c.id).where(*mine)).first() is None:
                return
        with self._lock:
            ev = self._waiting.get(r.id)
        if ev:
            ev.set()

    # ---------------------------------------------------------------------------------- outbound
    def send(self, device: DeviceRec | None, site: str, gateway: str, command: str, index: int | None,
             value: bool | int | None, by: str, wait: bool = True) -> CommandView:
        check_command(device, site, gateway, command, index, value)
        assert device is not None
        if self._client is None or not self.link.connected():
            raise CommandRefused(503, "not connected to the broker; nothing was sent")
        cid = wire.new_id()
        now = wire.now()
        msg = wire.Command(ts=now, id=cid, command=command, index=index,
                           value=value if value is None else (bool(value) if isinstance(value, bool) else int(value)),
                           by=by, expires=now + timedelta(seconds=max(30.0, self.timeout_s * 4)))
        with self.db.begin() as s:
            s.add(CommandRecord(id=cid, site=site, gateway=gateway, device=device.id, command=command, index=index,
                                value=None if value is None else int(value), by=by, status="sent"))
        ev = threading.Event()
        with self._lock:
            self._waiting[cid] = ev
        try:
            failed = self.link.publish(wire.cmd_topic(site, gateway, device.id), wire.encode(msg))
            if wait and not failed:
                ev.wait(self.timeout_s)
        finally:
            with self._lock:
                self._waiting.pop(cid, None)
        with self.db.begin() as s:
            rec = s.get(CommandRecord, cid)
            assert rec is not None
            if rec.status == "sent" and wait:
                rec.detail = failed or "no answer yet from the gateway"
            return view(rec)

    def recent(self, sites: list[str], limit: int = 50) -> list[CommandView]:
        with self.db() as s:
            q = select(CommandRecord).where(CommandRecord.site.in_(sites)).order_by(
                CommandRecord.requested.desc()).limit(limit)
            return [view(r) for r in s.scalars(q)]

    def get(self, cid: str) -> CommandView | None:
        with self.db() as s:
            r = s.get(CommandRecord, cid)
            return view(r) if r else None
