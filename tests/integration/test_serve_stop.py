"""`cloud serve` stopped (SIGTERM) while a fleet loads it: it exits within 5 s, and nothing is lost.

`shelterwatch cloud serve` runs as a subprocess on a real mosquitto with its default SQLite stores;
a fleet of 40 gateways (160 devices) publishes QoS 1 at up to 2,300 msg/s. Mid-stream the process
gets SIGTERM: it must exit with status 0 within 5 s (systemd's stop timeout is what this is about,
not speed: whatever cannot reach the store in time goes to the disk spool). The fleet carries on
into the broker's queue; a second `cloud serve` on the same data directory drains the spool and the
queue, and then every reading published is in the store, once.
"""

from __future__ import annotations

import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cloud.site_config import load_site
from cloud.tsdb.sqlite import SqliteSink
from simulators.fleet import FleetConfig, FleetModel, FleetResult, publish_fleet, site_file_text
from tests.fixtures.servers import ServerProcess, free_port
from tests.integration.ingest_support import expected_points
from tests.polling import wait_until

# Readings from an hour ago: inside the ingester's time policy (docs/wire.md), so stored as sent.
SIM_START = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)

pytestmark = pytest.mark.integration

STOP_WITHIN_S = 5.0


class Serve(ServerProcess):
    """`shelterwatch cloud serve` as a child process (its port is the web port)."""

    def __init__(self, tmp: Path, broker: str, site: Path) -> None:
        alarms = tmp / "alarms.yaml"
        alarms.write_text("site: fleet\nname: Fleet\npeople: []\n")
        port = free_port()
        argv = [sys.executable, "-m", "shelterwatch.cli", "cloud", "serve", "--site", str(site), "--alarms",
                str(alarms), "--broker", broker, "--data-dir", str(tmp / "data"), "--port", str(port)]
        super().__init__("serve", argv, port, tmp, env={"SHELTERWATCH_SECRET": "s" * 40})

    def timed_stop(self) -> float:
        """SIGTERM; seconds until the process exited (it is killed after 10 s)."""
        t0 = time.monotonic()
        self.stop()
        return time.monotonic() - t0


def test_loaded_serve_stops_within_5_s_and_loses_nothing(tmp_path: Path, mosquitto: Any) -> None:
    model = FleetModel(FleetConfig(site="fleet", gateways=40, sim_start=SIM_START, ticks=80, seed=3))
    site_path = tmp_path / "fleet.yaml"
    site_path.write_text(site_file_text(model.site, model.topology))
    serve = Serve(tmp_path, mosquitto.url, site_path)
    serve.start()
    time.sleep(1.0)  # both lanes subscribed (the sessions exist from here on)
    cfg = FleetConfig(broker=mosquitto.url, site="fleet", gateways=40, sim_start=SIM_START, ticks=80, seed=3,
                      rate=2300.0, duration=None, connections=8, client_prefix="stop-fleet")
    result: list[FleetResult] = []
    pub = threading.Thread(target=lambda: result.append(publish_fleet(cfg, record=True, model=model)))
    pub.start()
    try:
        time.sleep(5.0)
        assert pub.is_alive(), "the fleet finished before the stop: no load to stop under"
        took = serve.timed_stop()
        assert serve.proc is not None and serve.proc.returncode == 0, serve.log()
        assert took <= STOP_WITHIN_S, f"stop took {took:.1f} s\n{serve.log()}"
        pub.join(120)
        assert result, "the fleet did not finish"
        serve.start()  # drains the spool and the broker's queue
        expected = expected_points(result[0].sent, load_site(site_path))
        db = tmp_path / "data" / "ts.db"

        def stored() -> set[Any]:
            sink = SqliteSink(db)
            try:
                return {(r["measurement"], r["field"], frozenset(r["tags"].items()), r["ts"]) for r in sink.query()}
            finally:
                sink.close()

        try:
            wait_until(lambda: expected.keys() <= stored(), 60, "every reading in the store", every=2.0)
        except AssertionError:
            missing = expected.keys() - stored()
            raise AssertionError(f"{len(missing)} of {len(expected)} values lost\n{serve.log()}") from None
        assert serve.timed_stop() <= STOP_WITHIN_S
    finally:
        serve.stop(kill=True)
        pub.join(30)
