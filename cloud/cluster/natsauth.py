"""Broker accounts on a NATS cluster: the `authorization` block the nodes include. Pure: text in, text out.

On mosquitto each enrolled gateway has its own account bound by an ACL (cloud/enrol.py). NATS checks
an MQTT client's topics as subjects (`sw/v1/a/b` is `sw.v1.a.b`, `+` is `*`, `#` is `>`), so the same
rules become subject permissions, derived here from the same topic lists the mosquitto ACL uses
(`enrol.gateway_topics`), so the two brokers cannot drift apart:

* each gateway publishes only its own uplink topics, its config results and running config (its
  last will is its status topic, in that list), and subscribes only to its own commands, its own
  config topics and the time beacon; it may connect over MQTT only;
* the cloud's user (ingest, commands, time beacon) may connect over the NATS protocol only, with the
  JetStream API, the MQTT layer's stream `$MQTT_msgs` (commands are stored there), the partitioned
  uplink subjects and the reply inboxes it needs — and nothing an edge may spoof on its behalf.

What the real server does (nats-server 2.15.1, pinned; tests/integration/test_nats_auth.py checks it):
* an MQTT client's publish permission is checked on the subject AFTER the partition mapping: a
  gateway allowed `sw.v1.<site>.<gw>.*.telemetry` had its telemetry acknowledged (PUBACK) and
  silently dropped, and a user allowed only `swp.>` got through. So the uplink kinds the nodes map
  are allowed as `swp.<n>.sw.v1.<site>.<gw>.…` with the gateway's own partition n (computed like the
  server, `partition.partition_of`); a gateway that publishes under another gateway's topics gets
  a PUBACK too, and the message is neither stored nor delivered (silent drop, the connection stays);
* a refused subscription gets SUBACK 0x80 (failure); a QoS 1 subscription needs no permission on the
  MQTT layer's internal `$MQTT.sub.>` (measured), so none is given;
* MQTT client ids may not contain '.' (CONNACK "identifier rejected"): enrolment uses `<site>:<gw>`.

Passwords are bcrypt hashes (`$2a$`, what nats-server accepts), never clear text in a config file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

import bcrypt

from cloud.cluster import partition as P
from device_profiles import wire

BCRYPT_COST = 11  # what `nats server passwd` uses: ~0.1-0.2 s per check, paid once per connection


def bcrypt_hash(password: str, cost: int = BCRYPT_COST) -> str:
    """A `$2a$` bcrypt hash of `password` (nats-server recognises bcrypt by that prefix)."""
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=cost, prefix=b"2a")).decode()


def check_bcrypt(hashed: str, password: str) -> bool:
    return bcrypt.checkpw(password.encode(), hashed.encode())


def topic_to_subject(topic: str) -> str:
    """An MQTT topic (filter) as NATS sees it: `/`→`.`, `+`→`*`, `#`→`>` (shelterwatch ids hold no '.')."""
    return ".".join({"+": "*", "#": ">"}.get(level, level) for level in topic.split("/"))


@dataclass(frozen=True, slots=True)
class Permissions:
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class NatsUser:
    name: str
    password_hash: str = field(repr=False)
    permissions: Permissions
    connection_types: tuple[str, ...]


def _matches(pattern: str, subject: str) -> bool:
    """Token-wise match of a mapping source (`*` wildcards only) against a subject (which may
    hold `*` itself: a wildcard in both matches)."""
    p, s = pattern.split("."), subject.split(".")
    return len(p) == len(s) and all(a == "*" or a == b for a, b in zip(p, s, strict=True))


def as_checked(subject: str, site: str, gateway: str, partitions: int) -> str:
    """The subject the server checks a publish permission against: mapped uplink subjects carry
    the gateway's partition prefix (see the module doc); the rest stay as they are."""
    if any(_matches(src, subject) for src in P.server_mappings(partitions)):
        return f"{P.PREFIX}.{P.partition_of(site, gateway, partitions)}.{subject}"
    return subject


def gateway_permissions(site: str, gateway: str, partitions: int = P.DEFAULT_PARTITIONS) -> Permissions:
    """The mosquitto ACL of `enrol.gateway_acl` as NATS subject permissions, publish subjects as
    the server checks them (after the partition mapping of `partitions`)."""
    from cloud.enrol import gateway_topics

    writes, reads = gateway_topics(site, gateway)
    return Permissions(publish=tuple(as_checked(topic_to_subject(t), site, gateway, partitions) for t in writes),
                       subscribe=tuple(topic_to_subject(t) for t in reads))


def cloud_permissions() -> Permissions:
    """What `cloud serve` / `cloud ingest` do on NATS: the JetStream API (stream and consumers on
    `$MQTT_msgs`, pull requests, acknowledgements), commands and gateways' configs stored in
    `$MQTT_msgs` under their topics, the time beacon, plain subscriptions to the partitioned uplink
    (gateway health, command results), and the reply inboxes of its requests."""
    from cloud.enrol import CLOUD_CONFIG_WRITES

    store = P.MQTT_STREAM_PREFIX + topic_to_subject(wire.PREFIX)
    return Permissions(
        publish=("$JS.API.>", "$JS.ACK.>", "$JS.FC.>", "_INBOX.>",
                 f"{store}.*.*.*.cmd",
                 *(f"{store}.*.*.{k.value}" for k in CLOUD_CONFIG_WRITES),
                 topic_to_subject(wire.TIME_TOPIC)),
        subscribe=("_INBOX.>", f"{P.PREFIX}.>", f"{topic_to_subject(wire.PREFIX)}.>"),
    )


def gateway_user(site: str, gateway: str, password_hash: str, partitions: int = P.DEFAULT_PARTITIONS) -> NatsUser:
    from cloud.enrol import mqtt_username

    return NatsUser(mqtt_username(site, gateway), password_hash, gateway_permissions(site, gateway, partitions),
                    ("MQTT",))


def cloud_user(name: str, password_hash: str) -> NatsUser:
    return NatsUser(name, password_hash, cloud_permissions(), ("STANDARD",))


def _q(s: str) -> str:
    return json.dumps(s)  # a JSON string is a valid quoted string in the NATS config format


def _list(items: Iterable[str]) -> str:
    return "[" + ", ".join(_q(i) for i in items) + "]"


def render_user(u: NatsUser) -> str:
    """One entry of `authorization.users` (one line, so a file of them diffs per user)."""
    if not u.password_hash.startswith("$2a$"):
        raise ValueError(f"user {u.name}: the password must be a $2a$ bcrypt hash, never clear text")
    return (f"{{user: {_q(u.name)}, password: {_q(u.password_hash)}, "
            f"permissions: {{publish: {{allow: {_list(u.permissions.publish)}}}, "
            f"subscribe: {{allow: {_list(u.permissions.subscribe)}}}}}, "
            f"allowed_connection_types: {_list(u.connection_types)}}}")


def render_authorization(users: Iterable[NatsUser]) -> str:
    """The include file every node reads (`cloud nats-config --users-file`): the whole
    `authorization` block. A user not in it cannot connect; no permission means no access."""
    body = "".join(f"    {render_user(u)}\n" for u in users)
    return ("# shelterwatch broker accounts (generated: cloud/cluster/natsauth.py; rewritten at enrolment)\n"
            "authorization {\n  users = [\n" + body + "  ]\n}\n")
