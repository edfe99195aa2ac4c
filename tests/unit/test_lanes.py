"""The two ingest lanes' topic split (pure: no broker)."""

from __future__ import annotations

import pytest

from cloud.ingest.mqtt import MAIN, SAFETY, BaseIngestClient
from device_profiles import wire


def kinds(filters: list[str]) -> set[wire.Kind]:
    """Which kinds a list of filters matches, judged by a concrete topic of each kind."""
    out = set()
    for kind in wire.Kind:
        if kind is wire.Kind.CMD:
            continue
        dev = "d1" if kind in wire.DEVICE_KINDS else None
        topic = wire.topic("s1", "g1", kind, dev).split("/")
        for f in filters:
            parts = f.split("/")
            if len(parts) == len(topic) and all(p in ("+", t) for p, t in zip(parts, topic, strict=True)):
                out.add(kind)
    return out


def test_the_split_covers_the_uplink_once() -> None:
    safety, bulk = wire.safety_subscriptions(), wire.bulk_subscriptions()
    assert kinds(safety) == {wire.Kind.STATUS, wire.Kind.EVENT, wire.Kind.URGENT, wire.Kind.HEALTH}
    assert kinds(bulk) == {wire.Kind.TELEMETRY, wire.Kind.GATEWAY_HEALTH, wire.Kind.CMD_RESULT}
    assert sorted(wire.subscriptions()) == sorted(safety + bulk)
    assert not set(safety) & set(bulk)
    assert wire.safety_subscriptions("estate") == [f.replace("/+/+/", "/estate/+/", 1) for f in safety]


def client(lanes: bool = True, protocol: int = 5, group: str | None = "ingest") -> BaseIngestClient:
    c = BaseIngestClient("mqtt://127.0.0.1:1", lambda *a: None, "ing-1", shared_group=group, lanes=lanes)
    c.protocol = protocol
    return c


@pytest.mark.parametrize(("protocol", "group"), [(5, "ingest"), (5, None), (4, "ingest")])
def test_lane_filters_ids_and_stale_filters(protocol: int, group: str | None) -> None:
    c = client(protocol=protocol, group=group)
    shared = protocol == 5 and group is not None
    deco = (lambda f: wire.shared(f, "ingest")) if shared else (lambda f: f)
    assert c.filters(SAFETY) == [deco(f) for f in wire.safety_subscriptions()]
    assert c.filters(MAIN) == [deco(f) for f in wire.bulk_subscriptions()]
    assert c.filters() == [deco(f) for f in wire.subscriptions()]
    assert c.stale_filters(MAIN) == c.filters(SAFETY) and c.stale_filters(SAFETY) == c.filters(MAIN)
    assert (c.lane_client_id(MAIN), c.lane_client_id(SAFETY)) == ("ing-1", "ing-1-safety")


def test_one_lane_takes_everything_and_unsubscribes_nothing() -> None:
    c = client(lanes=False)
    assert c.lanes == (MAIN,)
    assert c.filters(MAIN) == c.filters() and c.stale_filters(MAIN) == []


def test_connected_means_every_lane_subscribed() -> None:
    c = client()
    c._lane_up(SAFETY)
    assert not c.connected.is_set() and c.connected_lanes() == [SAFETY]
    c._lane_up(MAIN)
    assert c.connected.is_set() and c.connected_lanes() == [MAIN, SAFETY]
    c._lane_down(SAFETY)
    assert not c.connected.is_set() and c.connected_lanes() == [MAIN]
