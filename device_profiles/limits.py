"""When a value calls for an alarm, and when it lets the alarm clear: the limits of a profile's
threshold and state rules, judged on one value. Pure.

Shared by the cloud's alarm engine (cloud/alarms/rules.py) and the edge, which sends a reading that
crosses one of these limits on the safety lane (`urgent`, docs/wire.md): both must draw the line in
exactly the same place, so the line is drawn here once.
"""

from __future__ import annotations

from typing import Any

from device_profiles.model import AlarmKind, AlarmRule

Scalar = bool | int | float | str


def matches(expected: Any, value: Scalar) -> bool:
    """State rule equality across the YAML/JSON type gap: `true` vs True, `fault` vs "fault"."""
    if isinstance(expected, bool):
        if isinstance(value, str):
            return (
                value.lower() in ("true", "1", "on") if expected else value.lower() in ("false", "0", "off")
            )
        return bool(value) is expected
    if isinstance(expected, str):
        return str(value) == expected
    try:
        return float(value) == float(expected)
    except (TypeError, ValueError):
        return False


def num(value: Scalar) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(value)
    except ValueError:
        return None


def raise_condition(rule: AlarmRule, value: Scalar) -> bool | None:
    """Does `value` call for the alarm? None: the value says nothing (wrong type)."""
    if rule.kind is AlarmKind.STATE:
        return matches(rule.value, value)
    if rule.kind is AlarmKind.THRESHOLD:
        v = num(value)
        if v is None or rule.raise_at is None:
            return None
        return v >= rule.raise_at if rule.direction == "above" else v <= rule.raise_at
    return None


def clear_condition(rule: AlarmRule, value: Scalar) -> bool | None:
    """Does `value` allow the active alarm to clear? Threshold rules clear only past `clear`."""
    if rule.kind is AlarmKind.STATE:
        return not matches(rule.value, value)
    if rule.kind is AlarmKind.THRESHOLD:
        v = num(value)
        if v is None or rule.clear_at is None:
            return None
        return v <= rule.clear_at if rule.direction == "above" else v >= rule.clear_at
    return None
