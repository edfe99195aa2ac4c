"""Remote configuration rules shared by the cloud and the gateway. Pure.

The cloud accepts a desired config only if it passes `edge-agent check` (`parse_config`) AND these
rules, and the gateway checks the same again before it tries one. They are the changes that would
lose data or cut the gateway off no matter what its devices say:

* `site` and `gateway` are the gateway's identity: the broker binds its credentials to its topics,
  so a config naming another gateway would publish where it may not (cut off).
* `state_dir` and `outbox.path` hold the outbox and the sequence numbers: moving them remotely
  would strand what is waiting to be sent.
* the uplink password is never sent or stored by the cloud: a remote config carries none and the
  gateway keeps its own (`merge_secrets`).

`digest` names a config's content (no comments, no key order, no password), so the cloud and the
gateway can tell the same config apart from a different one whatever the file looks like.
`plan_change` says which buses must be rebuilt and which devices must prove they answer.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from device_profiles.located_yaml import ConfigError, Issue, located, parse_yaml
from device_profiles.model import Profile
from edge_agent.config import AgentConfig, Device, parse_config

SECRET = ("uplink", "password")


def redact(data: dict[str, Any]) -> dict[str, Any]:
    """A config's data without the uplink password."""
    out = dict(data)
    up = out.get("uplink")
    if isinstance(up, dict) and "password" in up:
        out["uplink"] = {k: v for k, v in up.items() if k != "password"}
    return out


def digest(data: dict[str, Any]) -> str:
    """SHA-256 of the content: canonical JSON of the data, keys sorted, password left out."""
    canon = json.dumps(redact(data), sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canon.encode()).hexdigest()


def text_digest(text: str) -> str:
    data = yaml.safe_load(text)
    return digest(data if isinstance(data, dict) else {})


def redacted_text(data: dict[str, Any], header: str = "") -> str:
    return header + yaml.safe_dump(redact(data), sort_keys=False, allow_unicode=True, width=110)


def merge_secrets(new: dict[str, Any], old: AgentConfig | None) -> dict[str, Any]:
    """The new config's data with the password the gateway has now (a remote config has none)."""
    out = dict(new)
    up = dict(out.get("uplink") or {})
    if old is not None and old.uplink.password is not None and "password" not in up:
        up["password"] = old.uplink.password
    out["uplink"] = up
    return out


def remote_problems(cfg: AgentConfig, data: dict[str, Any], site: str, gateway: str,
                    running: AgentConfig | None) -> list[tuple[tuple[str | int, ...], str]]:
    """What a remote config may not change, each with the key it concerns."""
    out: list[tuple[tuple[str | int, ...], str]] = []
    if cfg.site != site:
        out.append((("site",), f"this is gateway {gateway} of site {site}: a remote config cannot move it to "
                               f"site {cfg.site} (its broker credentials only allow its own topics)"))
    if cfg.gateway != gateway:
        out.append((("gateway",), f"this is gateway {gateway}: a remote config cannot rename it to {cfg.gateway} "
                                  "(its broker credentials only allow its own topics)"))
    up = data.get("uplink")
    if isinstance(up, dict) and "password" in up:
        out.append((("uplink", "password"), "a remote config carries no password: the gateway keeps its own "
                                            "(set passwords on site or by enrolment)"))
    if running is not None:
        if cfg.state_dir != running.state_dir:
            out.append((("state_dir",), f"stays {running.state_dir} (it holds the outbox and the sequence numbers; "
                                        "move it on site)"))
        if cfg.outbox.path != running.outbox.path:
            out.append((("outbox", "path"), f"stays {running.outbox.path or 'unset'} (move the outbox on site)"))
    return out


@dataclass
class Checked:
    cfg: AgentConfig
    profiles: dict[str, Profile]
    data: dict[str, Any]
    warnings: list[Issue]


def check_remote(text: str, name: str, site: str, gateway: str, running: AgentConfig | None,
                 base_dir: Path, catalog: dict[str, Profile] | None = None) -> Checked:
    """`edge-agent check` plus the remote rules, or ConfigError with every located problem."""
    cfg, profiles, warnings = parse_config(text, name, base_dir, catalog)
    data, node = parse_yaml(text, name)
    probs = remote_problems(cfg, data, site, gateway, running)
    if probs:
        raise ConfigError(located(name, node, probs))
    return Checked(cfg, profiles, data, warnings)


# ---------------------------------------------------------------------------------- change plan
def _bus_sig(cfg: AgentConfig, name: str) -> str:
    bus = cfg.bus(name)
    devs = sorted((d.model_dump(mode="json") for d in cfg.devices if d.bus == name and d.enabled),
                  key=lambda d: str(d["id"]))
    return json.dumps([bus.model_dump(mode="json"), devs], sort_keys=True)


def _comm(cfg: AgentConfig, d: Device) -> str:
    """What decides whether a device can be reached: its bus settings, unit id and profile."""
    return json.dumps([cfg.bus(d.bus).model_dump(mode="json"), d.address, d.profile], sort_keys=True)


@dataclass
class Plan:
    """How to go from the running config to a new one without touching what did not change."""

    stop: set[str] = field(default_factory=set)  # buses of the running config to stop
    start: set[str] = field(default_factory=set)  # buses of the new config to (re)build
    comm_changed: set[str] = field(default_factory=set)  # devices new, or moved / re-addressed / re-profiled
    reattached: set[str] = field(default_factory=set)  # same settings, but their bus is rebuilt
    uplink_changed: bool = False
    same: bool = False  # identical content: nothing to do

    def judged(self, answering_before: set[str]) -> set[str]:
        """Devices that must answer before the new config is kept: every device whose
        communication settings changed or that is new, and every device that answered before and
        sits on a rebuilt bus. A device that did not answer before and whose settings did not
        change does not block a change (it would block every change of a site with one dead device)."""
        return self.comm_changed | (self.reattached & answering_before)


def plan_change(old: AgentConfig, new: AgentConfig, old_data: dict[str, Any], new_data: dict[str, Any]) -> Plan:
    p = Plan()
    p.same = digest(old_data) == digest(new_data)
    old_names = {b.name for b in old.buses}
    new_names = {b.name for b in new.buses}
    for name in old_names:
        if name not in new_names or _bus_sig(old, name) != _bus_sig(new, name):
            p.stop.add(name)
    for name in new_names:
        if name not in old_names or _bus_sig(old, name) != _bus_sig(new, name):
            p.start.add(name)
    old_devs = {d.id: d for d in old.devices if d.enabled}
    for d in new.devices:
        if not d.enabled or d.bus not in p.start:
            continue
        o = old_devs.get(d.id)
        if o is None or _comm(old, o) != _comm(new, d):
            p.comm_changed.add(d.id)
        else:
            p.reattached.add(d.id)
    p.uplink_changed = old.uplink.model_dump(exclude={"password"}) != new.uplink.model_dump(exclude={"password"})
    return p
