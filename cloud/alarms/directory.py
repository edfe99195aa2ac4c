"""Who is this device? Site + gateway + device → its profile and labels.

A protocol so the engine does not care where the answer comes from: the static implementation
here reads the site file; at merge the ingest registry (devices announced in gateway birth
messages, checked against the site file) implements the same `lookup`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from cloud.alarms.config import AlarmSiteConfig


@dataclass(frozen=True, slots=True)
class DeviceRef:
    profile_id: str
    labels: dict[str, str] = field(default_factory=dict)
    instance_labels: dict[int, dict[str, str]] = field(default_factory=dict)


class Directory(Protocol):
    def lookup(self, site: str, gateway: str, device: str) -> DeviceRef | None:
        """The device's profile and labels, or None if it is not registered."""

    def devices(self) -> list[tuple[str, str, str]]:
        """Every (site, gateway, device) known, so silence can be detected from the start."""


class StaticDirectory:
    """Built from site files: `devices: [{id, profile, gateway, labels, instance_labels}]`."""

    def __init__(self, sites: list[AlarmSiteConfig]) -> None:
        self._refs: dict[tuple[str, str, str], DeviceRef] = {}
        for s in sites:
            for d in s.devices:
                self._refs[(s.site, d.gateway, d.id)] = DeviceRef(
                    d.profile, dict(d.labels), {k: dict(v) for k, v in d.instance_labels.items()}
                )

    def lookup(self, site: str, gateway: str, device: str) -> DeviceRef | None:
        return self._refs.get((site, gateway, device))

    def devices(self) -> list[tuple[str, str, str]]:
        return list(self._refs)


class RegistryDirectory:
    """The ingest registry as the alarm engine's Directory (who is this device?), from a snapshot
    refreshed every few seconds — an enrolled gateway's devices are known within `refresh_s`."""

    def __init__(self, registry: Any, refresh_s: float = 5.0) -> None:
        self.registry = registry
        self.refresh_s = refresh_s
        self._snap = registry.directory()
        self._at = time.monotonic()

    def _dir(self) -> Any:
        if time.monotonic() - self._at > self.refresh_s:
            self._snap, self._at = self.registry.directory(), time.monotonic()
        return self._snap

    def lookup(self, site: str, gateway: str, device: str) -> Any:
        e = self._dir().devices.get((site, device))
        if e is None or e.gateway != gateway:
            return None
        return DeviceRef(e.profile, dict(e.labels), {int(k): dict(v) for k, v in e.instance_labels.items()})

    def devices(self) -> list[tuple[str, str, str]]:
        return [(e.site, e.gateway, e.id) for e in self._dir().devices.values()]
