"""What the cloud tells a gateway about its site's alarm limits (docs/wire.md, "Urgent telemetry",
`limits`): the overrides of `alarm_overrides` (docs/alarms.md) read off the rules the engine judges the
device by, and when they are sent. Limits below are the catalog's (voltpile-cp10: connector_overtemp
raise 70 clear 60, overcurrent raise 5.0 clear 4.0, cabinet_hot raise 50 clear 45)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from cloud.alarms.config import AlarmSiteConfig
from cloud.alarms.directory import StaticDirectory
from cloud.alarms.edge_limits import device_overrides
from cloud.alarms.engine import AlarmEngine
from cloud.alarms.store import AlarmStore
from cloud.remote_config.limits import LimitsSender
from device_profiles import wire
from device_profiles.loader import get_profile

SITE = "estate-a"
DEVICES = [{"id": "chg1", "profile": "voltpile-cp10", "gateway": "gw1"},
           {"id": "chg2", "profile": "voltpile-cp10", "gateway": "gw1"}]


def engine(tmp: Path, overrides: list[dict[str, Any]]) -> AlarmEngine:
    cfg = AlarmSiteConfig.model_validate({"site": SITE, "alarm_overrides": overrides, "devices": DEVICES})
    return AlarmEngine(AlarmStore(f"sqlite:///{tmp / 'alarms.db'}"), StaticDirectory([cfg]), [cfg])


def sent_for(tmp: Path, overrides: list[dict[str, Any]], device: str = "chg1") -> list[dict[str, Any]]:
    e = engine(tmp, overrides)
    rules = e.rules_for(SITE, device, "voltpile-cp10")[1]
    return [msgspec.to_builtins(o) for o in device_overrides(get_profile("voltpile-cp10"), rules)]


def test_a_site_override_of_raise_and_clear_is_sent_as_the_engine_judges_it(tmp_path: Path) -> None:
    got = sent_for(tmp_path, [{"rule": "connector_overtemp", "raise": 55, "clear": 50}])
    assert got == [{"rule": "connector_overtemp", "raise": 55.0, "clear": 50.0}]  # docs/wire.md's example


def test_only_raise_moved_keeps_the_profiles_clear(tmp_path: Path) -> None:
    got = sent_for(tmp_path, [{"rule": "overcurrent", "raise": 4.5}])
    assert got == [{"rule": "overcurrent", "raise": 4.5, "clear": 4.0}]


def test_a_device_override_is_only_that_devices(tmp_path: Path) -> None:
    ovr = [{"rule": "cabinet_hot", "device": "chg2", "raise": 40, "clear": 35}]
    assert sent_for(tmp_path, ovr, "chg1") == []
    assert sent_for(tmp_path, ovr, "chg2") == [{"rule": "cabinet_hot", "raise": 40.0, "clear": 35.0}]


def test_what_is_not_a_moved_limit_is_not_sent(tmp_path: Path) -> None:
    assert sent_for(tmp_path, [{"rule": "connector_overtemp", "for": 1}]) == []  # a duration: the cloud's
    assert sent_for(tmp_path, [{"rule": "connector_overtemp", "enabled": False}]) == []  # switched off
    assert sent_for(tmp_path, [{"rule": "connector_temp_rise", "rate": 4}]) == []  # rate of rise
    assert sent_for(tmp_path, [{"rule": "connector_overtemp", "raise": 70, "clear": 60}]) == []  # the profile's
    assert sent_for(tmp_path, []) == []


class Downlink:
    def __init__(self) -> None:
        self.up = True
        self.sent: list[tuple[str, wire.Limits]] = []

    def publish(self, topic: str, msg: wire.Limits) -> bool:
        if self.up:
            self.sent.append((topic, msg))
        return self.up


def test_sent_once_again_on_change_on_forget_and_when_the_broker_was_away() -> None:
    ov = {"chg1": [wire.LimitOverride(rule="connector_overtemp", raise_at=55.0, clear_at=50.0)]}
    now: dict[tuple[str, str], dict[str, list[wire.LimitOverride]]] = {(SITE, "gw1"): ov, (SITE, "gw2"): {}}
    link = Downlink()
    s = LimitsSender(lambda: now, link.publish, owns=lambda site, gw: True)
    assert s.tick() == 2  # every gateway, also one with none (a stale retained set is replaced)
    assert [t for t, _ in link.sent] == [f"sw/v1/{SITE}/gw1/limits", f"sw/v1/{SITE}/gw2/limits"]
    assert link.sent[0][1].devices == ov and link.sent[1][1].devices == {}
    assert s.tick() == 0  # nothing changed
    s.forget(SITE, "gw2")  # its birth on a cluster
    assert s.tick() == 1 and link.sent[-1][0].endswith("/gw2/limits")
    now[(SITE, "gw2")] = {"chg9": [wire.LimitOverride(rule="cabinet_hot", raise_at=40.0, clear_at=35.0)]}
    link.up = False
    assert s.tick() == 0  # not sent: tried again at the next tick
    link.up = True
    assert s.tick() == 1 and link.sent[-1][1].devices == now[(SITE, "gw2")]
    s.forget()  # a new connection
    assert s.tick() == 2


def test_only_the_owner_of_a_gateway_sends_its_limits() -> None:
    link = Downlink()
    s = LimitsSender(lambda: {(SITE, "gw1"): {}, (SITE, "gw2"): {}}, link.publish, owns=lambda site, gw: gw == "gw2")
    assert s.tick() == 1 and link.sent[0][0].endswith("/gw2/limits")
