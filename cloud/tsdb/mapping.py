"""Readings → points, following `device_profiles.timeseries.Mapping` (the one mapping that sinks
and dashboards share), with the per-point work cached.

`Mapping.rows` builds tag dicts per message; at tens of thousands of messages a second that is
the hot path, so the result for each point id (which series, which field) is computed once per
device by asking the Mapping itself about that single point, and reused.
"""

from __future__ import annotations

from cloud.tsdb.lineproto import Series, TsPoint
from device_profiles.model import split_point_id
from device_profiles.timeseries import FieldValue, Mapping

MAX_CACHED_IDS = 20_000  # point ids per device; unknown ids are cached too, so bound it


class DeviceSeries:
    def __init__(
        self,
        mapping: Mapping,
        base_tags: dict[str, str],
        instance_tags: dict[int, dict[str, str]] | None = None,
    ) -> None:
        self.mapping = mapping
        self.base_tags = base_tags
        self.instance_tags = instance_tags or {}
        self._targets: dict[str, list[tuple[Series, str]]] = {}
        # (measurement, block, instance) -> Series: every point of one port shares its series, so
        # the tags are sorted and escaped once per port, not once per point id.
        self._series: dict[tuple[str, str | None, int | None], Series] = {}

    def _resolve(self, pid: str) -> list[tuple[Series, str]]:
        out: list[tuple[Series, str]] = []
        block, index, _ = split_point_id(pid)
        for row in self.mapping.rows({pid: 0}, self.base_tags, self.instance_tags):
            sk = (row.measurement, block, index)
            s = self._series.get(sk)
            if s is None:
                s = self._series[sk] = Series.make(row.measurement, row.tags)
            out.extend((s, f) for f in row.fields)
        if len(self._targets) < MAX_CACHED_IDS:
            self._targets[pid] = out
        return out

    def points(self, values: dict[str, FieldValue], ts_ms: int) -> list[TsPoint]:
        groups: dict[str, TsPoint] = {}
        targets = self._targets
        for pid, v in values.items():
            tl = targets.get(pid)
            if tl is None:
                tl = self._resolve(pid)
            for s, f in tl:
                p = groups.get(s.key)
                if p is None:
                    p = groups[s.key] = TsPoint(s, {}, ts_ms)
                p.fields[f] = v
        return list(groups.values())
