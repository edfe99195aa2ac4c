"""One paho MQTT client for the cloud's small service connections (commands, remote config):
connect in the background, subscribe on every (re)connect, hand messages to one callback.
The ingester has its own, faster clients (cloud/ingest/)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

from device_profiles import wire


def start_client(url: str, name: str, subscriptions: list[tuple[str, int]], on_message: Callable[..., None],
                 username: str | None = None, password: str | None = None,
                 on_connected: Callable[[], None] | None = None, wait_s: float = 10.0,
                 client_id: str | None = None, manual_ack: bool = False,
                 on_session: Callable[[], None] | None = None) -> Any:
    """A started paho client (MQTT 3.1.1, reconnecting); waits up to `wait_s` for the first
    connection's subscriptions to be granted (before that, what is published is not routed to this
    client: a caller that returned at CONNACK missed its first messages). `on_connected` runs in a
    thread of its own after every successful connection.

    With a `client_id` the session is persistent (clean session off): the broker keeps the
    subscriptions and queues QoS 1 messages while the client is away, and one not acknowledged is
    delivered again on the next connection. Without one, a fresh random id and a clean session.
    `manual_ack`: the caller acknowledges each message (`client.ack(mid, qos)`) once it is handled;
    `on_session` runs on paho's thread at each connection, before the subscriptions, so the caller
    knows which connection a message came on (an ack meant for a connection since lost is not sent)."""
    import paho.mqtt.client as mqtt

    u = urlparse(url)
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"{name}-{wire.new_id()[:8]}",
                    protocol=mqtt.MQTTv311, clean_session=client_id is None, manual_ack=manual_ack)
    if username:
        c.username_pw_set(username, password)
    connected = threading.Event()

    def on_connect(cl: Any, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
        if getattr(rc, "is_failure", False):
            return
        if on_session is not None:
            on_session()
        cl.subscribe(subscriptions)
        if on_connected is not None:
            threading.Thread(target=on_connected, name=f"{name}-connected", daemon=True).start()

    c.on_connect = on_connect
    c.on_subscribe = lambda *_a: connected.set()
    c.on_message = on_message
    c.reconnect_delay_set(1, 10)
    c.connect_async(u.hostname or "127.0.0.1", u.port or 1883, keepalive=30)
    c.loop_start()
    connected.wait(wait_s)
    return c
