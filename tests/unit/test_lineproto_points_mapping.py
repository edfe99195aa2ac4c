"""Serial line records, command binding and the time-series mapping."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from device_profiles.lineproto import LineError, format_line, nmea_xor, parse_line
from device_profiles.loader import catalog
from device_profiles.points import CommandError, resolve_command, resolve_points
from device_profiles.timeseries import Mapping

RX = "geomag-rx200"


@given(bay=st.integers(1, 64), occ=st.booleans(), mv=st.integers(0, 99999), rssi=st.integers(-120, 0))
def test_line_round_trip(bay, occ, mv, rssi):
    p = catalog()[RX]
    line = format_line(p, bay, {"occ": "1" if occ else "0", "mv": str(mv), "rssi": str(rssi)})
    assert line.endswith(b"\r\n")
    rec = parse_line(p, line.rstrip(b"\r\n"))
    assert rec.index == bay
    assert rec.values == {f"bay.{bay}.occupied": occ, f"bay.{bay}.battery": round(mv * 0.001, 6),
                          f"bay.{bay}.rssi": rssi}


def test_documented_example_line():
    body = "PBAY,012,1,3012,-71"
    assert nmea_xor(body) == "23"
    rec = parse_line(catalog()[RX], f"${body}*23".encode())
    assert rec.values["bay.12.battery"] == 3.012


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"$PBAY,012,1,3012,-71*24", "checksum"),
        (b"$PBAY,12,1,3012,-71*23", "no_match"),
        (b"hello world", "no_match"),
        (b"\xff\xfe\xfa", "not_text"),
        (b"$PBAY," + b"9" * 300, "too_long"),
        (f"$PBAY,000,1,3012,-71*{nmea_xor('PBAY,000,1,3012,-71')}".encode(), "bad_instance"),
        (f"$PBAY,065,1,3012,-71*{nmea_xor('PBAY,065,1,3012,-71')}".encode(), "bad_instance"),
    ],
)
def test_garbage_lines_are_rejected_with_a_reason(raw, reason):
    with pytest.raises(LineError) as e:
        parse_line(catalog()[RX], raw)
    assert e.value.reason == reason


@given(st.binary(max_size=300))
def test_random_bytes_only_raise_line_errors(raw):
    with contextlib.suppress(LineError):
        parse_line(catalog()[RX], raw)


def test_block_addresses_follow_the_stride():
    p = catalog()["voltpile-cp10"]
    pts = {rp.id: rp for rp in resolve_points(p)}
    assert pts["port.1.connector_temp"].address == 106
    assert pts["port.10.connector_temp"].address == 106 + 9 * 8
    assert pts["port.1.enabled"].address == 16 and pts["port.10.enabled"].address == 25  # coil stride 1
    assert pts["port.4.energy"].count == 2


def test_commands_bind_or_refuse():
    p = catalog()["voltpile-cp10"]
    c = resolve_command(p, "port_enable", 3, False)
    assert (c.table.value, c.address, c.value, c.safety) == ("coil", 18, False, True)
    assert resolve_command(p, "main_cut").value is False
    h = catalog()["hengtong-ebc12"]
    assert resolve_command(h, "port_enable", 12, True).address == 208 + 11 * 10
    for args, msg in [
        (("self_destruct",), "declares no command"),
        (("port_enable", None, False), "needs an instance"),
        (("port_enable", 11, False), "does not exist"),
        (("port_enable", 3, 7), "true/false"),
        (("main_cut", 2), "whole device"),
        (("main_cut", None, True), "always writes"),
        (("port_enable", 3), "needs a value"),
    ]:
        with pytest.raises(CommandError, match=msg):
            resolve_command(p, *args)


def test_mapping_groups_values_into_rows():
    m = Mapping(catalog()["parkhub-ph48"])
    rows = m.rows({"bay.7.occupied": True, "bay.7.battery": 3.1, "bay.8.occupied": False, "occupied_count": 12,
                   "unknown.1.x": 5}, {"site": "s", "gateway": "g", "device": "hub1"},
                  {7: {"zone": "b", "fire_lane": "true"}})
    by = {(r.measurement, r.tags.get("bay")): r for r in rows}
    assert by[("parking_bay", "7")].fields == {"occupied": True, "battery": 3.1}
    assert by[("parking_bay", "7")].tags == {"site": "s", "gateway": "g", "device": "hub1", "bay": "7", "zone": "b",
                                            "fire_lane": "true"}
    assert by[("parking_bay", "8")].tags.get("zone") is None
    assert by[("parking_hub", None)].fields == {"occupied_count": 12}
    assert len(rows) == 3
