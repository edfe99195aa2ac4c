"""The site file: which gateways and devices belong to a site, and how they are labelled.

Identity checks in the ingester rest on this registration (a device must belong to the gateway
in the topic, the gateway to the site), so a mistake here must be caught at `register` time with
file, line and key — hence `device_profiles.located_yaml`. The alarm keys of a site (docs/alarms.md:
`people`, `escalation`, `alarm_overrides`, `inspection_windows`, `gateway_offline`, `comm_errors`,
`ack_link_ttl`, `public_url`) may sit in the same file; they are checked here with the alarm
engine's own models (cloud/alarms/config.py), so a mistake in them is located like any other, and
`SiteFile.alarm_config()` hands them to the engine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cloud.alarms.config import (
    AlarmSiteConfig,
    CommRule,
    GatewayRule,
    InspectionWindow,
    RuleOverride,
    reference_problems,
)
from cloud.notify.config import EscalationPolicy, Person
from device_profiles.located_yaml import Path_, load_model

ALARM_KEYS = ("people", "escalation", "alarm_overrides", "inspection_windows", "gateway_offline", "comm_errors",
              "ack_link_ttl", "public_url")

Id = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
LabelValue = Annotated[str, Field(max_length=128)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeviceEntry(_Strict):
    id: Id
    profile: str
    name: str = ""
    labels: dict[str, LabelValue] = Field(default_factory=dict)
    # Per-instance labels (port / bay number → labels), e.g. {7: {zone: b, fire_lane: "true"}}.
    instance_labels: dict[int, dict[str, LabelValue]] = Field(default_factory=dict)


class GatewayEntry(_Strict):
    id: Id
    name: str = ""
    location: str = ""
    labels: dict[str, LabelValue] = Field(default_factory=dict)
    devices: list[DeviceEntry] = Field(default_factory=list)


class SiteFile(_Strict):
    site: Id
    name: str = ""
    name_zh: str = ""
    auto_enrol: bool = False
    gateways: list[GatewayEntry] = Field(default_factory=list)
    # The alarm keys (docs/alarms.md), validated with the alarm engine's models; None = not set.
    people: list[Person] | None = None
    escalation: EscalationPolicy | None = None
    alarm_overrides: list[RuleOverride] | None = None
    inspection_windows: list[InspectionWindow] | None = None
    gateway_offline: GatewayRule | None = None
    comm_errors: CommRule | None = None
    ack_link_ttl: float | None = Field(default=None, gt=0, description="seconds an acknowledge link stays valid")
    public_url: str | None = Field(default=None, description="base of the acknowledge links")

    def alarm_keys(self) -> list[str]:
        """The alarm keys this file sets."""
        return [k for k in ALARM_KEYS if getattr(self, k) is not None]

    def alarm_config(self) -> AlarmSiteConfig:
        """The alarm part of this site for the engine: its alarm keys (defaults for the rest) and
        its devices with their labels."""
        data: dict[str, Any] = {"site": self.site, "name": self.name, "name_zh": self.name_zh}
        data.update({k: getattr(self, k) for k in self.alarm_keys()})
        data["devices"] = [{"id": d.id, "profile": d.profile, "gateway": g.id, "labels": d.labels,
                            "instance_labels": d.instance_labels} for g in self.gateways for d in g.devices]
        return AlarmSiteConfig.model_validate(data)

    @model_validator(mode="after")
    def _unique(self) -> SiteFile:
        gws: set[str] = set()
        devs: set[str] = set()
        for g in self.gateways:
            if g.id in gws:
                raise ValueError(f"gateway {g.id!r} is listed twice")
            gws.add(g.id)
            for d in g.devices:
                if d.id in devs:
                    raise ValueError(f"device {d.id!r} is listed twice (device ids are unique per site)")
                devs.add(d.id)
        return self


def load_site(path: Path | str) -> SiteFile:
    """Load and validate a site file; raises ConfigError (file:line key: message) on mistakes,
    including a profile id that the catalog does not know."""
    from device_profiles.loader import catalog

    def unknown_profiles(site: SiteFile) -> list[tuple[Path_, str]]:
        known = catalog()
        names = ", ".join(sorted(known))
        probs: list[tuple[Path_, str]] = [
            (("gateways", gi, "devices", di, "profile"), f"unknown profile {d.profile!r}; known: {names}")
            for gi, g in enumerate(site.gateways)
            for di, d in enumerate(g.devices)
            if d.profile not in known
        ]
        if site.alarm_overrides:  # overrides against the catalog's rules (unknown rule, broken hysteresis)
            only = AlarmSiteConfig(site=site.site, alarm_overrides=site.alarm_overrides)
            probs += reference_problems(only, known)
        return probs

    return load_model(SiteFile, path, check=unknown_profiles)


def alarm_configs(site_files: list[tuple[str, SiteFile]], alarm_files: list[tuple[str, AlarmSiteConfig]]
                  ) -> list[AlarmSiteConfig]:
    """The engine's alarm settings per site, from (origin, config) pairs: an alarm file (`cloud
    serve --alarms`) for a site, else the alarm keys of its site file (defaults when it sets none).
    Settings written twice are refused rather than one copy silently ignored: two alarm files for
    one site, or an alarm file for a site whose site file sets alarm keys too (unless both are the
    same file)."""
    by_site: dict[str, tuple[str, AlarmSiteConfig]] = {}
    for origin, cfg in alarm_files:
        if cfg.site in by_site and by_site[cfg.site][0] != origin:
            raise ValueError(f"alarm settings of site {cfg.site!r} are in both {by_site[cfg.site][0]} and {origin}")
        by_site[cfg.site] = (origin, cfg)
    for origin, site in site_files:
        if site.site not in by_site:
            by_site[site.site] = (origin, site.alarm_config())
        elif site.alarm_keys() and by_site[site.site][0] != origin:
            raise ValueError(
                f"alarm settings of site {site.site!r} are in both {origin} ({', '.join(site.alarm_keys())}) "
                f"and {by_site[site.site][0]}: keep them in one file")
    return [cfg for _, cfg in by_site.values()]
