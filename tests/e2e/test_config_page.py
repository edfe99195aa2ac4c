"""Remote configuration pages in a real headless Chromium on a real system: one simulated shelter,
its edge agent process, a real mosquitto, `cloud serve`'s parts (shelterwatch.demo.DemoStack).

An installer sees the gateway's config and drift on the health page, edits and sends a change
that the gateway applies (drift back to "in sync" by itself, live), gets a refused edit back with
its mistakes located, reads the diff and rolls back. A volunteer sees no config page at all.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shelterwatch.demo import SITE, DemoStack
from tests.fixtures.servers import make_mosquitto
from tests.fixtures.web import demo_login, running_demo, screenshot
from tests.polling import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
GW = "gw-shelter-a"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoStack]:
    # A broker of its own, not the session's: another module's demo gateway of the same name left its
    # retained `config-running` there (another state_dir), which this cloud would import as version 1,
    # and rolling back to it is then rightly refused ("state_dir: stays …").
    m = make_mosquitto(tmp_path_factory.mktemp("cfgbroker")).start()
    try:
        with running_demo(tmp_path_factory.mktemp("cfgstack"), m.url, sims=("shelter-a",), poll_ms=500) as st:
            yield st
    finally:
        m.stop()


def test_volunteer_has_no_config_pages(stack: DemoStack, phone) -> None:  # type: ignore[no-untyped-def]
    demo_login(phone, stack, "volunteer")
    assert phone.locator("#nav-config").count() == 0
    r = phone.goto(f"{stack.url}/config/{SITE}/{GW}")
    assert r is not None and r.status == 403


def test_installer_edits_sees_it_applied_rolls_back(stack: DemoStack, phone) -> None:  # type: ignore[no-untyped-def]
    configs = stack.cloud.configs
    wait_until(lambda: configs.store.version(SITE, GW, 1), 30, "the gateway's running config imported")
    demo_login(phone, stack, "installer")
    assert phone.url.startswith(f"{stack.url}/health")
    row = phone.locator(f"#gwcfg-{GW}")
    assert "not managed" in row.inner_text(timeout=10000) and "shelterwatch-edge" in row.inner_text()
    screenshot(phone, "config-health-drift")
    phone.click(f"#gwcfg-{GW} a")
    phone.wait_for_load_state("domcontentloaded")
    text = phone.input_value("#yaml")
    assert "snapshot_s: 30" in text and "password" not in text

    # A change the gateway applies: drift goes to "in sync" on the page by itself.
    phone.fill("#yaml", text.replace("snapshot_s: 30", "snapshot_s: 40"))
    phone.fill("#comment", "snapshots every 40 s")
    phone.click("#config-save")
    phone.wait_for_load_state("domcontentloaded")
    assert "Version 2 accepted" in phone.locator("#saved").inner_text()
    phone.locator("#drift", has_text="in sync").wait_for(timeout=30000)
    assert phone.locator("#running").inner_text() == "v2"
    assert "installer" in phone.locator("#v-2").inner_text()
    phone.locator("#events tr.ev-applied").first.wait_for(timeout=15000)  # the gateway's answer, in the history
    screenshot(phone, "config-applied")

    # A mistake is refused before anything is stored or sent, with its line and key.
    phone.fill("#yaml", phone.input_value("#yaml").replace("profile: voltpile-cp10", "profile: voltpile-cp11"))
    phone.click("#config-save")
    phone.wait_for_load_state("domcontentloaded")
    problems = phone.locator("#problems").inner_text()
    assert "unknown profile 'voltpile-cp11'" in problems and "devices[0].profile" in problems, problems
    assert "line" in problems
    assert len(configs.store.versions(SITE, GW)) == 2
    screenshot(phone, "config-refused")

    # The diff of v2 with the version before, then back to v1 (as a new version, v3).
    phone.goto(f"{stack.url}/config/{SITE}/{GW}/diff?a=1&b=2")
    diff = phone.locator("#diff").inner_text()
    assert "-snapshot_s: 30" in diff and "+snapshot_s: 40" in diff, diff
    phone.goto(f"{stack.url}/config/{SITE}/{GW}")
    phone.click("#rollback-1")
    phone.wait_for_load_state("domcontentloaded")
    assert "Version 3 accepted" in phone.locator("#saved").inner_text()
    phone.locator("#drift", has_text="in sync").wait_for(timeout=30000)
    assert phone.locator("#running").inner_text() == "v3"
    v3 = configs.store.version(SITE, GW, 3)
    assert v3.parent == 1 and v3.source == "rollback" and v3.created_by == "installer"
    screenshot(phone, "config-rolled-back")
