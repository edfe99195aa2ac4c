"""When the NATS ingester gives up retrying a message whose handler keeps failing (cloud/ingest/poison.py):
only remote configuration's answers, only once they have been delivered `max_deliveries` times; alarms
and everything else are retried for as long as they fail. Topics written by hand from docs/wire.md.
The same on a real cluster, through the ingest service: tests/integration/test_nats_config_set_aside.py."""

from __future__ import annotations

from cloud.ingest import poison
from cloud.ingest.jetstream import ACK_WAIT_S

CONFIG_ANSWERS = ["sw/v1/site-a/gw-1/config-result", "sw/v1/site-a/gw-1/config-running"]
NEVER_GIVEN_UP = [
    "sw/v1/site-a/gw-1/status",
    "sw/v1/site-a/gw-1/health",
    "sw/v1/site-a/gw-1/dev-1/event",
    "sw/v1/site-a/gw-1/dev-1/urgent",
    "sw/v1/site-a/gw-1/dev-1/health",
    "sw/v1/site-a/gw-1/dev-1/telemetry",
    "sw/v1/site-a/gw-1/dev-1/cmd-result",
    "sw/v1/site-a/gw-1/config",  # downlink kinds, should one ever reach a handler
    "sw/v1/site-a/gw-1/config-confirm",
    "sw/v1/site-a/gw-1/dev-1/cmd",
    "sw/v1/site-a/gw-1/config-results",  # not a config answer, only a name that starts like one
    "sw/v1/site-a/config-result/status",  # a gateway named like a kind
]


def test_a_config_answer_is_retried_until_its_last_delivery_then_set_aside() -> None:
    for limit in range(1, 25):
        for topic in CONFIG_ANSWERS:
            assert not poison.gives_up(topic, None, limit)  # no count: never given up
            for delivered in range(0, 3 * limit + 2):
                assert poison.gives_up(topic, delivered, limit) is (delivered >= limit), (topic, delivered, limit)


def test_every_other_kind_is_never_given_up() -> None:
    for limit in (1, 2, poison.MAX_DELIVERIES):
        for topic in NEVER_GIVEN_UP:
            for delivered in [None, *range(0, 3 * limit + 2), 10**6]:
                assert not poison.gives_up(topic, delivered, limit), (topic, delivered, limit)


def test_the_default_bound_rides_out_about_ninety_seconds_of_redeliveries() -> None:
    """The first delivery plus one per ack wait: the last try comes ~90 s after the first."""
    assert (poison.MAX_DELIVERIES - 1) * ACK_WAIT_S >= 90 > (poison.MAX_DELIVERIES - 2) * ACK_WAIT_S
    topic = CONFIG_ANSWERS[0]
    assert not poison.gives_up(topic, poison.MAX_DELIVERIES - 1) and poison.gives_up(topic, poison.MAX_DELIVERIES)


def test_one_brokers_retry_schedule_backs_off_to_one_ack_wait_and_ends_at_the_ride_out() -> None:
    """cloud/remote_config/inbox.py retries itself on one broker (mosquitto delivers again only on the next
    connection): 0.5, 1, 2, 4 s, then one ack wait, never past the ride-out; none once it is over."""
    assert [poison.retry_delay(n, 0.0, 90.0) for n in (1, 2, 3, 4, 5, 6, 20)] == [0.5, 1.0, 2.0, 4.0, ACK_WAIT_S,
                                                                                  ACK_WAIT_S, ACK_WAIT_S]
    assert poison.retry_delay(7, 88.5, 90.0) == 1.5  # the last try comes at the ride-out, not after it
    assert poison.retry_delay(7, 90.0, 90.0) is None
    assert poison.retry_delay(1, 91.0, 90.0) is None
    # the default: a message failing every time is tried over ~90 s, then set aside
    t, tries = 0.0, 0
    while True:
        tries += 1
        d = poison.retry_delay(tries, t)
        if d is None:
            break
        t += d
    assert t == poison.RIDE_OUT_S and 15 <= tries <= 25
    try:
        poison.retry_delay(0, 0.0)
    except ValueError:
        pass
    else:
        raise AssertionError("retry_delay(0, …) must refuse: it is asked after a failed try")
