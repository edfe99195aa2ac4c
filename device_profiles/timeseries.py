"""Telemetry values → time-series rows, following a profile's `timeseries:` mapping. Pure.

Every row is tagged with site, gateway and device; a block measurement also gets a tag named
after the block (`port`, `bay`) holding the instance number, plus any fixed tags the profile
declares and labels the site gives (shelter, zone). The cloud's sinks and the dashboards' queries
both follow this one mapping.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from device_profiles.model import Profile, split_point_id

FieldValue = bool | int | float | str


@dataclass(slots=True)
class Row:
    measurement: str
    tags: dict[str, str]
    fields: dict[str, FieldValue] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Target:
    measurement: str
    field: str
    fixed_tags: tuple[tuple[str, str], ...]


class Mapping:
    """Precomputed lookup from a point's (block, key) to its measurement and field."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self._targets: dict[tuple[str | None, str], list[_Target]] = {}
        for ts in profile.timeseries:
            tags = tuple(sorted(ts.tags.items()))
            for f in ts.fields:
                self._targets.setdefault((ts.block, f), []).append(_Target(ts.measurement, f, tags))

    def rows(
        self,
        values: dict[str, FieldValue],
        base_tags: dict[str, str],
        instance_tags: dict[int, dict[str, str]] | None = None,
    ) -> list[Row]:
        """Group one message's values into rows (one per measurement and block instance).

        `instance_tags` adds per-instance labels, e.g. {7: {"zone": "b", "fire_lane": "true"}}."""
        out: dict[tuple[str, str | None, int | None], Row] = {}
        for pid, value in values.items():
            block, index, key = split_point_id(pid)
            for t in self._targets.get((block, key), ()):
                rk = (t.measurement, block, index)
                row = out.get(rk)
                if row is None:
                    tags = dict(base_tags)
                    tags.update(t.fixed_tags)
                    if block is not None and index is not None:
                        tags[block] = str(index)
                        if instance_tags and index in instance_tags:
                            tags.update(instance_tags[index])
                    row = out[rk] = Row(t.measurement, tags)
                row.fields[t.field] = value
        return list(out.values())
