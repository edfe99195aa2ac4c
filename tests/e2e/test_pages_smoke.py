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


def test_estate_page_shows_each_sessions_curve_and_why_it_was_flagged(tmp_path: Path, phone) -> None:  # type: ignore[no-untyped-def]
    """The curve of a port's charge session (cloud/history's sessions, fed the wire telemetry), and
    the edge's abnormal_charge verdict in words, in both languages."""
    from datetime import UTC, datetime

    from cloud.history.charge_session import ChargeSessions
    from cloud.tsdb.lineproto import Series
    from device_profiles.loader import get_profile

    sessions = ChargeSessions(lambda site, dev, port, reason: Series.make("charge_session", {"site": site}))
    prof = get_profile("voltpile-cp10")
    t0 = datetime.now(UTC).timestamp() - 3600
    for minute in range(60):
        t = t0 + minute * 60
        hot = max(0.0, minute - 30) * 0.6  # port 2's pack heats from minute 30 at a flat current
        sessions.telemetry("estate-a", "chg1", prof, {
            "ambient_temp": 21.0,
            "port.2.current": 1.6, "port.2.power": 354.0, "port.2.state": "charging",
            "port.2.connector_temp": round(28.0 + hot, 1), "port.2.energy": round(minute * 0.0059, 3),
            "port.5.current": 1.2, "port.5.power": 265.0, "port.5.state": "charging",
            "port.5.connector_temp": 26.0, "port.5.energy": round(minute * 0.0044, 3)}, t)
    sessions.flag("estate-a", "chg1", 2, "no_taper", False, t0 + 50 * 60)
    env = make_web_env(tmp_path, alarms=False, sessions=sessions)
    with serve(env.app) as base:
        login(phone, base, "mgr-a")
        phone.goto(f"{base}/estate?site=estate-a&lang=en")
        cell = phone.locator("#session-chg1-2")
        assert cell.locator("svg.curve.flagged path.temp").count() == 1
        assert cell.locator("svg path.explained").count() == 1 and cell.locator("svg path.current").count() == 1
        assert "the charge never tapers" in cell.inner_text() and "Abnormal charge" in cell.inner_text()
        quiet = phone.locator("#session-chg1-5")
        assert quiet.locator("svg.curve").count() == 1 and quiet.locator("svg.flagged").count() == 0
        assert "Abnormal" not in quiet.inner_text()
        screenshot(phone, "estate-session-curves-en")
        phone.goto(f"{base}/estate?site=estate-a&lang=zh")
        assert "电池管理系统可能失效" in phone.locator("#session-chg1-2").inner_text()
        screenshot(phone, "estate-session-curves-zh")
