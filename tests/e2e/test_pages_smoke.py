"""Every page renders in real headless Chromium, in English and Chinese; screenshots are saved."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.web import login, make_web_env, screenshot, serve

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_every_page_renders_for_its_role(tmp_path: Path, phone) -> None:  # type: ignore[no-untyped-def]
    env = make_web_env(tmp_path, alarms=False)
    with serve(env.app) as base:
        phone.goto(f"{base}/parking/estate-a")
        assert phone.locator("#free-total").is_visible()
        screenshot(phone, "parking-public-en")
        phone.goto(f"{base}/parking/estate-a?lang=zh")
        assert "停车" in phone.title()
        screenshot(phone, "parking-public-zh")

        login(phone, base, "inst-a")
        assert phone.url.endswith("/health")
        assert phone.locator("#dev-chg1").is_visible()
        screenshot(phone, "health-installer-zh")  # the lang cookie carries over
        phone.goto(f"{base}/enrol?lang=en")
        phone.fill("input[name=gateway]", "gw-a9")
        phone.fill("textarea[name=devices]", "chg7 voltpile-cp10 2\nbay7 geomag-rx200")
        phone.click("#enrol-form button[type=submit]")
        assert phone.locator("#mqtt-user").inner_text() == "gw.estate-a.gw-a9"
        acl = phone.locator("#acl").inner_text()
        assert "topic write sw/v1/estate-a/gw-a9/+/telemetry" in acl
        assert "topic read sw/v1/estate-a/gw-a9/config\n" in acl
        with phone.expect_download() as dl:
            phone.click("#download")
        cfg = Path(dl.value.path()).read_text()
        assert "gateway: gw-a9" in cfg and phone.locator("#mqtt-password").inner_text() in cfg
        screenshot(phone, "enrolled")
        phone.click("#logout")

        login(phone, base, "mgr-a")
        assert phone.url.endswith("/estate")
        assert phone.locator("#port-chg1-1").is_visible()
        assert phone.locator("#port-chg7-1").count() == 1, "the enrolled gateway's charger is now listed"
        screenshot(phone, "estate-manager")
