"""The uplink against a real mosquitto: PUBACK deletes, retained birth and last will, live first."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from device_profiles import wire
from edge_agent.config import Uplink as UplinkCfg
from edge_agent.outbox import New, Outbox
from edge_agent.uplink import Uplink
from tests.integration.edge.helpers import GW, SITE, Collector

pytestmark = pytest.mark.integration


def tele(dev: str) -> New:
    return New(
        wire.topic(SITE, GW, wire.Kind.TELEMETRY, dev),
        lambda seq: wire.encode(wire.Telemetry(ts=wire.now(), seq=seq, values={"x": seq})),
        dev,
    )


def test_backlog_in_order_live_first_and_acks_delete(tmp_path: Path, mosquitto) -> None:  # type: ignore[no-untyped-def]
    col = Collector(mosquitto.port, "uplink-test")
    o = Outbox(tmp_path / "o.db")
    o.put_many([tele("d1") for _ in range(3000)])  # a backlog from before
    up = Uplink(UplinkCfg(url=f"mqtt://127.0.0.1:{mosquitto.port}", window=50), SITE, GW, o)
    up.start()
    try:
        deadline = time.monotonic() + 10
        while not up.connected and time.monotonic() < deadline:
            up.pump()
            time.sleep(0.01)
        up.pump()
        live = o.put(tele("d1"))  # a reading taken now
        up.offer([live])
        assert up.wait_idle(30), "outbox did not drain"
        assert o.count == 0
        col.wait(lambda: len(col.of(wire.Kind.TELEMETRY, "d1")) >= 3001, what="all messages")
        seqs = [m.seq for m in col.of(wire.Kind.TELEMETRY, "d1")]
        live_at = seqs.index(3001)
        assert live_at < 3000 - 100, f"live reading arrived at position {live_at}"
        backlog = [s for s in seqs if s != 3001]
        assert backlog == list(range(1, 3001))
        st = col.wait(lambda: col.of(wire.Kind.STATUS), what="birth")
        assert st[-1].state == "online"
    finally:
        up.client.loop_stop()  # vanish without DISCONNECT: the broker publishes the last will
        sock = up.client.socket()
        if sock is not None:
            sock.close()
        col.wait(lambda: col.of(wire.Kind.STATUS)[-1].state == "offline", what="last will")
        col.close()
