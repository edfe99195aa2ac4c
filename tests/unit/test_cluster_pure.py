"""Pure parts of the cluster tier: partition numbers, subject names, fair shares, node configs, and
the edge's broker list. (That the servers partition like `partition_of` is checked against a real
cluster in tests/integration/test_nats_cluster.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloud.cluster import assign
from cloud.cluster import partition as P
from cloud.cluster.natsconf import NodeConfig, render
from device_profiles.located_yaml import ConfigError
from edge_agent.config import load_config


def test_fnv1a32_known_values() -> None:
    # FNV-1a 32-bit reference values (offset basis 0x811c9dc5, prime 0x01000193)
    assert P.fnv1a32(b"") == 0x811C9DC5
    assert P.fnv1a32(b"a") == 0xE40C292C
    assert P.fnv1a32(b"foobar") == 0xBF9CF968


def test_partition_of_is_the_concatenation_hash() -> None:
    assert P.partition_of("site0", "gw0", 4) == P.fnv1a32(b"site0gw0") % 4
    assert P.partition_of("siteA", "gwA", 4) == 2  # as the nats-server 2.15 mapping put it


def test_subjects_round_trip_to_topics() -> None:
    up = P.parse_subject("$MQTT.msgs.swp.7.sw.v1.estate.gw-1.riser-1.event")
    assert up == P.Uplink(7, "sw/v1/estate/gw-1/riser-1/event")
    assert P.parse_subject("swp.12.sw.v1.estate.gw-1.status") == P.Uplink(12, "sw/v1/estate/gw-1/status")
    assert P.parse_subject("sw.v1.estate.gw-1.status") is None
    assert P.parse_subject("swp.x.sw.v1.a.b.status") is None
    assert P.command_subject("estate", "gw-1", "charger-a") == "$MQTT.msgs.sw.v1.estate.gw-1.charger-a.cmd"


def test_mappings_cover_the_uplink_and_leave_the_downlink() -> None:
    m = P.server_mappings(16)
    assert set(m) == {"sw.v1.*.*.status", "sw.v1.*.*.health", "sw.v1.*.*.*.telemetry", "sw.v1.*.*.*.urgent",
                      "sw.v1.*.*.*.event",
                      "sw.v1.*.*.*.health", "sw.v1.*.*.*.cmd-result", "sw.v1.*.*.config-result",
                      "sw.v1.*.*.config-running"}
    assert all(v.startswith("swp.{{partition(16,1,2)}}.sw.v1.") for v in m.values())
    assert not any(k.endswith((".cmd", ".config", ".config-confirm", ".limits")) for k in m)  # the downlink
    with pytest.raises(ValueError):
        P.server_mappings(0)


def test_lanes_split_the_kinds() -> None:
    safety, bulk = P.lane_filters(3, P.SAFETY), P.lane_filters(3, P.BULK)
    assert {"$MQTT.msgs.swp.3.sw.v1.*.*.*.event", "$MQTT.msgs.swp.3.sw.v1.*.*.*.urgent"} <= set(safety)
    assert "$MQTT.msgs.swp.3.sw.v1.*.*.*.telemetry" in bulk
    # a gateway's config answers are read by its owner with its births (cloud/remote_config/)
    assert {"$MQTT.msgs.swp.3.sw.v1.*.*.config-result", "$MQTT.msgs.swp.3.sw.v1.*.*.config-running"} <= set(safety)
    assert not set(safety) & set(bulk)
    assert P.consumer_name(3, P.SAFETY) == "sw-p003-safety"


@given(st.integers(1, 64), st.lists(st.text("abcdefgh", min_size=1, max_size=6), min_size=1, max_size=9, unique=True))
def test_shares_add_up_and_differ_by_at_most_one(parts: int, live: list[str]) -> None:
    shares = [assign.share(parts, live, r) for r in live]
    assert sum(shares) == parts
    assert max(shares) - min(shares) <= 1


def test_claims_follow_preference_and_releases_need_a_taker() -> None:
    pref = assign.preference("r1", 16)
    assert sorted(pref) == list(range(16)) and pref == assign.preference("r1", 16)
    assert assign.to_claim({pref[0]}, range(16), 3, "r1", 16) == pref[1:3]
    assert assign.to_claim(set(range(8)), [], 8, "r1", 16) == []
    held = set(range(16))
    assert assign.to_release(held, 8, "r1", 16, starving=False) == []
    give = assign.to_release(held, 8, "r1", 16, starving=True)
    assert len(give) == 8 and give[0] == pref[-1]


def test_node_config_has_routes_mqtt_and_mappings() -> None:
    text = render(NodeConfig(name="n2", store_dir="/var/lib/nats", routes=["nats://h1:6222", "nats://h2:6222"],
                             host="10.0.0.2", mqtt_port=1884, partitions=8))
    assert 'server_name: "n2"' in text and 'listen: "10.0.0.2:1884"' in text
    assert 'routes: ["nats://h1:6222", "nats://h2:6222"]' in text
    assert "stream_replicas: 3" in text and "{{partition(8,1,2)}}" in text


EDGE = """\
site: estate
gateway: gw-1
state_dir: {state}
uplink:
  url: {url}
