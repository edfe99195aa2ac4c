"""Installer enrolment: a new gateway gets MQTT credentials bound to its own topics.

Identity on the wire comes from the topic (docs/wire.md), so the broker must stop gateway A from
publishing under gateway B's topics. Each enrolled gateway therefore gets:

* a random password, shown once to the installer and never stored in clear;
* a mosquitto password-file line (`user:$7$iterations$salt$hash`, PBKDF2-SHA512, the format
  mosquitto 2's `mosquitto_passwd` writes; tests check the real broker accepts it);
* an ACL block: write only the topics it sends under `sw/v1/<site>/<gateway>/`, read only its own
  `…/+/cmd`, its own config topics (`…/config`, `…/config-confirm`) and the cloud's time beacon
  `sw/v1/time`;
* the same password as a bcrypt hash for a NATS cluster's nodes, whose subject permissions are
  made from the same topic lists (cloud/cluster/natsauth.py);
* a starting edge config (edge_agent/config.py format) with its uplink credentials filled in: its
  own account and the broker's address, never the cloud's account (credentials that reach this
  module inside a URL are dropped). It passes `edge-agent check` as returned.

The pure functions here build those texts; `render_password_file` / `render_acl_file` assemble the
broker's files from every enrolled gateway plus the cloud's own service users.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field

import yaml

from device_profiles import wire
from device_profiles.loader import catalog
from device_profiles.model import ModbusTransport, TransportKind

PBKDF2_ITERATIONS = 1000  # mosquitto_passwd uses 101; the broker reads the count from the line


class EnrolError(ValueError):
    """The enrolment request cannot be honoured (bad id, unknown profile, duplicate device)."""


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    id: str
    profile: str
    address: int | None = None
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Enrolment:
    site: str
    gateway: str
    mqtt_user: str
    password: str  # shown once
    passwd_line: str
    acl: str
    edge_config: str
    nats_hash: str = field(default="", repr=False)  # bcrypt, for a NATS cluster's accounts (cloud/cluster/natsauth.py)


def mqtt_username(site: str, gateway: str) -> str:
    """One broker user per gateway; site and gateway ids cannot contain '.', so this is unambiguous."""
    return f"gw.{site}.{gateway}"


def passwd_line(username: str, password: str, salt: bytes | None = None,
                iterations: int = PBKDF2_ITERATIONS) -> str:
    """A mosquitto 2 password-file line (hash type 7 = PBKDF2-SHA512, 12-byte salt, 64-byte hash)."""
    if ":" in username or "\n" in username:
        raise EnrolError(f"user name {username!r} cannot contain ':' or a newline")
    salt = salt if salt is not None else secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"{username}:$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def check_passwd_line(line: str, password: str) -> bool:
    """True if `password` matches a type-7 line (used to test our lines and the real tool's alike)."""
    try:
        _, rest = line.strip().split(":", 1)
        _, kind, iterations, salt, digest = rest.split("$")
        if kind != "7":
            return False
        got = hashlib.pbkdf2_hmac("sha512", password.encode(), base64.b64decode(salt), int(iterations))
        return secrets.compare_digest(got, base64.b64decode(digest))
    except ValueError:
        return False


def gateway_topics(site: str, gateway: str) -> tuple[list[str], list[str]]:
    """(topics a gateway writes, topic filters it reads): exactly what it sends (its uplink topics,
    its config results and running config), its commands, ITS config topics and the time beacon;
    never its own desired config. The mosquitto ACL and the NATS permissions
    (cloud/cluster/natsauth.py) are both made from these lists."""
    wire.check_id("site", site)
    wire.check_id("gateway", gateway)
    ups = [*wire.subscriptions(site, gateway),
           *(wire.config_topic(site, gateway, k) for k in (wire.ConfigKind.RESULT, wire.ConfigKind.RUNNING))]
    reads = [wire.cmd_topic(site, gateway), *wire.gateway_config_subscriptions(site, gateway), wire.TIME_TOPIC]
    return ups, reads


def gateway_acl(site: str, gateway: str) -> str:
    """The mosquitto ACL block of one gateway (`gateway_topics`)."""
    ups, reads = gateway_topics(site, gateway)
    return (f"user {mqtt_username(site, gateway)}\n"
            + "".join(f"topic write {t}\n" for t in ups)
            + "".join(f"topic read {t}\n" for t in reads))


def cloud_acl(username: str) -> str:
    """The cloud's service user (ingest, API): reads everything under v1, writes only commands,
    gateways' desired configs, confirmations and alarm limits, and the time beacon."""
    return (f"user {username}\n"
            f"topic read {wire.PREFIX}/#\n"
            f"topic write {wire.PREFIX}/+/+/+/cmd\n"
            + "".join(f"topic write {wire.PREFIX}/+/+/{k.value}\n" for k in CLOUD_CONFIG_WRITES)
            + f"topic write {wire.TIME_TOPIC}\n")


# The gateway-level messages the cloud sends (docs/wire.md): the mosquitto ACL and the NATS permissions.
CLOUD_CONFIG_WRITES = (wire.ConfigKind.DESIRED, wire.ConfigKind.CONFIRM, wire.ConfigKind.LIMITS)


def _bus_for(kind: TransportKind, baud: int, serial_no: int) -> dict[str, object]:
    if kind is TransportKind.MODBUS_TCP:
        return {"name": "tcp1", "transport": kind.value, "host": "192.0.2.10", "tcp_port": 502}
    if kind is TransportKind.SERIAL_LINE:
        return {"name": f"line{serial_no}", "transport": kind.value, "serial_port": f"/dev/ttyUSB{serial_no}",
                "baud": baud}
    return {"name": f"rs485-{baud}", "transport": kind.value, "serial_port": f"/dev/ttyUSB{serial_no}", "baud": baud}


def edge_config(site: str, gateway: str, broker_url: str, username: str, password: str,
                devices: list[DeviceSpec]) -> str:
    """A starting edge config: uplink filled in, one bus per transport and speed the devices need
    (serial ports and addresses are placeholders the installer adjusts; `edge-agent check` validates)."""
    profiles = catalog()
    buses: dict[str, dict[str, object]] = {}
    devs: list[dict[str, object]] = []
    next_addr: dict[str, int] = {}
    for d in devices:
        p = profiles[d.profile]
        tr = p.transport
        baud = getattr(getattr(tr, "serial", None), "baud", None) or 9600
        serial_no = sum(1 for b in buses.values() if "serial_port" in b)
        bus = _bus_for(tr.kind, int(baud), serial_no)
        if tr.kind is TransportKind.MODBUS_RTU and bus["name"] in buses:
            bus = buses[str(bus["name"])]  # same speed: share the line
        buses.setdefault(str(bus["name"]), bus)
        entry: dict[str, object] = {"id": d.id, "profile": d.profile, "bus": bus["name"]}
        if isinstance(tr, ModbusTransport):
            addr = d.address or next_addr.get(str(bus["name"]), 1)
            next_addr[str(bus["name"])] = addr + 1
            entry["address"] = addr
        else:
            entry["address"] = 0
        if d.labels:
            entry["labels"] = dict(d.labels)
        devs.append(entry)
    from cloud.broker_account import without_credentials

    # one broker, or the MQTT listeners of a cluster's nodes, comma-separated (edge_agent/config.py: a list)
    urls = [without_credentials(u.strip()).rstrip("/") for u in broker_url.split(",") if u.strip()]
    url: str | list[str] = urls[0] if len(urls) == 1 else urls
    doc = {
        "site": site,
        "gateway": gateway,
        "uplink": {"url": url, "client_id": f"{site}:{gateway}", "username": username, "password": password},
        "buses": list(buses.values()),
        "devices": devs,
    }
    head = (f"# Starting edge config for gateway {gateway} of site {site}, made at enrolment.\n"
            "# Adjust serial ports and Modbus addresses to the wiring, then run `edge-agent check` on this file.\n"
            "# The password below is this gateway's only copy: keep the file readable by the agent only.\n")
    return head + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


def enrol(site: str, gateway: str, devices: list[DeviceSpec], broker_url: str) -> Enrolment:
    """Check the request and build the credentials, ACL and edge config (nothing is stored here)."""
    try:
        wire.check_id("site", site)
        wire.check_id("gateway", gateway)
        for d in devices:
            wire.check_id("device", d.id)
    except wire.WireError as e:
        raise EnrolError(e.detail) from None
    if not devices:
        raise EnrolError("list at least one device (id and profile) on the new gateway")
    known = catalog()
    seen: set[str] = set()
    for d in devices:
        if d.profile not in known:
            raise EnrolError(f"device {d.id}: unknown profile {d.profile!r}; known: {', '.join(sorted(known))}")
        if d.id in seen:
            raise EnrolError(f"device {d.id!r} is listed twice")
        seen.add(d.id)
    user = mqtt_username(site, gateway)
    password = secrets.token_urlsafe(24)
    from cloud.cluster.natsauth import bcrypt_hash

    return Enrolment(site=site, gateway=gateway, mqtt_user=user, password=password,
                     passwd_line=passwd_line(user, password), acl=gateway_acl(site, gateway),
                     edge_config=edge_config(site, gateway, broker_url, user, password, devices),
                     nats_hash=bcrypt_hash(password))


def parse_devices(text: str) -> list[DeviceSpec]:
    """The enrolment form's device list: one `id profile [address]` per line, '#' comments."""
    out: list[DeviceSpec] = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.replace(",", " ").split()
        if len(parts) not in (2, 3):
            raise EnrolError(f"line {n}: expected `device-id profile-id [address]`, got {raw.strip()!r}")
        addr = None
        if len(parts) == 3:
            if not parts[2].isdigit() or not 1 <= int(parts[2]) <= 247:
                raise EnrolError(f"line {n}: address must be 1..247, got {parts[2]!r}")
            addr = int(parts[2])
        out.append(DeviceSpec(id=parts[0], profile=parts[1], address=addr))
    return out


def render_password_file(lines: Iterable[str]) -> str:
    return "".join(line.rstrip("\n") + "\n" for line in lines)


def render_acl_file(blocks: Iterable[str]) -> str:
    return "\n".join(b.rstrip("\n") + "\n" for b in blocks)
