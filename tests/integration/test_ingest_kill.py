"""`kill -9` of the ingester mid-stream loses no reading and stores none twice.

A real mosquitto (persistent sessions), the ingester as a subprocess (`shelterwatch cloud ingest`,
SQLite store), and a fleet of 40 devices publishing QoS 1 telemetry with known sequence numbers at
1,000 msg/s. The ingester is killed with SIGKILL three times while the stream flows (each time after
it has taken messages since its start) and restarted at once. Afterwards, per device, the readings
in the store must be exactly the ones published: every sequence number once, none missing. The
store is keyed by (measurement, series, field, time), so a redelivered reading overwrites itself;
the test also counts rows against distinct keys (cloud/tsdb/sqlite.py keys samples by series,
field and time).

Before the durability point (main at 1ddfaea) this lost 300-500 readings per kill: the broker had
PUBACKs for the storage batch still in memory.
"""

from __future__ import annotations

import sys
import threading
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cloud.site_config import load_site
from cloud.state.registry import Registry
from cloud.tsdb.sqlite import SqliteSink
from device_profiles import wire
from simulators.fleet import FleetConfig, FleetModel, FleetResult, publish_fleet, site_file_text
from tests.fixtures.servers import ServerProcess, free_port
from tests.integration.ingest_support import expected_points
from tests.polling import wait_until

# Readings from an hour ago: inside the ingester's time policy (docs/wire.md), so stored as sent.
SIM_START = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)

pytestmark = [pytest.mark.integration]

SITE = "killsite"
GATEWAYS = 10  # 40 devices
TICKS = 260  # ~10,000 messages
RATE = 1000.0
KILL_AT = (2.0, 4.5, 7.0)  # seconds into the stream


class Ingester(ServerProcess):
    """`shelterwatch cloud ingest` as a child process we start, SIGKILL and start again (its port is
    the metrics port; ready once both lanes are subscribed)."""

    def __init__(self, tmp: Path, broker: str) -> None:
        port = free_port()
        argv = [
            sys.executable, "-m", "shelterwatch.cli", "cloud", "ingest", "--broker", broker,
            "--tsdb", f"sqlite:///{tmp}/ts.db", "--state-db", f"sqlite:///{tmp}/state.db",
            "--spool-dir", str(tmp / "spool"), "--client-id", "kill-test", "--group", "",
            "--metrics-port", str(port),
        ]  # fmt: skip
        super().__init__("ingest", argv, port, tmp, ready=self._subscribed)

    def _subscribed(self) -> None:
        wait_until(lambda: self.metric("connected") == 1.0, 30, "the ingester to subscribe")

    def metric(self, name: str) -> float | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=1) as r:
                text = r.read().decode()
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith(f"shelterwatch_ingest_{name} "):
                return float(line.split()[1])
        return None


def stored_keys(db: Path) -> tuple[set[tuple[str, str, frozenset[tuple[str, str]], int]], int]:
    """Telemetry rows in the SQLite store as expected_points keys, and the number of rows."""
    sink = SqliteSink(db)
    try:
        rows = [r for r in sink.query() if not r["measurement"].endswith("health")]
    finally:
        sink.close()
    keys = {(r["measurement"], r["field"], frozenset(r["tags"].items()), r["ts"]) for r in rows}
    return keys, len(rows)


def test_sigkill_of_the_ingester_loses_nothing_and_stores_nothing_twice(tmp_path: Path, mosquitto: Any) -> None:
    model = FleetModel(FleetConfig(site=SITE, gateways=GATEWAYS, ticks=TICKS, sim_start=SIM_START, seed=7))
    site_file = tmp_path / "site.yaml"
    site_file.write_text(site_file_text(SITE, model.topology, auto_enrol=False))
    site = load_site(site_file)
    reg = Registry(f"sqlite:///{tmp_path}/state.db")
    reg.register_site(site)
    reg.close()

    ing = Ingester(tmp_path, mosquitto.url)
    ing.start()
    cfg = FleetConfig(broker=mosquitto.url, site=SITE, gateways=GATEWAYS, ticks=TICKS, sim_start=SIM_START,
                      seed=7, rate=RATE, duration=None, client_prefix="kill-fleet")
    result: list[FleetResult] = []
    pub = threading.Thread(target=lambda: result.append(publish_fleet(cfg, record=True, model=model)))
    t0 = time.monotonic()
    pub.start()
    taken: list[float] = []
    try:
        for at in KILL_AT:
            time.sleep(max(0.0, t0 + at - time.monotonic()))
            # Killed while it works: it has taken messages since this start.
            taken.append(wait_until(lambda: ing.metric("received_total") or 0.0, 10, "messages before the kill"))
            ing.stop(kill=True)
            ing.start()
        pub.join(60)
        assert result, "the publisher did not finish"
        sent = result[0].sent
        assert result[0].published / result[0].seconds >= 800, result[0]
        expected = expected_points(sent, site)
        db = tmp_path / "ts.db"
        try:
            wait_until(lambda: expected.keys() <= stored_keys(db)[0], 30, "every reading in the store", every=0.5)
        except AssertionError:
            missing = expected.keys() - stored_keys(db)[0]
            raise AssertionError(f"{len(missing)} of {len(expected)} values not stored\n{ing.log()}") from None
    finally:
        ing.stop()
        pub.join(30)

    keys, n_rows = stored_keys(db)
    assert n_rows == len(keys)  # one row per (measurement, series, field, time): nothing stored twice
    # Per device: the sequence numbers stored are the ones published.
    seq_of: dict[tuple[str, int], int] = {}
    published: dict[str, set[int]] = {}
    for topic, payload in sent:
        t = wire.parse_topic(topic)
        if t.kind in wire.TELEMETRY_KINDS and t.device:
            msg = wire.decode(t.kind, payload)
            seq_of[(t.device, round(msg.ts.timestamp() * 1000))] = msg.seq
    for _m, _f, tags, ts in expected:
        dev = dict(tags)["device"]
        published.setdefault(dev, set()).add(seq_of[(dev, ts)])
    stored: dict[str, set[int]] = {}
    for _m, _f, tags, ts in keys:
        dev = dict(tags)["device"]
        stored.setdefault(dev, set()).add(seq_of[(dev, ts)])
    lost = {d: sorted(s - stored.get(d, set()))[:10] for d, s in published.items() if s - stored.get(d, set())}
    extra = {d: sorted(s - published.get(d, set()))[:10] for d, s in stored.items() if s - published.get(d, set())}
    assert not lost and not extra, f"lost {lost} extra {extra}"
    assert keys == expected.keys()
    assert len(published) == GATEWAYS * 4 and all(taken), taken
