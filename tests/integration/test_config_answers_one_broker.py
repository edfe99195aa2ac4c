"""Remote configuration's answers through one real mosquitto are acknowledged only once recorded
(cloud/remote_config/inbox.py): none is lost to a store that is briefly away, to a `cloud serve` that
stops with one in hand, or to the time it was away; one that can never be recorded is set aside as a
dead letter after the ride-out and does not hold the answers after it back.

The store failure is real: another connection holds the SQLite database's exclusive lock (as a long
write or a backup would), so recording fails with "database is locked". The gateway's answers are
written by hand from docs/wire.md and published with QoS 1 as a gateway does. Same idea on a NATS
cluster: tests/integration/test_nats_config_set_aside.py.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from sqlalchemy import create_engine

from cloud.ingest.dead_letter import DeadLetterStore
from cloud.ingest.service import IngestConfig, IngestService
from cloud.remote_config.inbox import SetAside
from cloud.remote_config.service import ConfigService
from cloud.remote_config.store import ConfigStore
from tests.fixtures.servers import Mosquitto, make_mosquitto
from tests.polling import wait_until

pytestmark = [pytest.mark.integration]

SITE, GW = "shelter-a", "gw1"
TOPIC = f"sw/v1/{SITE}/{GW}/config-result"
CLIENT_ID = "sw-cloud-config"  # what `cloud serve` uses: `<its client id>-config`


def result(version: int, second: int) -> bytes:
    """A `config-result` as docs/wire.md shows it."""
    return (b'{"v": 1, "ts": "2026-11-25T04:00:%02d.900Z", "version": %d, "status": "applied", "running": %d,'
            b' "detail": "1 device(s) answered (2.1 s)", "devices": {"chg1": "ok"}}' % (second, version, version))


class Gateway:
    """Publishes as the gateway does: QoS 1, waiting for the broker's PUBACK."""

    def __init__(self, broker: Mosquitto) -> None:
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="edge-gw1")
        self.c.connect("127.0.0.1", broker.port)
        self.c.loop_start()

    def send(self, payload: bytes) -> None:
        self.c.publish(TOPIC, payload, qos=1).wait_for_publish(10)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


class Lock:
    """Another connection holding the database's exclusive lock: every write (and read) fails meanwhile."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, isolation_level=None)

    def __enter__(self) -> Lock:
        self.db.execute("BEGIN EXCLUSIVE")
        return self

    def release(self) -> None:
        if self.db.in_transaction:
            self.db.execute("COMMIT")

    def __exit__(self, *exc: object) -> None:
        self.release()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    m = make_mosquitto(tmp_path).start()
    yield m
    m.stop()


def store(tmp: Path) -> ConfigStore:
    # a short busy timeout: a locked database fails a try in 0.1 s instead of SQLite's default 5 s
    return ConfigStore(create_engine(f"sqlite:///{tmp}/config.db", connect_args={"timeout": 0.1}))


def service(tmp: Path, broker: Mosquitto, set_aside: SetAside | None = None,
            ride_out_s: float | None = None) -> ConfigService:
    svc = ConfigService(store(tmp), broker.url, {}, lambda site: [GW] if site == SITE else [],
                        client_id=CLIENT_ID, set_aside=set_aside)
    if ride_out_s is not None:
        svc.inbox.ride_out_s = ride_out_s
    svc.start()
    wait_until(lambda: svc.connected, 10, "the config service's connection")
    return svc


def recorded(svc: ConfigService, version: int) -> bool:
    try:
        st = svc.store.state(SITE, GW)
    except Exception:  # the database is still locked
        return False
    return st is not None and st.last_version == version and st.last_status == "applied"


def nothing_comes_again(tmp: Path, broker: Mosquitto) -> None:
    """A new service on the same session: nothing acknowledged before is delivered again."""
    svc = service(tmp, broker)
    try:
        time.sleep(1.5)  # a persistent session's queue is sent at once on connection
        assert svc.inbox.received == 0
    finally:
        svc.stop()


def test_an_answer_the_store_could_not_record_is_tried_again_until_it_is(tmp_path: Path,
                                                                        broker: Mosquitto) -> None:
    svc = service(tmp_path, broker)
    gw = Gateway(broker)
    try:
        with Lock(tmp_path / "config.db") as lock:
            gw.send(result(7, 4))
            wait_until(lambda: svc.inbox.retries >= 3, 20, "three failed tries of the answer")
            lock.release()
            wait_until(lambda: recorded(svc, 7), 20, "the answer recorded once the store is back")
        gw.send(result(8, 9))  # the next one is not held back
        wait_until(lambda: recorded(svc, 8), 10, "the next answer")
        assert [e.version for e in svc.store.events(SITE, GW) if e.what == "applied"] == [8, 7]
    finally:
        svc.stop()
        gw.close()
    nothing_comes_again(tmp_path, broker)  # both were acknowledged once recorded, and only then


def test_an_answer_in_hand_when_the_service_stops_and_those_sent_while_it_is_away_come_to_the_next(
        tmp_path: Path, broker: Mosquitto) -> None:
    svc = service(tmp_path, broker)
    gw = Gateway(broker)
    try:
        with Lock(tmp_path / "config.db"):
            gw.send(result(7, 4))
            wait_until(lambda: svc.inbox.retries >= 1, 20, "a failed try of the answer")
            svc.stop()  # `cloud serve` stops (or dies) with the answer not recorded: not acknowledged
        gw.send(result(8, 9))  # the cloud is away
        svc = service(tmp_path, broker)
        wait_until(lambda: recorded(svc, 8), 20, "both answers, from the broker's queue for the session")
        assert sorted(e.version for e in svc.store.events(SITE, GW) if e.what == "applied") == [7, 8]
    finally:
        svc.stop()
        gw.close()
    nothing_comes_again(tmp_path, broker)


def test_an_answer_that_can_never_be_recorded_is_set_aside_after_the_ride_out(tmp_path: Path,
                                                                             broker: Mosquitto) -> None:
    # set aside by the ingest service's dead letters, as `cloud serve` wires it (not started: only its stores)
    ingest = IngestService(IngestConfig(broker=broker.url, tsdb=f"sqlite:///{tmp_path}/ts.db",
                                        state_db=f"sqlite:///{tmp_path}/state.db", spool_dir=str(tmp_path / "spool")))
    svc = service(tmp_path, broker, ingest.set_aside, ride_out_s=2.0)
    gw = Gateway(broker)
    try:
        with Lock(tmp_path / "config.db"):
            gw.send(result(7, 4))
            t0 = time.monotonic()
            wait_until(lambda: svc.inbox.set_aside_count == 1, 20, "the answer set aside")
            assert time.monotonic() - t0 >= 1.9  # tried for the whole ride-out first
            assert svc.inbox.retries >= 3
        kept = DeadLetterStore(tmp_path / "dead-letters.db").recent()  # on disk before it was acknowledged
        assert [(k.topic, k.reason, k.payload) for k in kept] == [(TOPIC, "handler_failed", result(7, 4))]
        assert "locked" in kept[0].detail and "tries" in kept[0].detail
        assert ingest.pipeline.stats.dead["handler_failed"] == 1  # counted (metrics)
        gw.send(result(8, 9))  # the answers after it are not held back
        wait_until(lambda: recorded(svc, 8), 10, "the next answer")
    finally:
        svc.stop()
        gw.close()
        ingest.dead.close()
    nothing_comes_again(tmp_path, broker)  # set aside means acknowledged: not delivered again
