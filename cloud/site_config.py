"""The site file: which gateways and devices belong to a site, and how they are labelled.

Identity checks in the ingester rest on this registration (a device must belong to the gateway
in the topic, the gateway to the site), so a mistake here must be caught at `register` time with
file, line and key — hence `device_profiles.located_yaml`. The alarm engine keeps its own sections
(`people`, `escalation`, `alarm_overrides`, `inspection_windows`) in the same file; they are
accepted here as opaque values and interpreted there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from device_profiles.located_yaml import Path_, load_model

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
    # Owned by the alarm engine; kept verbatim.
    people: dict[str, Any] | list[Any] | None = None
    escalation: dict[str, Any] | list[Any] | None = None
    alarm_overrides: dict[str, Any] | list[Any] | None = None
    inspection_windows: dict[str, Any] | list[Any] | None = None

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
        return [
            (("gateways", gi, "devices", di, "profile"), f"unknown profile {d.profile!r}; known: {names}")
            for gi, g in enumerate(site.gateways)
            for di, d in enumerate(g.devices)
            if d.profile not in known
        ]

    return load_model(SiteFile, path, check=unknown_profiles)
