"""Is a desired config acceptable for this gateway? The checks of `edge-agent check` (the same
code: edge_agent.config.parse_config, on the cloud's profile catalog) plus the remote rules
(edge_agent.remote), against the config the gateway reported running. Pure apart from the catalog.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from device_profiles import wire
from device_profiles.located_yaml import ConfigError, Issue
from device_profiles.model import Profile
from edge_agent.budget import config_budgets, describe
from edge_agent.config import AgentConfig
from edge_agent.remote import check_remote, digest


@dataclass
class Verdict:
    ok: bool
    problems: list[Issue] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # old key names, bus budgets that do not fit
    budgets: list[str] = field(default_factory=list)
    digest: str = ""


def running_config(text: str) -> AgentConfig | None:
    """The gateway's running config (as it reported it, without password), if it parses."""
    try:
        data = yaml.safe_load(text) if text else None
        return AgentConfig.model_validate(data) if isinstance(data, dict) else None
    except (yaml.YAMLError, ValueError):
        return None


def validate(site: str, gateway: str, text: str, running_text: str, catalog: dict[str, Profile],
             name: str | None = None) -> Verdict:
    name = name or f"{site}/{gateway} config"
    if len(text.encode()) > wire.MAX_CONFIG_TEXT:
        return Verdict(False, [Issue(name, 0, "", f"larger than {wire.MAX_CONFIG_TEXT // 1024} KiB")])
    try:
        checked = check_remote(text, name, site, gateway, running_config(running_text), Path("."), catalog)
    except ConfigError as e:
        return Verdict(False, e.issues)
    budgets = config_budgets(checked.cfg, checked.profiles)
    warnings = [str(w) for w in checked.warnings] + [w for b in budgets if (w := b.warning())]
    return Verdict(True, [], warnings, [describe(b) for b in budgets], digest(checked.data))


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON merge patch: mappings merge key by key, `null` deletes, anything else replaces.
    A rollout applies one patch (e.g. a new broker URL) to each gateway's own config."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def patched(base_text: str, patch_text: str) -> str:
    """A gateway's config text with a rollout's patch (YAML) applied."""
    base = yaml.safe_load(base_text) or {}
    try:
        patch = yaml.safe_load(patch_text) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"the patch is not YAML: {e}") from None
    if not isinstance(patch, dict):
        raise ValueError("a rollout patch is a mapping of the keys to change, e.g. `snapshot_s: 120`")
    return yaml.safe_dump(merge_patch(base, patch), sort_keys=False, allow_unicode=True, width=110)
