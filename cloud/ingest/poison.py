"""When the NATS ingester stops retrying a message whose handler keeps failing (a poison message). Pure.

On a NATS cluster a message is acknowledged only once handled (cloud/ingest/jetstream.py); one whose
handler raises stays unacknowledged and JetStream delivers it again after the ack wait, with no end.
That is right for a store that is briefly away, and for alarms (status, events, device health) it is
the only acceptable outcome: they are never given up. Remote configuration's answers (`config-result`,
`config-running`, cloud/remote_config/service.py) are the one kind on the safety lane whose handler
raises by design ("not recorded: deliver it again"); when it fails for good (a bug for one particular
message, a store failing in a way that is not transient) the answer came back every ack wait for ever,
re-handled on the safety lane each time, and nobody was told. After `MAX_DELIVERIES` such an answer is
set aside instead: the ingest service keeps it as dead letter `HANDLER_FAILED` (cloud/ingest/service.py)
and it is acknowledged. This is a per-message decision, not a `max_deliver` on the safety consumer,
which would also give up alarms.

With one broker (mosquitto) the broker delivers an unacknowledged message again only on the next
connection, so the remote-config service retries a failing answer itself, on the same schedule
(`retry_delay`: the same ride-out, backing off), and acknowledges it once recorded or set aside
(cloud/remote_config/inbox.py).
"""

from __future__ import annotations

import math

from cloud.cluster.partition import CONFIG_UP_KINDS
from cloud.ingest.jetstream import ACK_WAIT_S

HANDLER_FAILED = "handler_failed"  # the dead-letter reason (docs/operations.md "Dead letters")

# How long a failing config answer is retried: long enough to ride out a short PostgreSQL outage (a
# restart or a managed fail-over of the shared database takes from a few seconds to about a minute;
# the connection pool reconnects on the next try), short enough that a message that can never be
# recorded stops costing the safety lane a handling every ack wait within a couple of minutes. 90 s at
# one delivery per ack wait (6 s): the first delivery and 15 more, the last one ~90 s after the first.
RIDE_OUT_S = 90.0
MAX_DELIVERIES = 1 + math.ceil(RIDE_OUT_S / ACK_WAIT_S)


def gives_up(topic: str, delivered: int | None, max_deliveries: int = MAX_DELIVERIES) -> bool:
    """The handler of `topic` raised on its `delivered`-th delivery (JetStream's count, None if the
    message carries none): set it aside now (True) or leave it for another delivery (False)?

    Only remote configuration's answers are ever set aside; every other kind is retried for as long as
    it fails. An unknown count never gives up (better one message too many than one lost)."""
    if topic.rsplit("/", 1)[-1] not in CONFIG_UP_KINDS:
        return False
    return delivered is not None and delivered >= max_deliveries


def retry_delay(tries: int, tried_for: float, ride_out_s: float = RIDE_OUT_S) -> float | None:
    """After the `tries`-th failed try of a message, the first of them `tried_for` seconds ago: how long
    to wait before the next try, or None: set it aside now. Backs off from 0.5 s to one ack wait
    (as JetStream redelivers), never past the ride-out, so the last try comes at ~`ride_out_s`."""
    if tries < 1:
        raise ValueError("retry_delay is asked after a failed try")
    left = ride_out_s - tried_for
    if left <= 0:
        return None
    return min(0.5 * 2 ** (tries - 1), ACK_WAIT_S, left)
