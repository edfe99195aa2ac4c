"""How the uplink is split into partitions on a NATS cluster, and how names map. Pure: no I/O.

Every uplink message of a gateway belongs to one partition, chosen by (site, gateway), so all of a
device's messages reach one alarm engine, in order. The NATS servers do the split themselves with
subject mappings (`server_mappings`): an edge publishes MQTT `sw/v1/<site>/<gw>/…`, NATS turns the
topic into the subject `sw.v1.<site>.<gw>.…` and the mapping prefixes it with
`swp.<partition>.`, where partition = FNV-1a-32(site + gateway) mod N — NATS's own `partition()`
mapping function. `partition_of` is the same function in Python (tested against the server), so a
replica knows which gateways a partition holds without asking anyone.

Why prefix the subject instead of capturing `sw.v1.>` in a stream of our own: the NATS MQTT layer
acknowledges a QoS 1 PUBLISH only after storing it in its own replicated stream `$MQTT_msgs`
(`$MQTT.msgs.<subject>`); a second stream capturing the subject is fed asynchronously and, measured
here, lost 54 of 1,835 acknowledged messages when its leader was killed with `kill -9`. So the
replicas read `$MQTT_msgs` itself through durable consumers, one per partition and lane, filtered on
the mapped subjects. The mapping changes what MQTT observers of a NATS cluster see (retained status
is under `swp/<n>/sw/v1/<site>/<gw>/status`); the edge publishes the wire contract unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

from device_profiles import wire

PREFIX = "swp"  # partitioned uplink subjects: swp.<n>.sw.v1.<site>.<gw>.…
MQTT_STREAM = "$MQTT_msgs"  # where NATS keeps QoS 1 MQTT messages (created by nats-server or by us)
MQTT_STREAM_PREFIX = "$MQTT.msgs."
# The header under which the MQTT layer keeps the QoS a message of `$MQTT_msgs` was published with; a
# message stored with "1" is delivered to MQTT subscribers at QoS 1 (nats-server's mqtt.go, pinned
# version; tests/integration/test_nats_cluster.py checks it).
MQTT_QOS_HEADER = "Nmqtt-Pub"
DEFAULT_PARTITIONS = 16

# The uplink kinds of a gateway and of its devices (docs/wire.md)
# Remote configuration's uplink (`config-result`, `config-running`, docs/wire.md) is partitioned too: a
# gateway's answers are read by the owner of its partition through its safety consumer, once, and
# delivered again to a survivor if the owner dies before acknowledging them (cloud/remote_config/).
CONFIG_UP_KINDS = ("config-result", "config-running")
_GATEWAY_KINDS = ("status", "health", *CONFIG_UP_KINDS)  # sw.v1.<site>.<gw>.<kind>
_DEVICE_KINDS = ("telemetry", "urgent", "event", "health", "cmd-result")  # sw.v1.<site>.<gw>.<dev>.<kind>

SAFETY, BULK = "safety", "bulk"
# The lanes, as in the MQTT ingester (cloud/ingest/mqtt.py): status, events, urgent telemetry and device
# health apart from the telemetry bulk, so an alarm never waits behind a telemetry backlog of its partition.
# Subject tails after `sw.v1.`: <site>.<gw>.<kind> or <site>.<gw>.<device>.<kind>.
LANE_TAILS: dict[str, tuple[str, ...]] = {
    SAFETY: ("*.*.status", "*.*.*.event", "*.*.*.urgent", "*.*.*.health", *(f"*.*.{k}" for k in CONFIG_UP_KINDS)),
    BULK: ("*.*.*.telemetry", "*.*.health", "*.*.*.cmd-result"),
}


def fnv1a32(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def partition_of(site: str, gateway: str, partitions: int) -> int:
    """The partition NATS's `{{partition(n,1,2)}}` puts (site, gateway) in: the two tokens
    concatenated without a separator, FNV-1a 32-bit, modulo n (nats-server subject_transform.go)."""
    return fnv1a32((site + gateway).encode()) % partitions


def server_mappings(partitions: int) -> dict[str, str]:
    """The `mappings` block of every NATS node's config: uplink subjects → partitioned subjects.
    Only the uplink kinds are mapped; the downlink (`cmd`) keeps its subject so edges' MQTT
    subscriptions match it."""
    if partitions < 1:
        raise ValueError("partitions must be at least 1")
    part = f"{{{{partition({partitions},1,2)}}}}"
    out: dict[str, str] = {}
    for kind in _GATEWAY_KINDS:
        out[f"sw.v1.*.*.{kind}"] = f"{PREFIX}.{part}.sw.v1.{{{{wildcard(1)}}}}.{{{{wildcard(2)}}}}.{kind}"
    for kind in _DEVICE_KINDS:
        out[f"sw.v1.*.*.*.{kind}"] = (
            f"{PREFIX}.{part}.sw.v1.{{{{wildcard(1)}}}}.{{{{wildcard(2)}}}}.{{{{wildcard(3)}}}}.{kind}"
        )
    return out


def lane_filters(partition: int, lane: str) -> list[str]:
    """Filter subjects (on `$MQTT_msgs`) of one partition's lane."""
    return [f"{MQTT_STREAM_PREFIX}{PREFIX}.{partition}.sw.v1.{t}" for t in LANE_TAILS[lane]]


def consumer_name(partition: int, lane: str) -> str:
    return f"sw-p{partition:03d}-{lane}"


def gateway_health_subject(partition: int) -> str:
    """Gateway health travels at QoS 0 (best effort), so NATS does not store it: it is read with a
    plain subscription by whoever owns the partition."""
    return f"{PREFIX}.{partition}.sw.v1.*.*.health"


@dataclass(frozen=True, slots=True)
class Uplink:
    """One partitioned uplink subject, split: the partition and the MQTT topic of the wire contract."""

    partition: int
    topic: str


def parse_subject(subject: str) -> Uplink | None:
    """`[$MQTT.msgs.]swp.<n>.sw.v1.…` → (n, `sw/v1/…`); None if it is not a partitioned uplink subject."""
    if subject.startswith(MQTT_STREAM_PREFIX):
        subject = subject[len(MQTT_STREAM_PREFIX) :]
    head, sep, rest = subject.partition(".")
    if head != PREFIX or not sep:
        return None
    n, sep, rest = rest.partition(".")
    if not sep or not n.isdigit() or not rest.startswith("sw.v1."):
        return None
    return Uplink(int(n), rest.replace(".", "/"))


def stored_subject(topic: str) -> str:
    """The subject under which the MQTT layer stores a QoS 1 message of an MQTT topic in `$MQTT_msgs`
    (not mapped: the mappings cover the uplink only)."""
    return MQTT_STREAM_PREFIX + topic.replace("/", ".")


def command_subject(site: str, gateway: str, device: str) -> str:
    """Where the cloud publishes a command on NATS: stored in `$MQTT_msgs` under the command topic
    (edges subscribe to `…/<device>/cmd` at QoS 1), with `MQTT_QOS_HEADER` 1 (cloud/api/command_link.py)."""
    return stored_subject(wire.cmd_topic(site, gateway, device))


def partitions_subject_filter(kind: str) -> str:
    """A plain subscription to one uplink kind of every partition (`cmd-result`, device `health`)."""
    return f"{PREFIX}.*.sw.v1.*.*.*.{kind}"