buses:
  - {{name: b1, transport: modbus_tcp, host: 127.0.0.1}}
devices:
  - {{id: chg, profile: hengtong-ebc12, bus: b1, address: 1}}
"""


def test_edge_takes_a_list_of_brokers(tmp_path: Path) -> None:
    p = tmp_path / "a.yaml"
    p.write_text(EDGE.format(state=tmp_path, url="[mqtt://h1:1883, mqtt://h2, mqtt://h3:1885]"))
    cfg, _ = load_config(p)
    assert cfg.uplink.servers == [("h1", 1883), ("h2", 1883), ("h3", 1885)]
    p.write_text(EDGE.format(state=tmp_path, url="mqtt://h1:1883"))
    assert load_config(p)[0].uplink.servers == [("h1", 1883)]


@pytest.mark.parametrize("url,msg", [("[mqtt://h1:1883, mqtts://h2:8883]", "same scheme"),
                                     ("[mqtt://h1:1883, http://h2]", "pattern"), ("[]", "at least 1")])
def test_bad_broker_lists_are_located(tmp_path: Path, url: str, msg: str) -> None:
    p = tmp_path / "a.yaml"
    p.write_text(EDGE.format(state=tmp_path, url=url))
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert any("uplink" in i.key and msg in i.message for i in e.value.issues), [str(i) for i in e.value.issues]


def test_uplink_stream_keeps_messages_by_age_and_size() -> None:
    from cloud.cluster import stream as S

    want = S.wanted(3600, 1024)
    assert want == {"retention": "limits", "max_age": 3600 * 10**9, "max_bytes": 1024, "discard": "old"}
    with pytest.raises(ValueError):
        S.wanted(0, 1024)


def test_an_interest_stream_is_moved_to_limits_and_keeps_the_rest() -> None:
    from cloud.cluster import stream as S

    # as nats-server 2.15 creates it on the first MQTT connection (server/mqtt.go)
    made = {"name": "$MQTT_msgs", "subjects": ["$MQTT.msgs.>"], "retention": "interest", "max_age": 0,
            "max_bytes": -1, "discard": "old", "storage": "file", "num_replicas": 3, "allow_msg_ttl": True}
    new = S.update(made, 60, 2048)
    assert new is not None
    assert new["retention"] == "limits" and new["max_age"] == 60 * 10**9 and new["max_bytes"] == 2048
    assert {k: new[k] for k in ("name", "subjects", "storage", "num_replicas", "allow_msg_ttl")} == {
        k: made[k] for k in ("name", "subjects", "storage", "num_replicas", "allow_msg_ttl")}
    assert S.update(new, 60, 2048) is None  # already as wanted: no update
    with pytest.raises(ValueError, match="work-queue"):
        S.update({**made, "retention": "workqueue"})
