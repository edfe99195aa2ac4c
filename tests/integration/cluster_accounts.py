"""Broker accounts for the cluster tests, as production has them (cloud/cluster/natsauth.py).

Without accounts a permission the cloud's user lacks on a takeover, consumer-creation, command, config
or push path would only show in production. So the tests that start `cloud serve` replicas on a NATS
cluster give every node the `authorization` block production renders:

* the cloud's user (`CLOUD`), which the replicas get the way `cloud serve` does in production
  (SHELTERWATCH_BROKER_USER and SHELTERWATCH_BROKER_PASSWORD_FILE, `Replica(account=…)`);
* each real edge's account made by enrolment (`cloud.enrol.enrol`: its bcrypt hash in the file, its
  user, password and client id in the edge config, `uplink`);
* test-only, appended here and never by natsauth: the fleet generator's user, bound by `no_auth_user`
  to the MQTT connections that give no credentials (the fleet publishes for many gateways over shared
  connections, which per-gateway accounts refuse). It may publish only the uplink subjects the fleet
  sends for ITS gateways — as the server checks them, after the partition mapping — and nothing else:
  no JetStream API, no commands, no subscriptions, no NATS-protocol connection.

Measured with nats-server 2.15.1 (the pinned wheel): the top-level `no_auth_user` applies to MQTT
clients without a user name; the user's password must be clear text (a `$2a$` hash there fails the
no-credentials connection with "authentication error"), which is harmless for an account that only
load generators use and that holds no secret; its publish permission is checked on
`swp.<n>.sw.v1.…` like a gateway's (allowed only on `sw.v1.…`, telemetry was PUBACKed and dropped as
a "Publish Violation"); a subscription is refused with SUBACK 0x80; a NATS client without credentials
gets "Authorization Violation" (the fleet user allows MQTT only).

The accounts file is written once before the nodes start: the replicas run without
`--nats-users-file`, whose sync would rewrite the file without the fleet's user (tests/integration/
test_nats_auth.py covers the sync).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cloud import enrol
from cloud.broker_account import BrokerAccount
from cloud.cluster import natsauth
from device_profiles import wire
from tests.fixtures.nats_cluster import NatsCluster, make_nats_cluster

CLOUD = BrokerAccount("sw-cloud", "cluster-test-cloud-password-never-in-a-file-4711")
FLEET_USER = "fleet-loadgen"
# Clear text on purpose (see the module doc): never a real secret, and no_auth_user needs it so.
_FLEET_PASSWORD = "fleet-loadgen-no-auth"


def fleet_topics(site: str, gateway: str) -> list[str]:
    """What simulators/fleet.py publishes for one gateway: its status (retained, and the last will of
    a connection with one gateway), its health, and its devices' telemetry, events and health."""
    b = f"{wire.PREFIX}/{site}/{gateway}"
    return [f"{b}/status", f"{b}/health", f"{b}/+/telemetry", f"{b}/+/event", f"{b}/+/health"]


def fleet_publish(site: str, gateways: list[str], partitions: int) -> list[str]:
    """The fleet user's publish subjects, as the server checks them (after the partition mapping)."""
    return [natsauth.as_checked(natsauth.topic_to_subject(t), site, gw, partitions)
            for gw in gateways for t in fleet_topics(site, gw)]


def _q(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def fleet_user_line(site: str, gateways: list[str], partitions: int) -> str:
    allow = ", ".join(_q(s) for s in fleet_publish(site, gateways, partitions))
    return (f"{{user: {_q(FLEET_USER)}, password: {_q(_FLEET_PASSWORD)}, "
            f"permissions: {{publish: {{allow: [{allow}]}}, subscribe: {{deny: [\">\"]}}}}, "
            f"allowed_connection_types: [\"MQTT\"]}}")


@dataclass
class ClusterAccounts:
    """The accounts of one test stack: the cloud's user, the enrolled edges, the fleet's gateways."""

    site: str
    partitions: int
    edges: dict[str, list[enrol.DeviceSpec]] = field(default_factory=dict)
    fleet_gateways: list[str] = field(default_factory=list)
    enrolled: dict[str, enrol.Enrolment] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for gw, devices in self.edges.items():  # what `POST /api/v1/sites/<site>/gateways` does first
            self.enrolled[gw] = enrol.enrol(self.site, gw, devices, "mqtt://127.0.0.1:1883")

    def users_text(self) -> str:
        """natsauth's file (cloud and enrolled gateways), plus the fleet's user when there is a fleet."""
        users = [natsauth.cloud_user(str(CLOUD.username), natsauth.bcrypt_hash(str(CLOUD.password)))]
        users += [natsauth.gateway_user(self.site, gw, e.nats_hash, self.partitions) for gw, e in self.enrolled.items()]
        text = natsauth.render_authorization(users)
        if not self.fleet_gateways:
            return text
        head, tail = text.rsplit("  ]\n}", 1)
        return f"{head}    {fleet_user_line(self.site, self.fleet_gateways, self.partitions)}\n  ]\n}}{tail}"

    @property
    def node_extra(self) -> str:
        """Appended to every node's config (test-only: production configs never bind a no_auth_user)."""
        return f"no_auth_user: {_q(FLEET_USER)}  # test-only: the fleet generator\n" if self.fleet_gateways else ""

    def cluster(self, root: Path) -> NatsCluster:
        """A started cluster whose nodes include these accounts; tests connect over NATS as the cloud."""
        return make_nats_cluster(root, partitions=self.partitions, users=self.users_text(), extra=self.node_extra,
                                 login=(str(CLOUD.username), str(CLOUD.password)))

    def uplink(self, gateway: str) -> dict[str, Any]:
        """The credentials of the edge config enrolment returned: user, password, client id."""
        up = yaml.safe_load(self.enrolled[gateway].edge_config)["uplink"]
        return {k: up[k] for k in ("username", "password", "client_id")}
