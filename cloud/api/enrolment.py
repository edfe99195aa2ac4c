"""Enrolment with storage: build the credentials (cloud/enrol.py), keep the hash and ACL, and
register the gateway and its devices in the registry so the ingester accepts their messages."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from cloud import enrol
from cloud.auth.models import EnrolledGateway, NatsGatewayUser


class EnrolConflict(ValueError):
    pass


class NotEnrolled(LookupError):
    pass


def enrol_and_store(app: Any, site: str, gateway: str, name: str, devices: list[enrol.DeviceSpec],
                    by: str) -> enrol.Enrolment:
    src = app.state.estate
    if any(g.id == gateway for g in src.gateways(site)):
        raise EnrolConflict(f"gateway {gateway!r} already exists on site {site}")
    taken = {d.id for d in src.devices(site)}
    clash = [d.id for d in devices if d.id in taken]
    if clash:
        raise EnrolConflict(f"device ids already registered on site {site}: {', '.join(clash)}")
    e = enrol.enrol(site, gateway, devices, app.state.settings.gateway_broker_url)
    try:
        with app.state.db.begin() as s:
            s.add(EnrolledGateway(site=site, gateway=gateway, name=name, mqtt_user=e.mqtt_user,
                                  passwd_line=e.passwd_line, created_by=by,
                                  devices=[{"id": d.id, "profile": d.profile} for d in devices]))
            s.add(NatsGatewayUser(site=site, gateway=gateway, bcrypt_hash=e.nats_hash))
    except IntegrityError:
        raise EnrolConflict(f"gateway {gateway!r} is already enrolled on site {site}") from None
    register = getattr(src, "add_gateway", None)
    if register is not None:
        register(site, gateway, name, devices)
    return e


def site_files(app: Any, site: str) -> tuple[str, str]:
    """(password-file lines, ACL blocks) of a site's enrolled gateways."""
    with app.state.db() as s:
        rows = list(s.scalars(select(EnrolledGateway).where(EnrolledGateway.site == site)
                              .order_by(EnrolledGateway.gateway)))
    return (enrol.render_password_file(r.passwd_line for r in rows),
            enrol.render_acl_file(enrol.gateway_acl(r.site, r.gateway) for r in rows))


def rotate_password(app: Any, site: str, gateway: str) -> enrol.Enrolment:
    """A new password for an enrolled gateway (a leaked config, a replaced box): new mosquitto line and
    NATS hash in place of the old ones, and a fresh starting edge config with it. The old password
    stops working when the broker reloads its accounts (mosquitto: the operator's `kill -HUP` after
    re-reading `…/mosquitto/passwd`; NATS: `cloud serve --nats-users-file` within seconds)."""
    with app.state.db.begin() as s:
        row = s.scalars(select(EnrolledGateway).where(EnrolledGateway.site == site,
                                                      EnrolledGateway.gateway == gateway)).one_or_none()
        if row is None:
            raise NotEnrolled(f"gateway {gateway!r} of site {site} was not enrolled here")
        devices = [enrol.DeviceSpec(d["id"], d["profile"]) for d in row.devices]
        e = enrol.enrol(site, gateway, devices, app.state.settings.gateway_broker_url)
        row.passwd_line = e.passwd_line
        nats = s.scalars(select(NatsGatewayUser).where(NatsGatewayUser.site == site,
                                                       NatsGatewayUser.gateway == gateway)).one_or_none()
        if nats is None:  # enrolled before NATS accounts existed
            s.add(NatsGatewayUser(site=site, gateway=gateway, bcrypt_hash=e.nats_hash))
        else:
            nats.bcrypt_hash = e.nats_hash
    return e
