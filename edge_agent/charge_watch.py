"""The edge side of the charge-session analytics: one `ChargeWatch` per charger, fed what the bus
reads, turning its findings into `abnormal_charge` events (docs/wire.md) and, where the site allows
it (`charge_analytics.stop_port`), a port stop on a confident, severe finding — written like an
interlock, so it works with the uplink down and is reported as an `interlock` event.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

from device_profiles import charge_session as cs
from device_profiles import wire
from device_profiles.model import Family, Profile
from edge_agent.config import ChargeAnalytics
from edge_agent.interlocks import Action

RULE = "abnormal_charge"


def applies(profile: Profile) -> bool:
    """A charger whose ports report at least temperature and current."""
    if profile.family is not Family.CHARGER or "port" not in profile.block_keys():
        return False
    keys = profile.point_keys("port")
    return {"connector_temp", "current"} <= keys


class EdgeChargeWatch:
    def __init__(self, profile: Profile, cfg: ChargeAnalytics) -> None:
        settings: cs.Settings = replace(cs.Settings(), **cfg.overrides())  # type: ignore[arg-type]
        self.watch = cs.ChargeWatch.for_profile(profile, settings)
        self.scale = cfg.time_scale
        self.stop_port = cfg.stop_port and profile.command("port_enable") is not None
        self._t0: float | None = None

    @classmethod
    def for_device(cls, profile: Profile, cfg: ChargeAnalytics) -> EdgeChargeWatch | None:
        return cls(profile, cfg) if cfg.enabled and applies(profile) else None

    def observe(self, values: dict[str, Any], now: float) -> list[cs.Finding]:
        """`now`: wall-clock seconds; `time_scale` stretches it for simulated sites."""
        if self.scale != 1.0:
            if self._t0 is None:
                self._t0 = now
            now = self._t0 + (now - self._t0) * self.scale
        return self.watch.observe(values, now)

    def event(self, f: cs.Finding, ts: Any, seq: int) -> wire.Event:
        data = f.data()
        text = f"port {f.port}: " + cs.describe(data, self.watch.cutoff_c)
        return wire.Event(
            ts=ts,
            seq=seq,
            id=wire.new_id(),
            kind="abnormal_charge",
            severity="critical" if f.severe else "major",
            point=f"port.{f.port}.connector_temp",
            value=round(f.temp_c, 1),
            text=text,
            data=data,
        )

    def stop(self, f: cs.Finding) -> Action | None:
        """The port stop a severe finding calls for, if this site allows it."""
        if not (self.stop_port and f.severe):
            return None
        return Action(
            rule=RULE,
            command="port_enable",
            index=f.port,
            value=False,
            point=f"port.{f.port}.connector_temp",
            reading=round(f.temp_c, 1),
            threshold=self.watch.cutoff_c,
            reason=f"abnormal charge ({f.reason})",
            trip=uuid.uuid4().hex[:16],  # one stop per session: its own episode for the cloud's interlock alarm
        )
