"""Pure estate views: charger ports, parking zones (hypothesis against a direct count), health,
command checks, i18n language choice."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloud.api import i18n
from cloud.api.commands import CommandRefused, check_command
from cloud.api.estate import DeviceRec, GatewayRec, charger_ports, device_health, parking_zones


def hub(values: dict[str, object], fire: tuple[int, ...] = (47, 48), zone: str = "g1") -> DeviceRec:
    return DeviceRec("s", "hub1", "gw", "parkhub-ph48", labels={"zone": zone},
                     instance_labels={n: {"fire_lane": "true"} for n in fire}, last_values=dict(values), last_ts=0)


@given(occ=st.dictionaries(st.integers(1, 48), st.one_of(st.booleans(), st.none())),
       fire=st.sets(st.integers(1, 48), max_size=5))
def test_parking_zone_counts(occ: dict[int, bool | None], fire: set[int]) -> None:
    values = {f"bay.{n}.occupied": v for n, v in occ.items() if v is not None}
    [z] = parking_zones([hub(values, tuple(fire))])
    normal = [n for n in range(1, 49) if n not in fire]
    assert z.total == len(normal)
    assert z.free == sum(1 for n in normal if occ.get(n) is False)
    assert z.unknown == sum(1 for n in normal if occ.get(n) is None)
    assert z.fire_lane_total == len(fire)
    assert z.fire_lane_occupied == sum(1 for n in fire if occ.get(n) is True)
    assert z.fire_lane_status == ("none" if not fire else "blocked" if z.fire_lane_occupied else "clear")


def test_parking_zones_split_by_instance_labels_and_line_devices() -> None:
    rx = DeviceRec("s", "rx1", "gw", "geomag-rx200", labels={"zone": "b"}, instance_labels={3: {"zone": "c"}},
                   last_values={"bay.1.occupied": True, "bay.2.occupied": False, "bay.3.occupied": False})
    zones = {z.zone: z for z in parking_zones([rx, hub({})])}
    assert (zones["b"].free, zones["b"].total) == (1, 2)
    assert (zones["c"].free, zones["c"].total) == (1, 1)
    assert zones["g1"].total == 46 and zones["g1"].unknown == 46
    charger = DeviceRec("s", "chg", "gw", "voltpile-cp10")
    assert parking_zones([charger]) == []


def test_charger_ports() -> None:
    d = DeviceRec("s", "chg1", "gw", "voltpile-cp10", labels={"zone": "a"}, last_values={
        "port.1.state": "charging", "port.1.power": 180, "port.1.connector_temp": 31.5, "port.1.energy": 1.25,
        "port.1.enabled": True, "port.2.state": "idle", "port.2.enabled": False, "port.3.state": "disabled",
        "main_relay": True})
    ports = {p.port: p for p in charger_ports(d)}
    assert len(ports) == 10
    assert ports[1].in_use and not ports[1].cut_off and ports[1].power_w == 180 and ports[1].zone == "a"
    assert not ports[2].in_use and ports[2].cut_off
    assert ports[3].cut_off and ports[4].state is None and not ports[4].cut_off
    main_off = DeviceRec("s", "chg1", "gw", "voltpile-cp10", last_values={"main_relay": False})
    assert all(p.cut_off for p in charger_ports(main_off))
    assert charger_ports(hub({})) == []


def test_device_health() -> None:
    gw_on = GatewayRec("s", "gw", online=True)
    fresh = DeviceRec("s", "hub1", "gw", "parkhub-ph48", last_values={"bay.3.battery": 2.7, "bay.4.battery": 3.2},
                      last_ts=1000.0)
    h = device_health(fresh, gw_on, {"online": True, "timeouts": 2, "crc_errors": 1, "exceptions": 0}, now=1010)
    assert h.answering and h.comm_errors == 3 and h.low_battery == [3] and h.last_seen_s == 10
    assert not device_health(fresh, gw_on, None, now=1000 + 181).answering
    assert not device_health(fresh, GatewayRec("s", "gw", online=False), None, now=1010).answering
    assert not device_health(fresh, gw_on, {"online": False}, now=1010).answering
    assert not device_health(fresh, gw_on, {"online": True, "breaker": "open"}, now=1010).answering
    assert not device_health(fresh, gw_on, {"online": False, "breaker": "half_open"}, now=1010).answering
    never = DeviceRec("s", "x", "gw", "voltpile-cp10")
    assert not device_health(never, gw_on, None).answering and device_health(never, gw_on).last_seen_s is None


def test_check_command() -> None:
    d = DeviceRec("s", "chg1", "gw1", "voltpile-cp10")
    check_command(d, "s", "gw1", "port_enable", 3, False)
    check_command(d, "s", "gw1", "main_cut", None, None)
    cases = [
        (None, "gw1", "main_cut", None, None, 404),
        (d, "gw2", "main_cut", None, None, 409),          # device not on that gateway
        (d, "gw1", "reboot", None, None, 422),            # not declared by the profile
        (d, "gw1", "port_enable", 11, False, 422),        # no port 11 on a 10-port pile
        (d, "gw1", "port_enable", None, False, 422),      # needs a port
        (d, "gw1", "main_cut", None, True, 422),          # main_cut always writes false
    ]
    for dev, gw, cmd, idx, val, status in cases:
        with pytest.raises(CommandRefused) as e:
            check_command(dev, "s", gw, cmd, idx, val)
        assert e.value.status == status, (gw, cmd, idx, val)
    with pytest.raises(CommandRefused):
        check_command(DeviceRec("other", "chg1", "gw1", "voltpile-cp10"), "s", "gw1", "main_cut", None, None)


def test_language_choice_and_fallback() -> None:
    assert i18n.pick("zh", "en", "en-US") == "zh"
    assert i18n.pick(None, "zh", "en-US") == "zh"
    assert i18n.pick("klingon", None, "zh-CN,zh;q=0.9,en;q=0.8") == "zh"
    assert i18n.pick(None, None, "fr-FR, en;q=0.5") == "en"
    assert i18n.pick(None, None, None) == "en"
    t = i18n.translator("zh")
    assert t("login") == "登录" and t("of_total", n=5) == "共 5" and t("no-such-key") == "no-such-key"
    assert all(en and zh for en, zh in i18n.TEXT.values())
