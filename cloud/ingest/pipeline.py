"""One message through the ingester: validate → identity → dedupe → safety and storage.

Pure of network I/O: the MQTT client calls `handle(topic, payload, received)` and the pipeline
talks to its collaborators (dead-letter store, safety sink, storage writer) only through
non-blocking calls. Every refusal has a stable reason label:

    bad_topic, oversized, not_utf8, bad_json, bad_schema      (malformed)
    unknown_site, unknown_gateway, unknown_device              (not registered)
    wrong_identity                                             (device registered to another gateway)

Replays (a sequence number already seen) are not errors: they are counted and dropped.
Nothing in here may raise to the caller: an unexpected exception becomes dead letter `internal`.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from cloud.ingest.dead_letter import DeadLetterStore
from cloud.ingest.dedupe import Deduper
from cloud.safety import SafetyMessage, SafetySink
from cloud.state.registry import DeviceEntry, Directory
from cloud.tsdb.lineproto import Series, TsPoint
from cloud.tsdb.mapping import DeviceSeries
from device_profiles import wire
from device_profiles.loader import get_profile
from device_profiles.timeseries import Mapping

log = logging.getLogger(__name__)
Kind = wire.Kind
SEQ_KINDS = (Kind.TELEMETRY, Kind.EVENT, Kind.HEALTH)


class Storage(Protocol):
    def put(self, points: list[TsPoint], received: float | None = None) -> None: ...


@dataclass(slots=True)
class PipelineStats:
    received: int = 0
    accepted: int = 0
    duplicates: int = 0
    dead: Counter[str] = field(default_factory=Counter)
    by_kind: dict[Kind, int] = field(default_factory=lambda: dict.fromkeys(Kind, 0))
    points: int = 0
    last_edge_lag: float = 0.0  # receive time − edge timestamp of the last telemetry (seconds)


HEALTH_FIELDS = ("online", "polls", "ok", "timeouts", "crc_errors", "exceptions", "retries", "latency_ms")
GW_HEALTH_FIELDS = ("uptime_s", "outbox_pending", "outbox_bytes", "outbox_dropped")


class Pipeline:
    def __init__(
        self,
        directory: Directory,
        dead: DeadLetterStore,
        safety: SafetySink,
        storage: Storage,
        deduper: Deduper | None = None,
        on_status: Callable[[str, str, wire.Status], bool] | None = None,
    ) -> None:
        self.dead = dead
        self.safety = safety
        self.storage = storage
        self.dedupe = deduper or Deduper()
        self.on_status = on_status  # returns True if the directory changed (auto-enrolment)
        self.stats = PipelineStats()
        self.last_values: dict[tuple[str, str], tuple[dict[str, Any], float]] = {}
        self._topics: dict[str, wire.Topic] = {}
        self._series: dict[tuple[str, str], DeviceSeries] = {}
        self._series_entry: dict[tuple[str, str], DeviceEntry] = {}
        self._gw_series: dict[tuple[str, str, str], Series] = {}
        # Device topics that passed the identity checks under the current directory: topic →
        # (parsed topic, device, dedupe key). Most messages take this road (one dict lookup instead
        # of parsing, three registry lookups and a key string); a new directory starts it afresh.
        self._routes: dict[str, tuple[wire.Topic, DeviceEntry, str]] = {}
        self.set_directory(directory)

    def set_directory(self, directory: Directory) -> None:
        self.directory = directory
        self._routes = {}  # a new dict, not clear(): the ingest thread may be reading the old one
        # Drop cached mappings of devices that changed (profile, labels, gateway).
        self._series = (
            {
                k: v
                for k, v in list(self._series.items())  # the ingest thread may add meanwhile
                if k in directory.devices and self._series_entry.get(k) == directory.devices[k]
            }
            if self._series
            else {}
        )
        self._series_entry = {k: directory.devices[k] for k in self._series}

    def _device_series(self, dev: DeviceEntry) -> DeviceSeries:
        key = (dev.site, dev.id)
        ds = self._series.get(key)
        if ds is None:
            tags = {
                **self.directory.gateway_labels.get((dev.site, dev.gateway), {}),
                **dev.labels,
                "site": dev.site,
                "gateway": dev.gateway,
                "device": dev.id,
            }
            ds = self._series[key] = DeviceSeries(
                Mapping(get_profile(dev.profile)), tags, dev.instance_labels
            )
            self._series_entry[key] = dev
        return ds

    def _reject(self, topic: str, reason: str, detail: str, payload: bytes) -> str:
        self.dead.add(topic, reason, detail, payload)
        self.stats.dead[reason] += 1
        return reason

    def handle(self, topic: str, payload: bytes, received: float) -> str:
        """Process one message; returns the outcome ('ok', 'duplicate' or a dead-letter reason)."""
        self.stats.received += 1
        try:
            return self._handle(topic, payload, received)
        except Exception as e:  # a bug must cost one message (kept), never the process
            log.exception("ingest pipeline failed on %s", topic)
            return self._reject(topic, "internal", f"{type(e).__name__}: {e}", payload)

    def _handle(self, topic: str, payload: bytes, received: float) -> str:
        route = self._routes.get(topic)
        if route is not None:
            rt, rdev, dkey = route
            try:
                msg = wire.decode(rt.kind, payload)
            except wire.WireError as e:
                return self._reject(topic, e.reason, e.detail, payload)
            if not self.dedupe.accept(dkey, msg.seq):
                self.stats.duplicates += 1
                return "duplicate"
            return self._accept(rt, msg, rdev, received)
        return self._check(topic, payload, received)

    def _check(self, topic: str, payload: bytes, received: float) -> str:
        """The first message on a topic (or after a directory change): parse, validate identity."""
        t = self._topics.get(topic)
        if t is None:
            try:
                t = wire.parse_topic(topic)
            except wire.WireError as e:
                return self._reject(topic, e.reason, e.detail, payload)
            if len(self._topics) < 100_000:
                self._topics[topic] = t
        kind = t.kind
        if kind is Kind.CMD:
            return self._reject(topic, "bad_topic", "downlink topic is not ingested", payload)
        try:
            msg = wire.decode(kind, payload)
        except wire.WireError as e:
            return self._reject(topic, e.reason, e.detail, payload)

        d = self.directory
        site, gw = t.site, t.gateway
        if site not in d.sites:
            return self._reject(topic, "unknown_site", f"site {site!r} is not registered", payload)
        if (site, gw) not in d.gateways:
            if kind is Kind.STATUS and d.sites[site] and self.on_status and self.on_status(site, gw, msg):
                d = self.directory  # enrolled from the birth message
            if (site, gw) not in d.gateways:
                return self._reject(
                    topic, "unknown_gateway", f"gateway {gw!r} is not registered to {site!r}", payload
                )
        dev: DeviceEntry | None = None
        if t.device is not None:
            dev = d.devices.get((site, t.device))
            if dev is None:
                return self._reject(
                    topic, "unknown_device", f"device {t.device!r} is not registered", payload
                )
            if dev.gateway != gw:
                return self._reject(
                    topic,
                    "wrong_identity",
                    f"device {t.device!r} belongs to gateway {dev.gateway!r}, not {gw!r}",
                    payload,
                )
            if kind in SEQ_KINDS:
                dkey = f"{site}/{t.device}"
                if len(self._routes) < 100_000:
                    self._routes[topic] = (t, dev, dkey)
                if not self.dedupe.accept(dkey, msg.seq):
                    self.stats.duplicates += 1
                    return "duplicate"
        elif kind is Kind.STATUS and self.on_status:
            self.on_status(site, gw, msg)
        return self._accept(t, msg, dev, received)

    def _accept(self, t: wire.Topic, msg: Any, dev: DeviceEntry | None, received: float) -> str:
        """Hand an accepted message to the safety path, then to storage."""
        kind, site, gw = t.kind, t.site, t.gateway
        stats = self.stats
        stats.accepted += 1
        stats.by_kind[kind] += 1
        # Safety first, and without waiting on anything.
        self.safety.put(SafetyMessage(site, gw, t.device, kind, msg, received))

        if kind is Kind.TELEMETRY and dev is not None:
            ts = msg.ts.timestamp()
            key = (site, dev.id)
            ds = self._series.get(key) or self._device_series(dev)
            pts = ds.points(msg.values, round(ts * 1000))
            if pts:
                stats.points += len(pts)
                self.storage.put(pts, received)
            stats.last_edge_lag = received - ts
            prev = self.last_values.get(key)
            if prev is None:
                self.last_values[key] = (dict(msg.values), ts)
            elif prev[1] <= ts:  # a backfilled (older) reading must not overwrite a newer value
                prev[0].update(msg.values)
                self.last_values[key] = (prev[0], ts)
        elif kind is Kind.HEALTH and dev is not None:
            fields = {f: v for f in HEALTH_FIELDS if (v := getattr(msg, f)) is not None}
            self.storage.put(
                [
                    TsPoint(
                        self._gw_point_series("device_health", site, gw, dev.id),
                        fields,
                        round(msg.ts.timestamp() * 1000),
                    )
                ],
                received,
            )
        elif kind is Kind.GATEWAY_HEALTH:
            fields = {f: getattr(msg, f) for f in GW_HEALTH_FIELDS}
            self.storage.put(
                [
                    TsPoint(
                        self._gw_point_series("gateway_health", site, gw, ""),
                        fields,
                        round(msg.ts.timestamp() * 1000),
                    )
                ],
                received,
            )
        return "ok"

    def _gw_point_series(self, measurement: str, site: str, gw: str, device: str) -> Series:
        key = (measurement, f"{site}/{gw}", device)
        s = self._gw_series.get(key)
        if s is None:
            tags = {"site": site, "gateway": gw}
            if device:
                tags["device"] = device
            s = self._gw_series[key] = Series.make(measurement, tags)
        return s

    def take_last_values(self) -> dict[tuple[str, str], tuple[dict[str, Any], float]]:
        out, self.last_values = self.last_values, {}
        return out
