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


def test_a_will_after_a_reconnect_wins_over_that_connections_birth(tmp_path: Path, mosquitto) -> None:  # type: ignore[no-untyped-def]
    """The cloud keeps the newest status by its time. A status's time names the connection it is
    about: birth and last will of one connection carry the same time, so the will of the connection
    that just died ties with its birth and (arriving later) wins — also after reconnects, where a
    will armed once at start would be older than every later birth and be ignored."""
    from cloud.site_config import SiteFile
    from cloud.state.registry import Registry

    reg = Registry(f"sqlite:///{tmp_path / 'state.db'}")
    reg.register_site(SiteFile.model_validate({"site": SITE, "gateways": [{"id": GW, "devices": []}]}))
    col = Collector(mosquitto.port, "will-test")
    up = Uplink(UplinkCfg(url=f"mqtt://127.0.0.1:{mosquitto.port}", reconnect_min_s=1, reconnect_max_s=1),
                SITE, GW, Outbox(tmp_path / "o.db"))
    up.start()

    def statuses() -> list[wire.Status]:
        return col.of(wire.Kind.STATUS)

    def apply_all() -> None:
        for st in statuses():
            reg.set_gateway_status(SITE, GW, st)

    try:
        col.wait(lambda: [s for s in statuses() if s.state == "online"], what="first birth")
        mosquitto.stop()  # the link drops; the agent reconnects when the broker is back
        mosquitto.start()
        col.wait(lambda: len([s for s in statuses() if s.state == "online"]) >= 2, timeout=30, what="second birth")
    finally:
        up.client.loop_stop()  # now vanish without DISCONNECT: the broker publishes the will
        sock = up.client.socket()
        if sock is not None:
            sock.close()
    col.wait(lambda: statuses()[-1].state == "offline", timeout=30, what="last will")
    births = [s for s in statuses() if s.state == "online"]
    will = statuses()[-1]
    assert will.ts == births[-1].ts > births[0].ts
    apply_all()
    g = reg.gateway(SITE, GW)
    assert g is not None and g.online is False and g.status_reason == "connection lost"
    col.close()
    reg.close()
