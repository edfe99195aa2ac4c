"""Acknowledged means durable, on the paths the SIGKILL test does not reach (real mosquitto):

- main-lane telemetry of a gateway not enrolled yet (parked until its birth) survives a crash of the
  ingester: it is on disk, and stored once the birth comes after the restart;
- an event is acknowledged only after the alarm engine processed it: while the engine holds it, a
  crash leaves it with the broker, which delivers it again to the next ingester.

A "crash" here drops the MQTT connections and abandons the service without its clean stop (no
flush, no final save), which is what the broker and the disk see of a `kill -9`.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cloud.alarms.config import AlarmSiteConfig
from cloud.alarms.directory import RegistryDirectory
from cloud.alarms.engine import AlarmEngine
from cloud.alarms.store import AlarmStore
from cloud.ingest.mqtt import MAIN, SAFETY
from cloud.ingest.parked import ParkedStore
from cloud.ingest.safety_queue import QueueSafetySink
from cloud.ingest.service import IngestConfig, IngestService
from cloud.site_config import load_site
from cloud.state.registry import Registry
from cloud.tsdb.sqlite import SqliteSink
from simulators.fleet import FleetConfig, FleetModel, site_file_text
from tests.integration.ingest_support import DEMO_SITE, Publisher, expected_points
from tests.integration.test_ingest_lanes import T_SPK1_EVENT, waterflow_event
from tests.polling import wait_until

# Readings from an hour ago: inside the ingester's time policy (docs/wire.md), so stored as sent.
SIM_START = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)

pytestmark = pytest.mark.integration


def config(tmp: Path, broker: str, client_id: str) -> IngestConfig:
    return IngestConfig(broker=broker, tsdb=f"sqlite:///{tmp}/ts.db", state_db=f"sqlite:///{tmp}/state.db",
                        spool_dir=str(tmp / "spool"), client_id=client_id, batch_interval=0.2, tune_gc=False)


def crash(svc: IngestService) -> None:
    """What the broker and the disk see of a kill -9: connections gone, nothing flushed or saved."""
    svc.client.stop()
    svc._stop.set()


def test_parked_telemetry_survives_a_crash_and_is_stored_after_the_birth(tmp_path: Path, mosquitto: Any) -> None:
    site_file = tmp_path / "open.yaml"
    site_file.write_text("site: open-site\nauto_enrol: true\n")  # no gateways: they enrol by birth
    reg = Registry(f"sqlite:///{tmp_path}/state.db")
    reg.register_site(load_site(site_file))
    reg.close()
    model = FleetModel(FleetConfig(site="open-site", gateways=1, ticks=5, sim_start=SIM_START))
    msgs = list(model.messages())
    births = [(t, p) for t, p, retain in msgs if retain]
    rest = [(t, p) for t, p, retain in msgs if not retain and "/telemetry" in t]

    svc = IngestService(config(tmp_path, mosquitto.url, "park-test"), safety=QueueSafetySink()).start()
    pub = Publisher(mosquitto.port, "gw-0001-test")
    for t, p in rest:  # telemetry before any birth: parked
        pub.send(t, p)
    pub.wait()
    wait_until(lambda: svc.stats()["parked"] == len(rest), 10, "the telemetry to be parked")
    wait_until(lambda: svc.stats()["acks_waiting"] == 0, 10, "the acknowledgements")
    crash(svc)

    again = IngestService(config(tmp_path, mosquitto.url, "park-test"), safety=QueueSafetySink())
    assert again.stats()["parked"] == len(rest)  # back from disk, not from the broker
    again.start()
    try:
        for t, p in births:
            pub.send(t, p, retain=True)
        pub.close()
        wait_until(lambda: again.stats()["parked"] == 0, 10, "the birth to release the parked telemetry")
        assert again.flush(10)
        st = again.stats()
        assert st["lane_received"][MAIN] == 0  # the broker had nothing left to deliver: all was acked
        assert st["dead_letters"] == {}, st
        stored = {(r["measurement"], r["field"], frozenset(r["tags"].items()), r["ts"])
                  for r in SqliteSink(tmp_path / "ts.db").query() if not r["measurement"].endswith("health")}
        enrolled = tmp_path / "enrolled.yaml"  # what the birth registered, as a site file
        enrolled.write_text(site_file_text("open-site", model.topology))
        assert stored == expected_points(rest, load_site(enrolled)).keys()
    finally:
        again.stop()
    assert not ParkedStore(tmp_path / "parked.db").load()  # handled and durable: removed from disk


def engine_for(tmp: Path, name: str, registry: Registry) -> AlarmEngine:
    cfg = AlarmSiteConfig.model_validate({"site": "demo-estate", "name": "Demo", "people": []})
    return AlarmEngine(AlarmStore(f"sqlite:///{tmp / name}"), RegistryDirectory(registry), [cfg])


def test_an_event_is_acknowledged_only_after_the_alarm_engine_processed_it(tmp_path: Path, mosquitto: Any) -> None:
    reg = Registry(f"sqlite:///{tmp_path}/state.db")
    reg.register_site(load_site(DEMO_SITE))
    stuck = engine_for(tmp_path, "alarms1.db", reg)  # never started: holds what it is given
    svc = IngestService(config(tmp_path, mosquitto.url, "engine-ack"), safety=stuck, engine=stuck).start()
    pub = Publisher(mosquitto.port, "gw-shelter-a-test")
    pub.send(T_SPK1_EVENT, waterflow_event(1))
    pub.wait()
    wait_until(lambda: svc.stats()["accepted"] == 1, 10, "the event to be accepted")
    wait_until(lambda: svc.storage.pending == 0, 10, "storage (nothing to store for an event)")
    time.sleep(0.5)  # an acknowledgement sent too early would be on its way by now
    assert svc.stats()["acks_waiting"] == 1 and stuck.backlog() == 1
    crash(svc)

    live = engine_for(tmp_path, "alarms2.db", reg).start()
    processed = threading.Event()
    again = IngestService(config(tmp_path, mosquitto.url, "engine-ack"), safety=live, engine=live).start()
    try:
        wait_until(lambda: again.stats()["lane_received"][SAFETY] == 1, 10, "the broker to deliver the event again")
        live.after(processed.set)
        assert processed.wait(10)
        assert live.counters["messages"] == 1 and again.stats()["accepted"] == 1  # not dropped as a replay
        wait_until(lambda: again.stats()["acks_waiting"] == 0, 10, "the acknowledgement")
    finally:
        again.stop()
        live.stop()
        pub.close()
    crash_check = IngestService(config(tmp_path, mosquitto.url, "engine-ack"), safety=QueueSafetySink()).start()
    try:
        time.sleep(1.0)
        assert crash_check.stats()["received"] == 0  # acknowledged now: nothing comes a third time
    finally:
        crash_check.stop()
        reg.close()
