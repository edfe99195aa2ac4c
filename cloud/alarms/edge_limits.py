"""Which of a device's alarm limits a site moved: what the cloud tells its gateway (`limits`, docs/wire.md).
Pure.

The gateway sends a reading that crosses one of its profile's limits on the safety lane (`urgent`,
edge_agent/urgency.py), but a site's `alarm_overrides` of a threshold rule's `raise`/`clear` live in
the cloud; without them a reading that crosses only an overridden limit rides the main lane, behind
any backlog. The overrides are read off the rules the alarm engine itself judges the device by
(`AlarmEngine.rules_for`, after overrides), so the gateway gets exactly the engine's limits.
"""

from __future__ import annotations

from collections.abc import Iterable

from device_profiles import wire
from device_profiles.model import AlarmKind, AlarmRule, Profile


def device_overrides(profile: Profile, effective: Iterable[AlarmRule]) -> list[wire.LimitOverride]:
    """The threshold rules of `effective` (the device's rules after the site's overrides) whose limits
    differ from `profile`'s own. A rule the site switched off is absent from `effective`: nothing is sent
    for it (the gateway still judges the profile's limits, which at worst sends a reading early)."""
    own = {r.key: r for r in profile.alarms if r.kind is AlarmKind.THRESHOLD and r.point}
    out = []
    for r in effective:
        base = own.get(r.key)
        if base is None or r.kind is not AlarmKind.THRESHOLD or r.raise_at is None or r.clear_at is None:
            continue
        if (r.raise_at, r.clear_at) != (base.raise_at, base.clear_at):
            out.append(wire.LimitOverride(rule=r.key, raise_at=r.raise_at, clear_at=r.clear_at))
    return out
