"""A site file accepts every alarm key docs/alarms.md lists, checks them with the alarm engine's own
models (mistakes named file:line key), and `cloud serve` takes them unless an alarm file for the
same site is given — settings written twice are refused, never silently dropped."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cloud.alarms.config import load_site_alarms
from cloud.site_config import ALARM_KEYS, alarm_configs, load_site
from device_profiles.located_yaml import ConfigError

ROOT = Path(__file__).parents[2]
SITE = "site: s1\ngateways:\n  - {id: g1, devices: [{id: d1, profile: voltpile-cp10}]}\n"


def docs_example() -> str:
    """The YAML block of docs/alarms.md's "Site settings" section."""
    text = (ROOT / "docs" / "alarms.md").read_text(encoding="utf-8")
    section = text.split("## Site settings", 1)[1]
    m = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert m, "docs/alarms.md lost its site settings example"
    return m.group(1)


def test_every_documented_alarm_key_is_accepted_in_a_site_file(tmp_path: Path) -> None:
    example = docs_example()
    documented = {m.group(1) for m in re.finditer(r"^([a-z_]+):", example, re.M)}
    assert documented == set(ALARM_KEYS), "the site file takes exactly the alarm keys the docs list"
    f = tmp_path / "site.yaml"
    f.write_text(SITE + example, encoding="utf-8")
    site = load_site(f)
    assert site.alarm_keys() == list(ALARM_KEYS)
    cfg = site.alarm_config()
    assert cfg.gateway_offline.silence_s == 45 and cfg.ack_link_ttl_s == 3600
    assert cfg.public_url == "https://alarms.example.com" and cfg.comm_errors.min_polls == 20
    assert [d.id for d in cfg.devices] == ["d1"] and cfg.people[0].id == "li_wei"
    as_alarm_file = load_site_alarms(f).model_dump(exclude={"devices"})
    assert as_alarm_file == cfg.model_dump(exclude={"devices"}), "read as an alarm file: the same settings"


@pytest.mark.parametrize(
    ("text", "line", "key", "msg"),
    [
        ("gateway_offline: {silence: -5}\n", 4, "gateway_offline.silence", "greater than 0"),
        ("gatway_offline: {silence: 5}\n", 4, "gatway_offline", "unknown key"),
        ("ack_link_ttl: soon\n", 4, "ack_link_ttl", "must be a number"),
        ("public_url: [a]\n", 4, "public_url", "must be text"),
        ("comm_errors:\n  raise: 0.1\n  clear: 0.2\n", 4, "comm_errors", "`clear` must be below `raise`"),
        ("people:\n  - {id: li, name: Li, tier: one, channels: [{url: 'json://x/y'}]}\n", 5, "people[0].tier",
         "whole number"),
        ("alarm_overrides:\n  - {rule: waterflow}\n  - {rule: no_such_rule}\n", 6, "alarm_overrides[1].rule",
         "no profile has an alarm rule"),
        ("alarm_overrides:\n  - {rule: connector_overtemp, clear: 80}\n", 5, "alarm_overrides[0]", "clear"),
    ],
)
def test_alarm_key_mistakes_name_file_line_and_key(tmp_path: Path, text: str, line: int, key: str, msg: str) -> None:
    f = tmp_path / "site.yaml"
    f.write_text(SITE + text)
    for load in (load_site, load_site_alarms):
        with pytest.raises(ConfigError) as e:
            load(f)
        issue = e.value.issues[0]
        assert (issue.file, issue.line) == (str(f), line), str(issue)
        assert issue.key.startswith(key) and msg in issue.message, str(issue)


def test_alarm_settings_come_from_one_file_per_site(tmp_path: Path) -> None:
    plain, keyed, alarms = tmp_path / "plain.yaml", tmp_path / "keyed.yaml", tmp_path / "alarms.yaml"
    plain.write_text(SITE)
    keyed.write_text(SITE + "gateway_offline: {silence: 90}\n")
    alarms.write_text("site: s1\ngateway_offline: {silence: 30}\n")
    a = ("alarms.yaml", load_site_alarms(alarms))
    [only_site] = alarm_configs([("keyed.yaml", load_site(keyed))], [])
    assert only_site.gateway_offline.silence_s == 90 and [d.id for d in only_site.devices] == ["d1"]
    [from_file] = alarm_configs([("plain.yaml", load_site(plain))], [a])
    assert from_file.gateway_offline.silence_s == 30
    [defaults] = alarm_configs([("plain.yaml", load_site(plain))], [])
    assert defaults.site == "s1" and defaults.gateway_offline.silence_s == 45 and not defaults.people
    with pytest.raises(ValueError, match=r"keyed\.yaml \(gateway_offline\) and alarms\.yaml"):
        alarm_configs([("keyed.yaml", load_site(keyed))], [a])
    with pytest.raises(ValueError, match=r"in both alarms\.yaml and other\.yaml"):
        alarm_configs([], [a, ("other.yaml", a[1])])
    [same] = alarm_configs([("keyed.yaml", load_site(keyed))], [("keyed.yaml", load_site_alarms(keyed))])
    assert same.gateway_offline.silence_s == 90, "one file given as both site and alarm file is no conflict"
