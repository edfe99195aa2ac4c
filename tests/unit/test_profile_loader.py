"""Profiles: the catalog loads, and each kind of mistake is reported with file, line and key."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from device_profiles.loader import load_catalog, load_profile
from device_profiles.located_yaml import ConfigError
from device_profiles.model import Family

GOOD = textwrap.dedent(
    """\
    schema: 1
    id: test-dev
    vendor: Test
    model: T-1
    family: charger
    transport:
      kind: modbus_rtu
    points:
      - {key: smoke, table: discrete_input, address: 0, type: bool}
      - {key: temp, table: input, address: 0, type: int16, scale: 0.1, unit: "°C"}
    blocks:
      - key: port
        count: 2
        stride: 4
        points:
          - {key: current, table: input, address: 10, type: uint16, scale: 0.01}
          - {key: energy, table: input, address: 11, type: uint32}
    commands:
      - {key: port_enable, table: coil, address: 0, block: port}
    interlocks:
      - {key: hot, block: port, when: {point: current, op: ">=", value: 5}, command: port_enable, value: false}
    timeseries:
      - {measurement: port, block: port, fields: [current, energy]}
      - {measurement: cabinet, fields: [smoke, temp]}
    alarms:
      - {key: hot, kind: threshold, point: temp, raise: 50, clear: 45, severity: warning}
    """
)


def write(tmp_path: Path, text: str, name: str = "test-dev") -> Path:
    p = tmp_path / f"{name}.yaml"
    p.write_text(text)
    return p


def test_catalog_loads_every_profile():
    profiles = load_catalog()
    assert len(profiles) >= 6
    by_family: dict[Family, list[str]] = {}
    for p in profiles.values():
        by_family.setdefault(p.family, []).append(p.id)
    for fam in Family:
        assert len(by_family.get(fam, [])) >= 2, f"need at least two {fam.value} models"


def test_catalog_covers_required_shapes():
    c = load_catalog()
    ports = {pid: c[pid].instance_range("port") for pid in ("voltpile-cp10", "hengtong-ebc12")}
    assert len(ports["voltpile-cp10"]) == 10 and len(ports["hengtong-ebc12"]) == 12
    orders = {(c[p].transport.byte_order, c[p].transport.word_order) for p in c if c[p].is_modbus}  # type: ignore[union-attr]
    assert len(orders) >= 3, "catalog should exercise different byte/word orders"
    assert any(not c[p].is_modbus for p in c), "a serial line-protocol profile"


def test_good_profile_loads(tmp_path):
    p = load_profile(write(tmp_path, GOOD))
    assert p.id == "test-dev" and len(p.blocks[0].points) == 2


BROKEN = [
    # (description, old text, new text, expected line, expected key, expected message part)
    ("scale not a number", "scale: 0.1, unit", "scale: x, unit", 10, "points[1].scale", "must be a number, got 'x'"),
    ("unknown key", "{key: smoke, table", "{key: smoke, tabel: discrete_input, table", 9, "points[0].tabel",
     "unknown key"),
    ("bad table", "table: input, address: 0", "table: inputs, address: 0", 10, "points[1].table", "must be one of"),
    ("negative address", "address: 10, type: uint16", "address: -1, type: uint16", 16, "blocks[0].points[0].address",
     "greater than or equal to 0"),
    ("missing vendor", "vendor: Test\n", "", 1, "vendor", "required key is missing"),
    ("bad transport kind", "kind: modbus_rtu", "kind: canbus", 7, "transport.kind", "must be one of"),
    ("coil typed int16", "{key: smoke, table: discrete_input, address: 0, type: bool}",
     "{key: smoke, table: discrete_input, address: 0, type: int16}", 9, "points[0]", "single bits"),
    ("enum without labels", "type: int16, scale: 0.1", "type: enum, scale: 0.1", 10, "points[1]", "enum"),
    ("bit without bit number", "type: int16, scale: 0.1", "type: bit, scale: 0.1", 10, "points[1]", "bit"),
    ("unknown timeseries field", "fields: [current, energy]", "fields: [current, energy, volts]", 23,
     "timeseries[0].fields[2]", "no point 'volts'"),
    ("interlock unknown command", "command: port_enable, value: false", "command: port_off, value: false", 21,
     "interlocks[0].command", "unknown command 'port_off'"),
    ("threshold without hysteresis", "raise: 50, clear: 45", "raise: 50, clear: 55", 26, "alarms[0]", "hysteresis"),
    ("duplicate yaml key", "model: T-1\n", "model: T-1\nmodel: T-2\n", 5, "model", "duplicate key"),
    ("overlapping registers", "stride: 4", "stride: 1", 11, "blocks", "overlap"),
    ("yaml syntax", "  - {key: smoke, table", "  - {key: smoke, [table", 9, "", "YAML syntax"),
    ("id differs from file name", "id: test-dev", "id: other-dev", 2, "id", "file name"),
    ("scale zero", "scale: 0.1, unit", "scale: 0, unit", 10, "points[1]", "scale must not be 0"),
    ("alarm unknown point", "point: temp, raise", "point: tmp, raise", 26, "alarms[0].point", "unknown point 'tmp'"),
    ("count not an integer", "count: 2", "count: two", 13, "blocks[0].count", "whole number"),
]


@pytest.mark.parametrize(("what", "old", "new", "line", "key", "msg"), BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_profile_is_located(tmp_path, what, old, new, line, key, msg):
    assert old in GOOD, what
    path = write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(ConfigError) as e:
        load_profile(path)
    issues = e.value.issues
    match = [i for i in issues if msg in i.message]
    assert match, f"{what}: no issue mentions {msg!r}: {[str(i) for i in issues]}"
    issue = match[0]
    assert issue.file == str(path)
    assert issue.line == line, f"{what}: {issue}"
    assert issue.key == key, f"{what}: {issue}"
    assert str(issue).startswith(f"{path}:{line}")


def test_empty_and_missing_files(tmp_path):
    with pytest.raises(ConfigError, match="file is empty"):
        load_profile(write(tmp_path, ""))
    with pytest.raises(ConfigError, match="file not found"):
        load_profile(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_profile(write(tmp_path, "- a\n- b\n"))


def test_catalog_reports_all_broken_files(tmp_path):
    write(tmp_path, GOOD.replace("scale: 0.1, unit", "scale: x, unit"), "test-dev")
    write(tmp_path, GOOD.replace("id: test-dev", "id: second").replace("vendor: Test\n", ""), "second")
    with pytest.raises(ConfigError) as e:
        load_catalog([tmp_path])
    files = {i.file for i in e.value.issues}
    assert len(files) == 2
