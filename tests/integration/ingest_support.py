"""Helpers for the ingest integration tests: run an ingester, publish as gateways, compute what
the store must hold from what was published (through the profile's Mapping, independently of the
ingester's cached fast path)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from cloud.ingest.safety_queue import QueueSafetySink
from cloud.ingest.service import IngestConfig, IngestService
from cloud.ingest.timepolicy import TimePolicy
from cloud.site_config import SiteFile, load_site
from device_profiles import wire
from device_profiles.loader import get_profile
from device_profiles.timeseries import Mapping
from simulators.fleet import FleetConfig, FleetResult, publish_fleet
from tests.polling import wait_until

DEMO_SITE = Path(__file__).resolve().parents[2] / "cloud" / "sites" / "demo-estate.yaml"
SIM_START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)

Key = tuple[str, str, frozenset[tuple[str, str]], int]  # measurement, field, tags, ts_ms


def expected_points(sent: list[tuple[str, bytes]], site: SiteFile) -> dict[Key, Any]:
    """What the store must hold after these messages: telemetry of registered devices, once per
    (device, seq)."""
    gw_labels = {g.id: dict(g.labels) for g in site.gateways}
    devs = {d.id: (g.id, d) for g in site.gateways for d in g.devices}
    seen: set[tuple[str, int]] = set()
    out: dict[Key, Any] = {}
    for topic, payload in sent:
        t = wire.parse_topic(topic)
        if t.kind not in wire.TELEMETRY_KINDS or t.device not in devs:
            continue
        gw, d = devs[t.device]
        if gw != t.gateway:
            continue
        msg = wire.decode(t.kind, payload)
        if (t.device, msg.seq) in seen:
            continue
        seen.add((t.device, msg.seq))
        base = {**gw_labels[gw], **d.labels, "site": site.site, "gateway": gw, "device": d.id}
        ts = round(msg.ts.timestamp() * 1000)
        for row in Mapping(get_profile(d.profile)).rows(msg.values, base, dict(d.instance_labels)):
            tags = frozenset(row.tags.items())
            for f, v in row.fields.items():
                out[(row.measurement, f, tags, ts)] = v
    return out


@contextmanager
def running_ingester(
    tmp: Path, broker: str, tsdb: str, site_file: Path | None = DEMO_SITE, **kw: Any
) -> Iterator[tuple[IngestService, QueueSafetySink]]:
    # The fleet replays SIM_START (a fixed day of 2026): judge only the future side of the time policy.
    kw.setdefault("time_policy", TimePolicy(past_s=None))
    cfg = IngestConfig(
        broker=broker,
        tsdb=tsdb,
        state_db=f"sqlite:///{tmp}/state.db",
        spool_dir=str(tmp / "spool"),
        client_id=f"ingest-test-{tmp.name}",
        batch_interval=0.2,
        **kw,
    )
    if site_file is not None:
        from cloud.state.registry import Registry

        reg = Registry(cfg.state_db)
        reg.register_site(load_site(site_file))
        reg.close()
    safety = QueueSafetySink()
    svc = IngestService(cfg, safety=safety).start()
    assert svc.client.wait_connected(10), "ingester did not subscribe"
    try:
        yield svc, safety
    finally:
        svc.stop()


wait_for = wait_until  # the name the ingest tests use


def publish_demo_hour(broker: str, svc: IngestService, client_prefix: str) -> FleetResult:
    """Publish a simulated hour of the demo estate as its gateways (1200 ticks of 3 s from SIM_START,
    every message recorded in the result) and wait until the ingester received and stored all of it."""
    cfg = FleetConfig(
        broker=broker,
        site_file=str(DEMO_SITE),
        rate=0,
        duration=None,
        ticks=1200,
        tick_s=3.0,
        sim_start=SIM_START,
        client_prefix=client_prefix,
    )
    res = publish_fleet(cfg, record=True)
    wait_for(lambda: svc.stats()["received"] >= res.published, 60, "ingester to receive everything")
    assert svc.flush(60)
    return res


class Publisher:
    """A wire-level publisher acting as a gateway (QoS 1, waits for every PUBACK)."""

    def __init__(self, broker_port: int, client_id: str = "test-gw") -> None:
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
        self.c.max_inflight_messages_set(1000)
        self.c.max_queued_messages_set(0)
        self.c.connect("127.0.0.1", broker_port)
        self.c.loop_start()
        self.infos: list[mqtt.MQTTMessageInfo] = []

    def send(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.infos.append(self.c.publish(topic, payload, qos=1, retain=retain))

    def wait(self) -> None:
        for i in self.infos:
            i.wait_for_publish(30)
        self.infos = []

    def close(self) -> None:
        self.wait()
        self.c.disconnect()
        self.c.loop_stop()


def vm_points(export: list[dict[str, Any]]) -> dict[Key, float]:
    """VictoriaMetrics export → the same keys (metric name is `<measurement>_<field>`)."""
    out: dict[Key, float] = {}
    for series in export:
        labels = dict(series["metric"])
        name = labels.pop("__name__")
        labels.pop("db", None)
        for ts, v in zip(series["timestamps"], series["values"], strict=True):
            out[(name, "", frozenset(labels.items()), ts)] = v
    return out
