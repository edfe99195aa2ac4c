"""The alarm keys of a site file: `people`, `escalation`, `alarm_overrides`, `inspection_windows`,
`gateway_offline`, `comm_errors`, `ack_link_ttl`, `public_url`.

These models check them wherever they are written — in the site file (cloud/site_config.py uses
them) or in a separate alarm file (`cloud serve --alarms`) — so mistakes are reported with
file:line key like every other config. `devices` is accepted here too so a standalone alarm config
(tests, the demo) can describe its devices.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cloud.notify.config import EscalationPolicy, Person
from device_profiles.located_yaml import load_model
from device_profiles.model import KEY_RE, AlarmRule, Profile


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class RuleOverride(_Strict):
    """Change a profile rule for the whole site (`device` unset) or one device. Only the listed
    fields change; `enabled: false` switches the rule off."""

    rule: str = Field(pattern=KEY_RE)
    profile: str | None = None
    device: str | None = None
    enabled: bool = True
    severity: Literal["critical", "major", "minor", "warning"] | None = None
    raise_at: float | None = Field(default=None, alias="raise")
    clear_at: float | None = Field(default=None, alias="clear")
    for_s: float | None = Field(default=None, ge=0, le=86400, alias="for")
    rate: float | None = None

    def changes(self) -> dict[str, Any]:
        return {
            k: v
            for k in ("severity", "raise_at", "clear_at", "for_s", "rate")
            if (v := getattr(self, k)) is not None
        }


class InspectionWindow(_Strict):
    """While a window is open, sprinkler alarms of the site are recorded but nobody is woken
    (NFPA 25 tests trip the flow switch on purpose)."""

    start: datetime
    end: datetime
    reason: str = "sprinkler inspection"
    by: str = ""

    @model_validator(mode="after")
    def _order(self) -> InspectionWindow:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("start and end need a time zone, e.g. 2026-11-25T09:00:00+08:00")
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class GatewayRule(_Strict):
    """The gateway-level offline rule (not in any device profile): raised at once by the
    gateway's last will, or after `silence` seconds without any message from it."""

    silence_s: float = Field(default=45, gt=0, le=86400 * 7, alias="silence")
    severity: Literal["critical", "major", "minor", "warning"] = "minor"


class CommRule(_Strict):
    """Built-in trouble alarm from device health: the share of failed polls (timeouts, CRC
    errors, exceptions) between health reports, once at least `min_polls` polls were made."""

    raise_ratio: float = Field(default=0.2, gt=0, le=1, alias="raise")
    clear_ratio: float = Field(default=0.05, ge=0, le=1, alias="clear")
    min_polls: int = Field(default=20, ge=1)
    severity: Literal["critical", "major", "minor", "warning"] = "minor"

    @model_validator(mode="after")
    def _hyst(self) -> CommRule:
        if self.clear_ratio >= self.raise_ratio:
            raise ValueError("`clear` must be below `raise`")
        return self


class DeviceEntry(_Strict):
    id: str
    profile: str
    gateway: str
    labels: dict[str, str] = Field(default_factory=dict)
    instance_labels: dict[int, dict[str, str]] = Field(default_factory=dict)


class AlarmSiteConfig(BaseModel):
    """The alarm part of one site. A full site file may be read as an alarm file too: ingest's own
    keys (`gateways`, `auto_enrol`) are accepted and left to cloud/site_config.py; any other unknown
    key is a mistake (a typo such as `gatway_offline` must not silently keep the default)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    site: str
    name: str = ""
    name_zh: str = ""
    people: list[Person] = Field(default_factory=list)
    escalation: EscalationPolicy = Field(default_factory=EscalationPolicy)
    alarm_overrides: list[RuleOverride] = Field(default_factory=list)
    inspection_windows: list[InspectionWindow] = Field(default_factory=list)
    gateway_offline: GatewayRule = Field(default_factory=GatewayRule)
    comm_errors: CommRule = Field(default_factory=CommRule)
    devices: list[DeviceEntry] = Field(default_factory=list)
    ack_link_ttl_s: float = Field(default=86400, gt=0, alias="ack_link_ttl")
    public_url: str = "http://127.0.0.1:8000"
    # ingest's keys of a full site file (checked by cloud/site_config.py, not used here)
    gateways: list[Any] = Field(default_factory=list, exclude=True)
    auto_enrol: bool = Field(default=False, exclude=True)

    @model_validator(mode="after")
    def _unique_people(self) -> AlarmSiteConfig:
        ids = [p.id for p in self.people]
        dup = {i for i in ids if ids.count(i) > 1}
        if dup:
            raise ValueError(f"duplicate person id(s): {', '.join(sorted(dup))}")
        return self


def reference_problems(
    cfg: AlarmSiteConfig, profiles: dict[str, Profile]
) -> list[tuple[tuple[str | int, ...], str]]:
    """Checks against the profile catalog, each with the key path it concerns: unknown profiles
    and rules, and overrides that would break a rule (e.g. `clear` on the wrong side of `raise`)."""
    probs: list[tuple[tuple[str | int, ...], str]] = []
    for i, d in enumerate(cfg.devices):
        if d.profile not in profiles:
            probs.append((("devices", i, "profile"), f"unknown profile {d.profile!r}"))
    for i, o in enumerate(cfg.alarm_overrides):
        targets = [
            (p, r)
            for p in profiles.values()
            if o.profile in (None, p.id)
            for r in p.alarms
            if r.key == o.rule
        ]
        if not targets:
            probs.append((("alarm_overrides", i, "rule"), f"no profile has an alarm rule {o.rule!r}"))
        for p, r in targets:
            data = r.model_dump(by_alias=False)
            data.update(o.changes())
            try:
                AlarmRule.model_validate(data)
            except ValidationError as e:
                msg = "; ".join(str(x["msg"]).removeprefix("Value error, ") for x in e.errors())
                probs.append((("alarm_overrides", i), f"on {p.id}: {msg}"))
    return probs


def load_site_alarms(path: Path | str, profiles: dict[str, Profile] | None = None) -> AlarmSiteConfig:
    """Load and validate (also against the profile catalog); raises
    device_profiles.located_yaml.ConfigError with file:line:key issues."""
    from device_profiles.loader import catalog

    return load_model(
        AlarmSiteConfig, path, check=lambda cfg: reference_problems(cfg, catalog() if profiles is None else profiles)
    )
