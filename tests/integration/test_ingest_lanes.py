"""The safety lane against real brokers: an event overtakes a telemetry backlog queued in the
broker, nothing of the backlog is lost, and both lanes work on the embedded amqtt (MQTT 3.1.1).

Order is judged by counters, never by the clock: the safety sink records how many telemetry
messages it had been handed when the event reached it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cloud.ingest.mqtt import MAIN, SAFETY
from cloud.ingest.service import IngestConfig, IngestService
from cloud.ingest.timepolicy import TimePolicy
from cloud.safety import SafetyMessage
from cloud.site_config import load_site
from cloud.state.registry import Registry
from cloud.tsdb.sqlite import SqliteSink
from device_profiles import wire
from tests.integration.ingest_support import DEMO_SITE, Publisher, wait_for
from tests.unit.test_pipeline import T_CHG1, good

pytestmark = [pytest.mark.integration]

T_SPK1_EVENT = wire.topic("demo-estate", "gw-shelter-a", wire.Kind.EVENT, "spk1")
T_STATUS = wire.topic("demo-estate", "gw-shelter-a", wire.Kind.STATUS)
BACKLOG = 40_000


class OrderSink:
    """SafetySink that notes, for every non-telemetry message, how much telemetry came before it."""

    def __init__(self) -> None:
        self.telemetry = 0
        self.others: list[tuple[SafetyMessage, int]] = []

    def put(self, msg: SafetyMessage) -> None:
        if msg.kind is wire.Kind.TELEMETRY:
            self.telemetry += 1
        else:
            self.others.append((msg, self.telemetry))

    def event_ids(self) -> dict[str, int]:
        return {m.payload.id: before for m, before in self.others if m.kind is wire.Kind.EVENT}


def make_service(tmp: Path, broker: str, sink: Any, **kw: Any) -> IngestService:
    cfg = IngestConfig(broker=broker, tsdb=f"sqlite:///{tmp}/ts.db", state_db=f"sqlite:///{tmp}/state.db",
                       spool_dir=str(tmp / "spool"), client_id="ingest-lanes", batch_interval=0.2,
                       tune_gc=False, time_policy=TimePolicy(past_s=None), **kw)  # replays 2026-03-02
    reg = Registry(cfg.state_db)
    reg.register_site(load_site(DEMO_SITE))
    reg.close()
    return IngestService(cfg, safety=sink)


def waterflow_event(seq: int) -> bytes:
    return wire.encode(wire.Event(ts=wire.now(), seq=seq, id=wire.new_id(), kind="state", severity="critical",
                                  point="waterflow", value=True, previous=False, text="water flowing"))


def run_backlog(tmp: Path, mosquitto: Any, mqtt_client: str, lanes: bool) -> tuple[OrderSink, dict[str, str], Any]:
    """Sessions exist (one start/stop), the ingester is down while BACKLOG telemetry and one event
    queue in the broker; then it starts and a second event is published live."""
    first = make_service(tmp, mosquitto.url, OrderSink(), mqtt_client=mqtt_client, safety_lane=lanes).start()
    assert first.client.wait_connected(10)
    first.stop()

    pub = Publisher(mosquitto.port, client_id="gw-shelter-a-test")
    for seq in range(1, BACKLOG + 1):
        pub.send(T_CHG1, good(seq))
        if seq % 2000 == 1999:
            pub.wait()
    queued = waterflow_event(1)
    pub.send(T_SPK1_EVENT, queued)
    pub.wait()

    sink = OrderSink()
    svc = make_service(tmp, mosquitto.url, sink, mqtt_client=mqtt_client, safety_lane=lanes).start()
    try:
        assert svc.client.wait_connected(10)
        live = waterflow_event(2)
        pub.send(T_SPK1_EVENT, live)
        pub.close()
        ids = {"queued": wire.decode(wire.Kind.EVENT, queued).id, "live": wire.decode(wire.Kind.EVENT, live).id}
        wait_for(lambda: sink.telemetry >= BACKLOG and len(sink.event_ids()) == 2, 120, "backlog and events")
        assert svc.flush(60)
        stats = svc.stats()
    finally:
        svc.stop()
    return sink, ids, stats


@pytest.mark.slow
@pytest.mark.parametrize("mqtt_client", ["gmqtt", "paho"])
def test_event_overtakes_a_queued_telemetry_backlog(tmp_path: Path, mosquitto: Any, mqtt_client: str) -> None:
    sink, ids, stats = run_backlog(tmp_path, mosquitto, mqtt_client, lanes=True)
    got = sink.event_ids()
    # Both events reached the alarm side while most of the backlog was still in the broker.
    assert got[ids["queued"]] < BACKLOG // 2, got
    assert got[ids["live"]] < BACKLOG // 2, got
    assert stats["lane_received"][SAFETY] == 2  # the events came on the safety lane ...
    assert stats["lane_received"][MAIN] == BACKLOG  # ... the telemetry on the main lane
    assert stats["connected_lanes"] == [MAIN, SAFETY]
    # The backlog is stored, each message once.
    assert stats["duplicates"] == 0 and stats["accepted"] == BACKLOG + 2
    assert len(SqliteSink(tmp_path / "ts.db").query("charger_port")) == BACKLOG


@pytest.mark.slow
def test_one_lane_control_the_event_waits_behind_the_backlog(tmp_path: Path, mosquitto: Any) -> None:
    """The same run on one connection: the queued event is delivered after the whole backlog.
    Shows the test above measures the lanes, not luck."""
    sink, ids, stats = run_backlog(tmp_path, mosquitto, "gmqtt", lanes=False)
    assert sink.event_ids()[ids["queued"]] == BACKLOG
    assert stats["connected_lanes"] == [MAIN] and stats["accepted"] == BACKLOG + 2


@pytest.fixture(params=["in-process", "amqtt-process"])
def amqtt_any(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """The demo's embedded broker (`cloud.broker.EmbeddedBroker`, in this process) and the same
    amqtt as a separate server process."""
    if request.param == "in-process":
        from cloud.broker import EmbeddedBroker

        b = EmbeddedBroker().start()
        yield b
        b.stop()
    else:
        yield request.getfixturevalue("amqtt_broker")


@pytest.mark.parametrize("mqtt_client", ["gmqtt", "paho"])
def test_both_lanes_on_embedded_amqtt(tmp_path: Path, amqtt_any: Any, mqtt_client: str) -> None:
    """amqtt speaks 3.1.1 only: plain filters on two persistent sessions; status and events come on the
    safety lane, telemetry on the main lane."""
    amqtt_broker = amqtt_any
    sink = OrderSink()
    svc = make_service(tmp_path, amqtt_broker.url, sink, mqtt_client=mqtt_client).start()
    try:
        assert svc.client.wait_connected(10)
        assert svc.client.protocol == 4
        assert not any(f.startswith("$share") for f in svc.client.filters())
        assert set(svc.client.filters(SAFETY)) == set(wire.safety_subscriptions())
        pub = Publisher(amqtt_broker.port, client_id="gw-amqtt-lanes")
        pub.send(T_STATUS, wire.encode(wire.Status(ts=wire.now(), state="online")), retain=True)
        for seq in range(1, 21):
            pub.send(T_CHG1, good(seq))
        pub.send(T_SPK1_EVENT, waterflow_event(1))
        pub.close()
        wait_for(lambda: sink.telemetry == 20 and len(sink.others) == 2, 20, "messages via amqtt")
        st = svc.stats()
        assert st["lane_received"] == {MAIN: 20, SAFETY: 2}
        assert {m.kind for m, _ in sink.others} == {wire.Kind.STATUS, wire.Kind.EVENT}
    finally:
        svc.stop()


def test_older_telemetry_arriving_after_an_event_does_not_undo_it(tmp_path: Path) -> None:
    """Lanes reorder: the waterflow event overtakes the telemetry polled just before it. That older
    reading (waterflow false) must not cancel the running retard."""
    from tests.integration.test_alarm_engine import Clock, Rig

    rig = Rig(tmp_path, None, Clock())
    try:
        before = rig.ts()
        rig.at(1.0)
        ev = wire.Event(ts=rig.ts(), seq=2, id=wire.new_id(), kind="state", point="waterflow", value=True,
                        previous=False)
        rig.feed(rig.msg("riser-1", ev))
        rig.feed(rig.tel("riser-1", {"waterflow": False}, seq=1, ts=before))  # late, via the main lane
        rig.at(25.0)
        [a] = rig.alarms("waterflow")
        assert a.active and rig.engine.counters["stale"] == 1
    finally:
        rig.close()
