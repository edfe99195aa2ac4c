"""The acceptance run in a real headless Chromium, on the whole system: simulators → edge agent
processes → a real mosquitto → ingest → alarm engine → web. Same wiring as `shelterwatch demo`
(shelterwatch/demo.py). Screenshots of each page go to artifacts/screenshots/.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from shelterwatch.demo import SITE, DemoStack
from tests.fixtures.web import demo_login, running_demo, screenshot
from tests.polling import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
TIER2_AFTER_S = 8.0


def wait(cond: Any, timeout: float = 30.0, what: str = "condition") -> Any:
    return wait_until(cond, timeout, what, every=0.2)  # each check asks the browser: not too often


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, mosquitto_session) -> Iterator[DemoStack]:  # type: ignore[no-untyped-def]
    with running_demo(tmp_path_factory.mktemp("stack"), mosquitto_session.url, tier2_after_s=TIER2_AFTER_S,
                      repeat_s=60, waterflow_retard_s=1.0, poll_ms=500) as st:
        yield st


def login(page: Any, stack: DemoStack, user: str) -> None:
    demo_login(page, stack, user)


def pushes(stack: DemoStack, who: str, device: str) -> list[dict[str, Any]]:
    assert stack.inbox is not None
    return [p for p in stack.inbox.to(who) if "waterflow" in (p["title"] + p["body"]).lower()
            and re.search(rf"\b{device}\b", p["body"])]


def test_volunteer_acknowledges_live_alarm_and_escalation_stops(stack: DemoStack, phone) -> None:  # type: ignore[no-untyped-def]
    login(phone, stack, "volunteer")
    assert phone.url.startswith(f"{stack.url}/alarms")
    screenshot(phone, "alarms-empty")
    # Waterflow on shelter A's riser (simulator), and, as a control nobody acknowledges, on shelter B's.
    for dev in ("spk1", "spk2"):
        sim = stack.sim_device(dev)
        with sim.lock:
            sim.model.set_waterflow(True)
    item = phone.locator("li.alarm[data-rule=waterflow]", has_text="spk1")
    item.wait_for(timeout=20000)  # appears by itself: the list refreshes live, no reload
    raised = time.monotonic()
    screenshot(phone, "alarms-live")
    assert wait(lambda: pushes(stack, "volunteer", "spk1"), 10, "tier-1 push to the volunteer")
    item.locator("button.ack").click()
    phone.wait_for_load_state("domcontentloaded")
    acked = phone.locator("li.alarm[data-rule=waterflow]", has_text="spk1")
    assert "volunteer" in acked.locator(".ok").inner_text(timeout=10000)
    screenshot(phone, "alarms-acknowledged")
    assert time.monotonic() - raised < TIER2_AFTER_S, "acknowledged before tier 2 was due"
    # The control alarm escalates to the manager; the acknowledged one never does.
    wait(lambda: pushes(stack, "manager", "spk2"), TIER2_AFTER_S + 10, "tier-2 push for the unacknowledged alarm")
    time.sleep(1.0)
    assert not pushes(stack, "manager", "spk1"), "escalation stopped at the acknowledgement"
    n = len(pushes(stack, "volunteer", "spk1"))
    time.sleep(2.0)
    assert len(pushes(stack, "volunteer", "spk1")) == n, "no reminders after the acknowledgement"
    alarms = [a for a in stack.store.list_alarms(site=SITE) if a.device == "spk1" and a.rule == "waterflow"]
    assert alarms and alarms[0].acked_by == "volunteer" and alarms[0].acked_via == "web"
    for dev in ("spk1", "spk2"):
        sim = stack.sim_device(dev)
        with sim.lock:
            sim.model.set_waterflow(False)
    phone.goto(f"{stack.url}/alarms?lang=zh")
    screenshot(phone, "alarms-history-zh")


def test_parking_numbers_follow_arriving_cars(stack: DemoStack, phone) -> None:  # type: ignore[no-untyped-def]
    phone.goto(f"{stack.url}/parking/{SITE}")  # public: no login
    hub = stack.sim_device("hub1")
    free_bays = [n for n, b in sorted(hub.model.bays.items()) if not b.occupied and n < 47]
    assert len(free_bays) >= 3
    wait(lambda: phone.locator("#free-g1").inner_text().strip().isdigit(), 10, "zone g1 on the page")
    before = int(phone.locator("#free-g1").inner_text())
    screenshot(phone, "parking-before")
    with hub.lock:
        for n in free_bays[:3]:
            hub.model.set_occupied(n, True)
    wait(lambda: int(phone.locator("#free-g1").inner_text()) <= before - 3, 20, "free count to fall by 3")
    with hub.lock:
        hub.model.set_occupied(48, True)  # a car in the fire lane
    wait(lambda: "lane-blocked" in (phone.locator("#lane-g1").get_attribute("class") or ""), 20, "fire lane blocked")
    screenshot(phone, "parking-after")
    with hub.lock:
        for n in free_bays[:3]:
            hub.model.set_occupied(n, False)
    wait(lambda: int(phone.locator("#free-g1").inner_text()) >= before, 20, "cars leave again")


def test_manager_switches_port_off_and_current_falls(stack: DemoStack, phone) -> None:  # type: ignore[no-untyped-def]
    chg = stack.sim_device("chg1")
    port = wait(lambda: next((n for n in range(1, 11) if chg.model.port(n).current > 0.1), None), 20,
                "a charging port on chg1")
    login(phone, stack, "manager")
    assert phone.url.startswith(f"{stack.url}/estate")
    row = phone.locator(f"#port-chg1-{port}")
    wait(lambda: "W" in row.locator(".power").inner_text() and not row.locator(".power").inner_text()
         .startswith("0 "), 20, "the port's power on the page")
    screenshot(phone, "estate-before")
    phone.click(f"#off-chg1-{port}")
    phone.wait_for_load_state("domcontentloaded")
    banner = phone.locator("#last-command")
    assert "done" in banner.inner_text() and "manager" in banner.inner_text(), banner.inner_text()
    wait(lambda: chg.model.port(port).current == 0, 10, "the simulator's current to fall to 0")
    wait(lambda: row.locator(".power").inner_text().strip() in ("", "0 W"), 20, "power 0 on the page")
    wait(lambda: phone.locator(f"#on-chg1-{port}").count() == 1, 20, "the page to offer switching it back on")
    screenshot(phone, "estate-port-off")
    rec = stack.commander.recent([SITE], 5)[0]
    assert (rec.device, rec.command, rec.index, rec.value, rec.status, rec.by) == (
        "chg1", "port_enable", port, 0, "done", "manager")
    phone.goto(f"{stack.url}/health?lang=en")  # the manager may see device health too
    screenshot(phone, "health-manager")


def test_command_for_device_not_on_that_gateway_is_refused(stack: DemoStack) -> None:
    token = stack.app.state.auth.create_token("manager", "e2e")
    h = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=stack.url, headers=h) as c:
        r = c.post(f"/api/v1/sites/{SITE}/gateways/gw-garage/devices/chg1/commands",
                   json={"command": "main_cut"})
        assert r.status_code == 409 and "not on gateway gw-garage" in r.json()["detail"]
        assert all(x.gateway != "gw-garage" for x in stack.commander.recent([SITE], 50)), "nothing sent or stored"
        r = c.post(f"/api/v1/sites/{SITE}/gateways/gw-shelter-a/devices/chg1/commands",
                   json={"command": "port_enable", "index": 2, "value": True})
        assert r.status_code == 200 and r.json()["status"] == "done"


def test_installer_sees_a_silent_device_and_comm_errors(stack: DemoStack, phone) -> None:  # type: ignore[no-untyped-def]
    login(phone, stack, "installer")
    assert phone.url.startswith(f"{stack.url}/health")
    row = phone.locator("#dev-chg2")
    wait(lambda: "bad" not in (row.get_attribute("class") or "bad"), 20, "chg2 answering")
    sim = stack.sim_device("chg2")
    sim.faults.set(silent=True)  # the cable is cut: the device stops answering its gateway
    try:
        wait(lambda: "bad" in (row.get_attribute("class") or ""), 30, "chg2 shown as not answering")
        errors = row.locator("td.num").inner_text().strip()
        assert errors.isdigit() and int(errors) > 0, f"comm errors counted, got {errors!r}"
        screenshot(phone, "health-silent-device")
    finally:
        sim.faults.clear()
    wait(lambda: "good" in (row.get_attribute("class") or ""), 30, "chg2 answering again")
