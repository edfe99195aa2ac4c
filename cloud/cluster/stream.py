"""How long the cluster keeps uplink messages: the settings of the MQTT layer's stream. Pure: no I/O.

Every QoS 1 message an edge publishes is stored in the NATS MQTT layer's stream `$MQTT_msgs` before
the node acknowledges it (cloud/cluster/partition.py). nats-server creates that stream with
*interest* retention: a message is kept only while some consumer's filter is interested in its
subject, and one stored when no consumer is interested is acknowledged to the edge and deleted at
once. The cloud's durable consumers always cover the uplink, but not always *at that instant* on the
stream leader: after a whole-cluster restart or a leader change the stream can take messages before
its consumers are back, and interest retention then loses acknowledged readings silently (issue 13,
the chaos test). So the cloud creates the stream first, with *limits* retention (nats-server uses a
stream that exists), and moves a stream that nats-server created to limits:

- a message stays until it is older than `MAX_AGE_S` or the stream is over `MAX_BYTES` (oldest
  dropped first), whatever the consumers did; the consumers still track their own acknowledgements,
  so nothing is read twice;
- the cost is disk: the stream holds the last `MAX_AGE_S` of uplink (or `MAX_BYTES`), on each of its
  three nodes, instead of only the unacknowledged part;
- the limit on an outage of every replica is `min(MAX_AGE_S, MAX_BYTES / uplink bytes per second)`:
  what an edge had acknowledged before that is gone from the stream unread (the edge no longer holds
  it). docs/operations.md has the sizing.
"""

from __future__ import annotations

from typing import Any

LIMITS, INTEREST, WORK_QUEUE = "limits", "interest", "workqueue"
MAX_AGE_S = 24 * 3600
# Reserved on every node holding a replica (JetStream checks it against the node's max_file_store,
# 10G by default in cloud/cluster/natsconf.py); ~2 h of a 2,000 msg/s fleet, days of a typical estate.
MAX_BYTES = 8 * 1024**3


def wanted(max_age_s: float = MAX_AGE_S, max_bytes: int = MAX_BYTES) -> dict[str, Any]:
    """The retention settings the cloud wants on `$MQTT_msgs` (JetStream API names and units)."""
    if max_age_s <= 0 or max_bytes <= 0:
        raise ValueError("the uplink stream needs a positive max_age and max_bytes")
    return {"retention": LIMITS, "max_age": int(max_age_s * 1e9), "max_bytes": int(max_bytes), "discard": "old"}


def update(current: dict[str, Any], max_age_s: float = MAX_AGE_S, max_bytes: int = MAX_BYTES) -> dict[str, Any] | None:
    """The stream config to send with a stream update, or None when `current` (its config as the server
    reports it) already has the retention the cloud wants. Everything else of the config is kept."""
    want = wanted(max_age_s, max_bytes)
    if current.get("retention") == WORK_QUEUE:
        raise ValueError("$MQTT_msgs is a work-queue stream: JetStream cannot change that; recreate it")
    if all(current.get(k) == v for k, v in want.items()):
        return None
    return {**current, **want}
