"""A site's own alarm limit reaches the gateway and makes its crossing urgent, end to end: the demo
estate's alarm config moves "Charging port overheating" from the profile's 70 °C (clear 60) to 55 °C
(clear 50); `cloud serve` sends shelter A's gateway its `limits` (docs/wire.md) over a real mosquitto;
the edge agent process then sends a port reading of 60 °C on `…/urgent`, the safety lane (without
the limits it went as plain telemetry: not past the profile's 70), and the engine raises the alarm and
pushes it. Expected payloads are written from docs/wire.md, not decoded by the contract's code."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from shelterwatch.demo import SITE, DemoStack
from tests.fixtures.servers import make_mosquitto
from tests.fixtures.web import running_demo
from tests.polling import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
GW = "gw-shelter-a"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DemoStack, int]]:
    m = make_mosquitto(tmp_path_factory.mktemp("limitsbroker")).start()
    try:
        with running_demo(tmp_path_factory.mktemp("limits"), m.url, sims=("shelter-a",), poll_ms=500,
                          alarm_overrides=[{"rule": "connector_overtemp", "raise": 55, "clear": 50}]) as st:
            yield st, m.port
    finally:
        m.stop()


class Watch:
    """Everything on the gateway's topics, as an observer with no account sees it (the demo's broker)."""

    def __init__(self, port: int, name: str = "limits-watch") -> None:
        self.got: list[tuple[str, dict[str, Any], bool]] = []
        self.lock = threading.Lock()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name)
        self.c.on_connect = lambda cl, u, f, rc, p=None: cl.subscribe(f"sw/v1/{SITE}/{GW}/#", qos=1)
        self.c.on_message = self._add
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()

    def _add(self, _c: Any, _u: Any, m: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.got.append((m.topic, json.loads(m.payload), bool(m.retain)))

    def of(self, kind: str) -> list[tuple[str, dict[str, Any], bool]]:
        with self.lock:
            return [g for g in self.got if g[0].rsplit("/", 1)[-1] == kind]

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def test_a_sites_limit_reaches_the_gateway_and_its_crossing_is_urgent_and_raises(
        stack: tuple[DemoStack, int]) -> None:
    st, port = stack
    watch = Watch(port)
    try:
        def limits() -> dict[str, Any] | None:
            got = [body for _t, body, _r in watch.of("limits")]
            return got[-1] if got else None

        body = wait_until(limits, 20, "the gateway's limits, retained")
        assert body["v"] == 1 and set(body["devices"]) == {"chg1", "chg2"}, body  # both of shelter A's chargers
        for d in ("chg1", "chg2"):
            assert body["devices"][d] == [{"rule": "connector_overtemp", "raise": 55.0, "clear": 50.0}], body
        late = Watch(port, "limits-late")  # one who subscribes later still gets it: retained
        try:
            wait_until(lambda: late.of("limits"), 10, "the retained limits")
            assert late.of("limits")[0][1:] == (body, True)
        finally:
            late.close()

        # 60 °C on port 2 for 8 s: past the site's 55, short of the profile's 70 (and of the 75 °C cut-off)
        st.sims["shelter-a"].device("chg1").model.sensor_spike(2, 60.0, 8.0)
        point = "port.2.connector_temp"
        up = wait_until(lambda: [b for _t, b, _r in watch.of("urgent") if b["values"].get(point, 0) >= 55], 20,
                        "the reading past the site's limit, on …/chg1/urgent")
        assert up[0]["values"][point] >= 55
        assert not [b for t, b, _r in watch.of("telemetry") if t.endswith("/chg1/telemetry")
                    and b["values"].get(point, 0) >= 55 and b["seq"] < up[0]["seq"]]  # not before it as routine
        pushed = wait_until(lambda: [p for p in st.inbox.to("volunteer")
                                     if "Charging port overheating" in p["title"]], 30,
                            "the push of the site's overheating alarm")
        assert pushed
    finally:
        watch.close()
