"""Remote configuration's answers from one broker (mosquitto), acknowledged only once recorded.

A gateway sends its `config-result` and `config-running` once (QoS 1); the broker forgets one as soon
as the cloud acknowledges it. paho acknowledges on receipt by default, so an answer whose recording
failed (the database briefly away, a bug for one message) or that was in hand when `cloud serve`
died was lost: the config page showed "sent; waiting for the gateway" for ever. On a NATS cluster the
ingester already acknowledges only after the answer was recorded (cloud/remote_config/service.py);
this is the same rule on one broker, where the broker gives an unacknowledged message again only on
the next connection of the same persistent session:

* messages are handled in arrival order on one worker thread (never paho's: a retry must not stop
  the network loop, and PUBACKs go out in the order the messages came, as MQTT 3.1.1 asks);
* a handler that raises is tried again on the schedule of cloud/ingest/poison.py (`retry_delay`,
  ~90 s in all, backing off); after that the message is set aside as a dead letter (`set_aside`)
  and acknowledged. Until then it is not acknowledged: if the process stops, the broker delivers
  it again on the next connection (the session is persistent, cloud/paho_client.py);
* an acknowledgement meant for a connection that has since dropped is not sent: the broker has
  already queued the message again, and the packet id may now name another message.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cloud.ingest import poison

log = logging.getLogger(__name__)

SetAside = Callable[[str, bytes, str, Exception], None]  # (topic, payload, detail, error): kept as dead letter


@dataclass(frozen=True, slots=True)
class _Msg:
    client: Any
    session: int
    topic: str
    payload: bytes
    mid: int
    qos: int


class AckedInbox:
    """paho's `on_message` for a client started with `manual_ack=True` (and `on_session=inbox.session`)."""

    def __init__(self, handle: Callable[[str, bytes], None], set_aside: SetAside | None = None,
                 name: str = "config-inbox", ride_out_s: float = poison.RIDE_OUT_S) -> None:
        self.handle = handle
        self.set_aside = set_aside
        self.name = name
        self.ride_out_s = ride_out_s
        self.received = 0  # messages the broker delivered (tests: what comes again after a restart)
        self.retries = 0  # failed tries that were tried again (metrics, tests)
        self.set_aside_count = 0
        self._session = 0
        self._q: queue.Queue[_Msg | None] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> AckedInbox:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop handling: what is still queued or being retried is not acknowledged (it comes again)."""
        self._stop.set()
        self._q.put(None)
        if self._thread is not None:
            self._thread.join(timeout)

    def session(self) -> None:
        """A new connection (called on paho's thread before it subscribes)."""
        self._session += 1

    def on_message(self, client: Any, _userdata: Any, msg: Any) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:  # not UTF-8: the handler refuses it by name; never stop paho's thread
            topic = msg._topic.decode("utf-8", "replace")
        self.received += 1
        self._q.put(_Msg(client, self._session, topic, bytes(msg.payload), msg.mid, msg.qos))

    def _run(self) -> None:
        while not self._stop.is_set():
            m = self._q.get()
            if m is None or not self._settle(m):
                return
            if m.qos and m.session == self._session:
                m.client.ack(m.mid, m.qos)

    def _settle(self, m: _Msg) -> bool:
        """Handle `m` until it is recorded or set aside (True), or the inbox stops first (False)."""
        first, tries = time.monotonic(), 0
        while True:
            try:
                self.handle(m.topic, m.payload)
                return True
            except Exception as e:
                tries += 1
                delay = poison.retry_delay(tries, time.monotonic() - first, self.ride_out_s)
                if delay is None and self._give_up(m, tries, e):
                    return True
                self.retries += 1
                log.warning("%s: not recorded (try %d), tried again: %s: %s", m.topic, tries, type(e).__name__, e)
                if self._stop.wait(delay if delay is not None else poison.ACK_WAIT_S):
                    return False

    def _give_up(self, m: _Msg, tries: int, error: Exception) -> bool:
        """Set `m` aside; False if even that failed (then it is tried again: never acknowledged unkept)."""
        if self.set_aside is None:
            return False
        detail = f"{type(error).__name__}: {error} (failed at each of {tries} tries)"
        try:
            self.set_aside(m.topic, m.payload, detail, error)
        except Exception:
            log.exception("%s: could not set it aside either; tried again", m.topic)
            return False
        self.set_aside_count += 1
        return True
