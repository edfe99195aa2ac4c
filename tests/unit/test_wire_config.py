"""The remote configuration part of the wire contract against docs/wire.md: every config example
decodes, the documented canonical JSON hashes (hashlib, not our code) to the documented digest, and
our digest of the documented config is that digest."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
import yaml

from device_profiles import wire
from edge_agent.remote import digest, text_digest

DOC = (Path(__file__).parents[2] / "docs" / "wire.md").read_text()
DIGEST = "8ec446b2c4c1cad2d5b851d30a04b86f67751573ad8fd5f04322e0293f14942d"


def examples() -> list[tuple[str, str]]:
    return re.findall(r"```json config:([a-z-]+)\n(.*?)```", DOC, re.S)


def test_every_config_kind_has_an_example() -> None:
    assert {k for k, _ in examples()} == {k.value for k in wire.ConfigKind}


@pytest.mark.parametrize(("kind", "body"), examples())
def test_config_examples_decode(kind: str, body: str) -> None:
    msg = wire.decode_config(wire.ConfigKind(kind), body.encode())
    assert msg.v == 1 and msg.ts.tzinfo is not None
    assert wire.decode_config(wire.ConfigKind(kind), wire.encode(msg)) == msg
    if isinstance(msg, (wire.ConfigSet, wire.ConfigRunning)):
        assert msg.digest == DIGEST and text_digest(msg.config) == DIGEST


def test_documented_digest() -> None:
    canonical = re.search(r"```text canonical\n(.*?)\n```", DOC, re.S)
    assert canonical is not None
    assert hashlib.sha256(canonical.group(1).encode()).hexdigest() == DIGEST
    config = re.search(r"has the canonical JSON", DOC)
    block = re.findall(r"```yaml\n(.*?)```", DOC, re.S)[0]
    assert config is not None and digest(yaml.safe_load(block)) == DIGEST
    assert f'"config_digest": "{DIGEST}"' in DOC


def test_config_topics() -> None:
    assert wire.config_topic("shelter-a", "gw1", wire.ConfigKind.DESIRED) == "sw/v1/shelter-a/gw1/config"
    assert wire.parse_config_topic("sw/v1/shelter-a/gw1/config-result") == (
        "shelter-a", "gw1", wire.ConfigKind.RESULT)
    for bad in ("sw/v1/shelter-a/gw1/chg1/config", "sw/v1/a/b/configs", "sw/v1/a/+/config"):
        with pytest.raises(wire.WireError):
            wire.parse_config_topic(bad)
    with pytest.raises(wire.WireError):
        wire.parse_topic("sw/v1/shelter-a/gw1/config")  # never mistaken for a device's topic
    bad_set = b'{"v": 1, "ts": "2026-11-25T04:00:00Z", "version": 0, "config": "", "digest": "x"}'
    with pytest.raises(wire.WireError) as e:
        wire.decode_config(wire.ConfigKind.DESIRED, bad_set)
    assert e.value.reason == "bad_schema"
