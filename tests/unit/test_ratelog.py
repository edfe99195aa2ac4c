"""Malformed input is logged a line per kind per interval, not a line per message."""

from __future__ import annotations

import logging

import pytest

from cloud.api.commands import Commander
from cloud.ratelog import RateLimitedLog


def test_first_then_summary_after_the_interval(caplog: pytest.LogCaptureFixture) -> None:
    rl = RateLimitedLog(logging.getLogger("t"), interval_s=60)
    caplog.set_level(logging.WARNING)
    logged = [rl.warning("bad_json", "bad %s", i, now=float(i)) for i in range(100)]
    assert logged[0] and not any(logged[1:60]) and logged[60]
    assert len(caplog.records) == 2
    assert "59 more like this" in caplog.records[1].getMessage()
    assert rl.warning("bad_schema", "other kind", now=99.0)  # another key has its own budget


def test_twenty_thousand_garbage_health_messages_cost_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    """What a user saw with mosquitto_pub: 8,840 WARNING lines for 20,000 garbage messages."""
    cmd = Commander(None, "mqtt://127.0.0.1:1")  # type: ignore[arg-type]  # not started: no broker, no db
    caplog.set_level(logging.WARNING, logger="cloud.api.commands")
    for i in range(20_000):
        cmd._on_message("sw/v1/a/gw/dev/health", b"garbage %d" % i)
    assert cmd.malformed == 20_000
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) <= 2
