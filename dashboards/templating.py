"""Expand Grafana template variables in an InfluxQL query the way Grafana's InfluxDB data source does.

Used by the tests (to run every panel's query on a real InfluxDB) and by the docs renderer. Grafana
formats a variable used inside a regex (`/^$site$/`) by regex-escaping each value and joining
several with `|` in a group: `(a|b)`. `$timeFilter` becomes a time condition and `$__interval` the
group-by interval Grafana derived from the range and panel width (or the panel's minimum).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

_VAR = re.compile(r"\$(\w+)|\$\{(\w+)\}")
_REGEX_SPECIAL = re.compile(r"([\\^$.|?*+()\[\]{}/])")


def regex_escape(value: str) -> str:
    """Grafana's `escapeRegex` plus `/` (the InfluxQL regex delimiter)."""
    return _REGEX_SPECIAL.sub(r"\\\1", value)


def format_value(values: str | Sequence[str]) -> str:
    if isinstance(values, str):
        return regex_escape(values)
    if len(values) == 1:
        return regex_escape(values[0])
    return "(" + "|".join(regex_escape(v) for v in values) + ")"


def time_filter(start_ms: int | None = None, end_ms: int | None = None, relative: str = "24h") -> str:
    """`time >= now() - 24h` for a relative range, or absolute bounds in ms like Grafana sends."""
    if start_ms is None:
        return f"time >= now() - {relative}"
    cond = f"time >= {start_ms}ms"
    if end_ms is not None:
        cond += f" and time <= {end_ms}ms"
    return cond


def interpolate(
    query: str, variables: Mapping[str, str | Sequence[str]], timefilter: str, interval: str
) -> str:
    """Replace `$timeFilter`, `$__interval` and every `$name` in `variables`; unknown names are an error,
    so a query that references a variable the dashboard does not define cannot slip through."""
    builtins = {"timeFilter": timefilter, "__interval": interval}

    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name in builtins:
            return builtins[name]
        if name.startswith("tag_") or name == "col":
            return m.group(0)  # alias patterns, not query variables
        if name not in variables:
            raise KeyError(f"query uses undefined variable ${name}")
        return format_value(variables[name])

    return _VAR.sub(sub, query)


def interval_seconds(interval: str) -> int:
    n, unit = int(interval[:-1]), interval[-1]
    return n * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]


def effective_interval(auto: str, min_interval: str | None) -> str:
    """Grafana uses the panel's minimum interval when the automatic one would be shorter."""
    if min_interval and interval_seconds(min_interval) > interval_seconds(auto):
        return min_interval
    return auto
