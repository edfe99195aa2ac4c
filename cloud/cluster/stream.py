"""How long the cluster keeps uplink messages: the settings of the MQTT layer's stream. Pure: no I/O.

Every QoS 1 message an edge publishes is stored in the NATS MQTT layer's stream `$MQTT_msgs` before
the node acknowledges it (cloud/cluster/partition.py). nats-server creates that stream with
*interest* retention: a message is kept only while some consumer's filter is interested in its
subject, and its acknowledgements decide deletion on each replica of the stream: a message stored
while a replica knows no consumer covering it (a whole-cluster restart, a node catching up, a leader
change) is acknowledged to the edge and deleted, silently. Under interest retention the chaos test
(issue 13) lost acknowledged readings in 4 of 8 runs, none left in the stream to look at; under limits
retention it lost none in 5 runs of 5 (the consumers and replicas act the same under both). So the
cloud creates the stream first, with *limits* retention (nats-server uses a stream that exists), and
moves a stream nats-server created to limits:

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
# 10G by default in cloud/cluster/natsconf.py); ~300 bytes a message: ~4 h of a 2,000 msg/s fleet,
# more than the 24 h of a typical estate (~20 msg/s).
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
