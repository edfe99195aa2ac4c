"""One message through the ingester: validate → identity → dedupe → safety and storage.

Pure of network I/O: the MQTT client calls `handle(topic, payload, received)` and the pipeline
talks to its collaborators (dead-letter store, safety sink, storage writer) only through
non-blocking calls. Every refusal has a stable reason label:

    bad_topic, oversized, not_utf8, bad_json, bad_schema      (malformed)
    unknown_site, unknown_gateway, unknown_device              (not registered)
    wrong_identity                                             (device registered to another gateway)

Replays (a sequence number already seen) are not errors: they are counted and dropped.
A `ts` outside the time policy is rebased to the receive time and the gateway's clock flagged
(cloud/ingest/timepolicy.py). Telemetry and event values are checked against the device's profile
(cloud/ingest/typecheck.py): a wrong one is dropped alone (`bad_type`, `unknown_point`: counted in
`points_refused` and kept as a dead letter for inspection), the rest of the message goes on.
Nothing in here may raise to the caller: an unexpected exception becomes dead letter `internal`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from cloud.ingest.dead_letter import DeadLetterStore
from cloud.ingest.dedupe import Deduper
from cloud.ingest.timepolicy import GatewayClock, TimePolicy, rebase
from cloud.ingest.typecheck import all_exact, check_scalar, check_values, exact_types
from cloud.safety import SafetyMessage, SafetySink
from cloud.state.registry import DeviceEntry, Directory
from cloud.tsdb.lineproto import Series, TsPoint
from cloud.tsdb.mapping import DeviceSeries
from device_profiles import wire
from device_profiles.loader import get_profile
from device_profiles.timeseries import Mapping
from device_profiles.valuekinds import ValueKind, value_kinds

log = logging.getLogger(__name__)
Kind = wire.Kind
TELEMETRY_KINDS = wire.TELEMETRY_KINDS
SEQ_KINDS = (Kind.TELEMETRY, Kind.URGENT, Kind.EVENT, Kind.HEALTH)


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
    rebased: int = 0  # messages whose ts was outside the time policy (stored at receive time)
    points_refused: Counter[str] = field(default_factory=Counter)  # bad_type, unknown_point


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
        time_policy: TimePolicy | None = None,
    ) -> None:
        self.dead = dead
        self.safety = safety
        self.storage = storage
        self.dedupe = deduper or Deduper()
        self.on_status = on_status  # returns True if the directory changed (auto-enrolment)
        self.stats = PipelineStats()
        self.time_policy = time_policy or TimePolicy()
        # The policy's window as plain floats: checked on every message (inf: that side is off).
        pol = self.time_policy
        self._future_s = float("inf") if pol.future_s is None else pol.future_s
        self._past_s = float("inf") if pol.past_s is None else pol.past_s
        self.clocks: dict[tuple[str, str], GatewayClock] = {}
        self.clocks_dirty: set[tuple[str, str]] = set()
        self._kinds: dict[str, dict[str, ValueKind]] = {}  # profile id → point id → kind
        self._exact: dict[str, dict[str, type]] = {}  # profile id → point id → Python type
        self.last_values: dict[tuple[str, str], tuple[dict[str, Any], float]] = {}
        # Which message last set a device's values: (epoch, seq, time). Values are ordered by seq
        # (the gateway's own order), never by ts alone: a wrong clock cannot freeze them.
        self._lv_order: dict[tuple[str, str], tuple[str, int, float]] = {}
        # Last time (ms) given to a rebased reading of a device: a rebased burst (a 1970 clock's
        # backlog) gets one distinct millisecond per message, so the store keeps every reading.
        self._rebased_ms: dict[tuple[str, str], int] = {}
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
            if not self.dedupe.accept(dkey, msg.seq, msg.epoch):
                self.stats.duplicates += 1
                return "duplicate"
            msg, skew, ts = self._judge_time(rt, msg, received)
            return self._accept(rt, msg, rdev, received, ts, skew, topic, payload)
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
        msg, skew, ts = self._judge_time(t, msg, received)

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
                if not self.dedupe.accept(dkey, msg.seq, msg.epoch):
                    self.stats.duplicates += 1
                    return "duplicate"
        elif kind is Kind.STATUS and self.on_status:
            self.on_status(site, gw, msg)
        return self._accept(t, msg, dev, received, ts, skew, topic, payload)

    def _judge_time(self, t: wire.Topic, msg: Any, received: float) -> tuple[Any, float | None, float]:
        """Apply the time policy: (message, None, ts) or (rebased message, the gateway's skew, the
        receive time). Before the identity checks (a birth's time decides which status wins), so
        nothing is recorded here: `_accept` records it for accepted messages only."""
        ts = msg.ts.timestamp()
        if received - self._past_s <= ts <= received + self._future_s:
            return msg, None, ts
        skew = round(ts - received, 3)
        msg = rebase(msg, received - ts)
        if t.kind is Kind.GATEWAY_HEALTH and msg.clock_skew_s is None:
            msg = msgspec.structs.replace(msg, clock_skew_s=skew)  # what the engine judges it by
        return msg, skew, received

    def _clock(self, key: tuple[str, str]) -> GatewayClock:
        c = self.clocks.get(key)
        if c is None:
            c = self.clocks[key] = GatewayClock()
        self.clocks_dirty.add(key)
        return c

    def _kinds_of(self, profile: str) -> dict[str, ValueKind]:
        k = self._kinds.get(profile)
        if k is None:
            k = self._kinds[profile] = value_kinds(get_profile(profile))
        return k

    def _typecheck(self, t: wire.Topic, msg: Any, dev: DeviceEntry, topic: str, payload: bytes) -> Any:
        """Telemetry and event values against the device's profile; wrong points dropped alone."""
        if t.kind in TELEMETRY_KINDS:
            exact = self._exact.get(dev.profile)
            if exact is None:
                exact = self._exact[dev.profile] = exact_types(self._kinds_of(dev.profile))
            if all_exact(msg.values, exact):
                return msg
            c = check_values(msg.values, self._kinds_of(dev.profile))
            msg = msgspec.structs.replace(msg, values=c.values)
            if not c.refused:
                return msg
            refused = c.refused
        else:
            if msg.point is None or (msg.value is None and msg.previous is None):
                return msg
            k = self._kinds_of(dev.profile).get(msg.point)
            value, previous = check_scalar(k, msg.value), check_scalar(k, msg.previous)
            if value is msg.value and previous is msg.previous:
                return msg
            bad = (value is None) != (msg.value is None) or (previous is None) != (msg.previous is None)
            msg = msgspec.structs.replace(msg, value=value, previous=previous)
            if not bad:
                return msg
            assert k is not None  # check_scalar leaves values of unknown points alone
            refused = [(msg.point, "bad_type", f"{msg.point}: event value is not a {k.value}")]
        for _, reason, _ in refused:
            self.stats.points_refused[reason] += 1
        self.dead.add(topic, refused[0][1], "; ".join(d for *_, d in refused), payload)
        return msg

    def _accept(
        self,
        t: wire.Topic,
        msg: Any,
        dev: DeviceEntry | None,
        received: float,
        ts: float,
        skew: float | None = None,
        topic: str = "",
        payload: bytes = b"",
    ) -> str:
        """Hand an accepted message to the safety path, then to storage."""
        kind, site, gw = t.kind, t.site, t.gateway
        stats = self.stats
        stats.accepted += 1
        stats.by_kind[kind] += 1
        if skew is not None:
            stats.rebased += 1
            self._clock((site, gw)).rebase_seen(skew, received)
        if kind is Kind.GATEWAY_HEALTH and msg.clock_skew_s is not None and skew is None:
            self._clock((site, gw)).edge_report(msg.clock_skew_s, received)
        if kind in TELEMETRY_KINDS and dev is not None:
            exact = self._exact.get(dev.profile)
            if exact is None or not all_exact(msg.values, exact):
                msg = self._typecheck(t, msg, dev, topic, payload)
        elif kind is Kind.EVENT and dev is not None:
            msg = self._typecheck(t, msg, dev, topic, payload)
        # Safety first, and without waiting on anything. Nothing is made after it was received: a
        # `ts` ahead by less than the policy's tolerance is stored as sent, but the alarm engine
        # sees it at the receive time, so it can never make a later message look older.
        evidence = rebase(msg, received - ts) if ts > received else msg
        self.safety.put(SafetyMessage(site, gw, t.device, kind, evidence, received, skew))

        if kind in TELEMETRY_KINDS and dev is not None:
            key = (site, dev.id)
            ds = self._series.get(key) or self._device_series(dev)
            ts_ms = round(ts * 1000)
            if skew is not None:
                ts_ms = max(ts_ms, self._rebased_ms.get(key, 0) + 1)
                self._rebased_ms[key] = ts_ms
            pts = ds.points(msg.values, ts_ms)
            if pts:
                stats.points += len(pts)
                self.storage.put(pts, received)
            stats.last_edge_lag = received - ts
            self._last_values(key, msg, min(ts, received))
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
            if msg.clock_skew_s is not None:
                fields["clock_skew_s"] = float(msg.clock_skew_s)
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

    def _last_values(self, key: tuple[str, str], msg: wire.Telemetry, t: float) -> None:
        """Merge into the device's last values if this message is newer by seq: the same epoch and
        a higher seq, or another epoch (a restarted count). `t` (never after the receive time) is
        kept monotonic per device, because replicas (and the registry) order by it."""
        order = self._lv_order.get(key)
        if order is not None:
            epoch, seq, t_prev = order
            if epoch == msg.epoch and msg.seq < seq:
                return  # a backfilled (older) reading must not overwrite a newer value
            t = max(t, t_prev)
        self._lv_order[key] = (msg.epoch, msg.seq, t)
        prev = self.last_values.get(key)
        if prev is None:
            self.last_values[key] = (dict(msg.values), t)
        else:
            prev[0].update(msg.values)
            self.last_values[key] = (prev[0], t)

    def _gw_point_series(self, measurement: str, site: str, gw: str, device: str) -> Series:
        key = (measurement, f"{site}/{gw}", device)
        s = self._gw_series.get(key)
        if s is None:
            tags = {"site": site, "gateway": gw}
            if device:
                tags["device"] = device
            s = self._gw_series[key] = Series.make(measurement, tags)
        return s

    def take_clocks(self) -> dict[tuple[str, str], GatewayClock]:
        """Gateway clocks that changed since the last call (copies: the ingest thread goes on)."""
        keys, self.clocks_dirty = self.clocks_dirty, set()
        return {k: dataclasses.replace(self.clocks[k]) for k in keys}

    def take_last_values(self) -> dict[tuple[str, str], tuple[dict[str, Any], float]]:
        out, self.last_values = self.last_values, {}
        return out
