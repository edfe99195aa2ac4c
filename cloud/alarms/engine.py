"""The alarm engine: the SafetySink the ingester feeds, rules → alarms → notifications.

One worker thread owns all evaluation (messages are queued by `put`, which never blocks), so
"exactly one active alarm per (device, rule, instance)" holds in memory without races; the
store's unique index holds it across processes and replicas. The same thread runs the timer
`tick` (retard delays, minimum durations, silence / offline detection, escalation), with times
from an injected clock so tests of 8 h or N minutes run in milliseconds.

Hot path: a routine telemetry message touches only dicts in memory; the database is written only
when something changes (a duration starts or stops, an alarm is raised, cleared or acknowledged).

Order and time (cloud/ordering.py): a device's readings are ordered by its `seq`, point by point,
never by arrival or by the edge's `ts`; durations and rates run on each sample's own time (edge
`ts` clamped to its receive time), and silence on when messages were received. Telemetry may come
merged per device (`Readings`, cloud/ingest/conflate.py) with every sample's own seq and times.
"""

from __future__ import annotations

import functools
import json
import logging
import queue
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cloud import ordering as O
from cloud.alarms import resume as RS
from cloud.alarms import resume_store
from cloud.alarms import rules as R
from cloud.alarms.config import AlarmSiteConfig
from cloud.alarms.directory import DeviceRef, Directory
from cloud.alarms.store import Alarm, AlarmStore, Intent, active_key
from cloud.notify.dispatch import Dispatcher, Job
from cloud.notify.escalation import plan, wants
from cloud.notify.links import AckSigner
from cloud.notify.message import alarm_text
from cloud.notify.outbox import chains, route_text, triage
from cloud.safety import Readings, SafetyMessage
from device_profiles import wire
from device_profiles.loader import catalog
from device_profiles.model import AlarmKind, AlarmRule, Profile, split_point_id

log = logging.getLogger(__name__)

GATEWAY_RULE = "gateway_offline"
# The transition mark of a device-offline alarm is the device's message that raised or cleared it
# (health "not answering", then any newer message): not a point's, so under a name no point can have.
DEVICE_MARK = "@device"
# ... and that of an edge-action alarm (event rules) the event that raised, repeated or superseded it.
EVENT_MARK = "@event"
# ... and that of a gateway-offline alarm the gateway status (last will, birth) that raised or cleared
# it: its ts, and as seq 1 offline, 0 online (at one ts a connection's will comes after its birth).
STATUS_MARK = "@status"
CLOCK_RULE = "gateway_clock"
COMM_RULE = "comm_errors"
TRUE_TAGS = ("true", "yes", "1", "on")


@dataclass
class _Ctx:
    """Everything an alarm needs to know about where it is."""

    site: str
    gateway: str
    device: str
    instance: str
    block: str | None
    labels: dict[str, str]


def owns_everything(site: str, gateway: str) -> bool:
    return True


class AlarmEngine:
    def __init__(
        self,
        store: AlarmStore,
        directory: Directory,
        sites: list[AlarmSiteConfig],
        dispatcher: Dispatcher | None = None,
        signer: AckSigner | None = None,
        profiles: dict[str, Profile] | None = None,
        clock: Callable[[], float] = time.time,
        tick_s: float = 0.1,
        seen_flush_s: float = 5.0,
        restart_grace_s: float = 15.0,
    ) -> None:
        self.store = store
        self.directory = directory
        self.sites = {s.site: s for s in sites}
        self.dispatcher = dispatcher
        self.signer = signer
        self.profiles = profiles if profiles is not None else catalog()
        self.clock = clock
        self.tick_s = tick_s
        self.lock = threading.RLock()
        self._q: queue.SimpleQueue[SafetyMessage | Callable[[], None] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._busy = 0
        self._idle = threading.Condition()
        self.adopt_times: dict[str, float] = {}  # seconds per step of the last `adopt` (logged by the cluster)
        self.counters: dict[str, int] = {
            "messages": 0,
            "unknown_device": 0,
            "stale": 0,
            "replayed_events": 0,
            "errors": 0,
            "seq_gaps": 0,
            "pushes_resent": 0,
        }
        # Readings judged history, per device and point: which devices' readings arrive overtaken
        # (an event ahead of its telemetry is normal; a charger port's temperature is not).
        self.stale_by_point: Counter[tuple[str, str, str, str]] = Counter()
        self._rules: dict[tuple[str, str], tuple[dict[str, list[AlarmRule]], list[AlarmRule]]] = {}
        self.tracks: dict[str, tuple[AlarmRule, R.Track, _Ctx]] = {}
        self.active: dict[str, Alarm] = {a.key: a for a in store.list_alarms(active=True, limit=100_000)}
        # Newest message applied per device, and per point with rules (seq order: cloud/ordering.py)
        self._dev_mark: dict[tuple[str, str, str], O.Mark] = {}
        self._marks: dict[tuple[str, str, str], dict[str, O.Mark]] = {}
        # How many samples of each point the conflating gate should hold for this engine
        # (cloud/ingest/conflate.py), learnt as points are met; read by the gate's thread.
        self.point_depths: dict[tuple[str, str, str], dict[str, int]] = {}
        # (site, gateway, device, point id) → (block, instance, [(rule, alarm key)]) of its value rules
        self._plans: dict[tuple[str, str, str, str], tuple[str | None, int | None, list[tuple[AlarmRule, str]]]] = {}
        self._last_seq: dict[tuple[str, str, str], int] = {}
        self._missing: dict[tuple[str, str, str], set[int]] = {}  # seq numbers skipped, not yet filled
        self._comm: dict[tuple[str, str, str], R.CommWindow | None] = {}
        self._comm_at: dict[tuple[str, str, str], O.Mark] = {}  # the health message that set _comm
        # Rule windows changed since the last flush (written with last-seen, every seen_flush_s, so
        # a survivor of a takeover resumes them; cloud/alarms/resume.py): rate track key → point id
        self._rate_dirty: dict[str, str] = {}
        self._comm_dirty: set[tuple[str, str, str]] = set()
        self.resume_store = resume_store.ResumeStore(store)
        self._seen_events: OrderedDict[str, None] = OrderedDict()
        # the newest event (by seq) that raised, repeated or superseded one of a device's edge-action
        # alarms: restored at a takeover, so the dead owner's events delivered again count once
        self._event_mark: dict[tuple[str, str, str], O.Mark] = {}
        # the newest gateway status applied: (online 1 / offline 0 as seq, its ts); older ones are stale
        self._status_mark: dict[tuple[str, str], O.Mark] = {}
        now = clock()
        self.seen_dev: dict[tuple[str, str, str], float] = {}
        self.seen_gw: dict[tuple[str, str], float] = {}
        self.seen_flush_s = seen_flush_s
        self._seen_dirty: set[tuple[str, str, str]] = set()  # (site, gw, device or "") to write
        self._next_seen_flush = 0.0
        self._flusher: threading.Thread | None = None
        # Nothing was heard while the engine was down: give live gateways (QoS 1 backlog, health
        # every few seconds) this long to speak before judging the silence that spans the outage.
        self._quiet_until = now + restart_grace_s
        self._restore_seen(store.load_seen(), now)
        self._pending: set[str] = set()  # track keys with a duration running (checked every tick)
        # Duration starts and stops not yet written: written together at the next tick (≤ tick_s)
        self._tracks_dirty: dict[str, float | None] = {}
        self._next_offline_check = 0.0
        self._windows: dict[str, list[tuple[float, float, str]]] = {}
        self._load_windows()
        self._restore_tracks(store.load_tracks())
        self._restore_windows(self._load_windows_rows("rate", owns_everything),
                              self._load_windows_rows("comm", owns_everything))
        self._restore_transitions(self._load_transitions(owns_everything))
        # Told of every state change, from inside the engine's lock: ("raise" | "ack" | "clear",
        # Alarm, now), ("window", (site, start, end), now) and ("window-end", (site, start, was_end,
        # end), now). cloud/history writes them to the
        # time-series store; it must only enqueue, never block.
        self.on_change: Callable[[str, Any, float], None] | None = None
        # A replica of a cluster judges silence, runs timers and escalates only for the gateways it
        # owns (cloud/cluster/leases.py), and takes others over with `adopt`; alone it owns all.
        self.owns: Callable[[str, str], bool] = owns_everything
        # Pushes with an intent still being sent here: intent id → (site, gateway) (`pushes_settled`)
        self._inflight: dict[int, tuple[str, str]] = {}
        self._inflight_lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> AlarmEngine:
        if self.dispatcher:
            self.dispatcher.warm([c.url for s in self.sites.values() for p in s.people for c in p.channels])
        self._thread = threading.Thread(target=self._loop, name="alarm-engine", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread:
            self._q.put(None)
            self._thread.join(10)
            self._thread = None
        if self._flusher is not None:
            self._flusher.join(30)
        with self.lock:
            self._flush_tracks()
        try:
            self.flush_seen()
            self.flush_windows()
        except Exception:
            log.exception("alarm engine could not save last-seen times or rule windows at stop")

    def put(self, msg: SafetyMessage) -> None:
        """SafetySink: enqueue and return at once."""
        with self._idle:
            self._busy += 1
        self._q.put(msg)

    def after(self, callback: Callable[[], None]) -> None:
        """Call `callback` from the engine thread once every message put before it is processed: the
        ingester acknowledges an event only after the engine has seen it (cloud/ingest/durability.py)."""
        self._q.put(callback)

    def backlog(self) -> int:
        """Messages put and not yet processed (cloud.ingest.priority keeps this short)."""
        return self._busy

    def drain(self, timeout: float = 10.0) -> None:
        """Wait until every message put so far is processed (tests, benchmarks)."""
        with self._idle:
            self._idle.wait_for(lambda: self._busy == 0, timeout)

    def _loop(self) -> None:
        next_tick = time.monotonic()
        while True:
            try:
                msg = self._q.get(timeout=max(0.0, next_tick - time.monotonic()))
            except queue.Empty:
                msg = False  # type: ignore[assignment]
            if msg is None:
                return
            if callable(msg):  # a durability marker (`after`)
                msg()
            elif msg is not False:
                try:
                    self.process(msg)
                except Exception:  # bad input must never kill the safety path
                    self.counters["errors"] += 1
                    log.exception("alarm engine failed on a message from %s/%s", msg.site, msg.gateway)
                finally:
                    with self._idle:
                        self._busy -= 1
                        if self._busy == 0:
                            self._idle.notify_all()
            if time.monotonic() >= next_tick:
                try:
                    self.tick()
                except Exception:  # bad input must never kill the safety path
                    self.counters["errors"] += 1
                    log.exception("alarm engine tick failed")
                next_tick = time.monotonic() + self.tick_s

    # ------------------------------------------------------------------ rules per device
    def rules_for(
        self, site: str, device: str, profile_id: str
    ) -> tuple[dict[str, list[AlarmRule]], list[AlarmRule]]:
        """(value rules by point key, all rules) with the site's and the device's overrides applied."""
        key = (site, device)
        hit = self._rules.get(key)
        if hit is not None:
            return hit
        profile = self.profiles[profile_id]
        cfg = self.sites.get(site)
        out: list[AlarmRule] = []
        for r in profile.alarms:
            enabled, changes = True, {}
            for o in cfg.alarm_overrides if cfg else []:
                if (
                    o.rule != r.key
                    or (o.profile and o.profile != profile_id)
                    or (o.device and o.device != device)
                ):
                    continue
                if o.device is None or o.device == device:
                    enabled = enabled and o.enabled
                    changes.update(o.changes())
            if enabled:
                try:
                    out.append(R.apply_overrides(r, changes))
                except ValueError as e:  # load_site_alarms reports this at load; never drop the rule
                    log.error("site %s device %s: override of %s ignored: %s", site, device, r.key, e)
                    self.counters["errors"] += 1
                    out.append(r)
        by_point: dict[str, list[AlarmRule]] = {}
        for r in out:
            if r.kind in (AlarmKind.THRESHOLD, AlarmKind.STATE, AlarmKind.RATE_OF_RISE) and r.point:
                by_point.setdefault(r.point, []).append(r)
        self._rules[key] = (by_point, out)
        return by_point, out

    # ------------------------------------------------------------------ message processing
    def process(self, msg: SafetyMessage) -> None:
        with self.lock:
            self.counters["messages"] += 1
            if msg.clock_skew is not None or msg.kind is wire.Kind.GATEWAY_HEALTH:
                self._gateway_clock(msg, self.clock())
            now = self.clock()
            p = msg.payload
            gw = (msg.site, msg.gateway)
            # Silence is judged from when a message was received, not from when the engine got to it.
            heard = msg.received if msg.received < now else now
            self.seen_gw[gw] = max(self.seen_gw.get(gw, heard), heard)
            self._seen_dirty.add((msg.site, msg.gateway, ""))
            if msg.kind is wire.Kind.STATUS and isinstance(p, wire.Status):
                # a time past receipt (a wrong clock) counts as the receipt: it must not outrank
                # the statuses sent once the clock is right (cloud/ordering.py: marks are evidence)
                mark = O.Mark(int(p.state == "offline"), min(p.ts.timestamp(), msg.received + wire.CLOCK_TOLERANCE_S))
                if not self._status_news(gw, mark, now):
                    self.counters["stale"] += 1
                    return
                self._status_mark[gw] = mark
                if p.state == "offline":
                    self._raise_gateway(
                        msg.site, msg.gateway, now, f"last will: {p.reason or 'offline'}", msg.received,
                        (STATUS_MARK, mark),
                    )
                else:
                    self._clear(active_key(msg.site, msg.gateway, "", GATEWAY_RULE, ""), now,
                                cause=(STATUS_MARK, mark))
                return
            gk = active_key(msg.site, msg.gateway, "", GATEWAY_RULE, "")
            ga = self.active.get(gk)
            if ga is not None and heard >= ga.raised_at:  # not a message received before the will
                self._clear(gk, now)
            if msg.device is None:
                return
            ref = self.directory.lookup(msg.site, msg.gateway, msg.device)
            if ref is None or ref.profile_id not in self.profiles:
                self.counters["unknown_device"] += 1
                return
            dkey = (msg.site, msg.gateway, msg.device)
            by_point, all_rules = self.rules_for(msg.site, msg.device, ref.profile_id)
            offline_rule = next((r for r in all_rules if r.kind is AlarmKind.OFFLINE), None)
            # Only the device's newest word (by seq) says whether it is alive: held telemetry
            # processed after a newer "not answering" must not clear it, nor the reverse.
            meta = _meta(p, msg.received)
            current = meta is None or self._advance(dkey, meta)
            if isinstance(p, wire.DeviceHealth) and not p.online:
                if not current:
                    self.counters["stale"] += 1
                    return
                # The gateway speaks, the device does not: its silence began at the edge's last good
                # poll (an age on the edge's own clock, so clock skew does not matter). The offline
                # rule's duration still applies, so a breaker that opens for a few seconds is no alarm.
                silent_for = (p.ts - p.last_ok).total_seconds() if p.last_ok is not None else None
                if silent_for is not None and offline_rule and silent_for < offline_rule.for_s:
                    self.seen_dev[dkey] = now - max(0.0, silent_for)  # its last good poll, our clock
                    self._seen_dirty.add(dkey)
                    return
                self.seen_dev.setdefault(dkey, now)
                if offline_rule:
                    ctx = self._ctx(msg.site, msg.gateway, msg.device, ref, None, None)
                    self._raise(
                        offline_rule,
                        ctx,
                        now,
                        None,
                        {"reason": p.detail or "gateway reports no answer", "breaker": p.breaker},
                        msg.received,
                        (DEVICE_MARK, O.mark(meta)) if meta is not None else None,
                    )
                return
            if current:
                alive = heard
                if isinstance(p, wire.DeviceHealth) and p.last_ok is not None:
                    # A health report is the gateway speaking; the device last answered at last_ok
                    # (an age on the edge's clock): a device that just went quiet is not alive now.
                    alive = heard - max(0.0, (p.ts - p.last_ok).total_seconds())
                self.seen_dev[dkey] = max(self.seen_dev.get(dkey, alive), alive)
                self._seen_dirty.add(dkey)
                if offline_rule:
                    self._clear(active_key(msg.site, msg.gateway, msg.device, offline_rule.key, ""), now,
                                cause=(DEVICE_MARK, O.mark(meta)) if meta is not None else None)
            if isinstance(p, Readings):
                for lo, hi in p.seqs:
                    self._track_run(dkey, lo, hi)
            elif meta is not None:
                self._track_seq(dkey, meta.seq)
            if isinstance(p, wire.DeviceHealth):
                self._health(msg, ref, p, now)
            touched: set[str] = set()
            if isinstance(p, wire.Telemetry) and meta is not None:
                for pid, v in p.values.items():
                    self._value(msg, ref, by_point, pid, v, now, touched, meta)
            elif isinstance(p, Readings):
                depths = self.point_depths.get(dkey)
                if depths is None:
                    depths = self.point_depths[dkey] = {}
                for pid, run in p.points.items():
                    if pid not in depths:
                        depths[pid] = point_depth(by_point, pid)
                    for sample, v in run:
                        self._value(msg, ref, by_point, pid, v, now, touched, sample)
            elif isinstance(p, wire.Event):
                if p.id in self._seen_events:
                    self.counters["replayed_events"] += 1
                    return
                self._seen_events[p.id] = None
                if len(self._seen_events) > 200_000:
                    self._seen_events.popitem(last=False)
                if p.kind == "state" and p.point is not None and p.value is not None and meta is not None:
                    # Events travel ahead of telemetry (safety lane): older telemetry of this point
                    # arriving after it is history (seq order of the point), other points are not.
                    self._value(msg, ref, by_point, p.point, p.value, now, touched, meta)
                em = self._event_mark.get(dkey)
                if meta is not None and em is not None and not O.newer(meta, em):
                    self.counters["replayed_events"] += 1  # judged by the previous owner (or before a restart)
                    all_rules = [r for r in all_rules if r.kind is not AlarmKind.EVENT]
                for r in all_rules:
                    if r.kind is AlarmKind.EVENT and r.event_kind == p.kind:
                        block, idx, _ = split_point_id(p.point or "")
                        ctx = self._ctx(msg.site, msg.gateway, msg.device, ref, block, idx)
                        detail: dict[str, Any] = {
                            "edge_action": p.text or p.kind,
                            "event_id": p.id,
                            "point": p.point,
                            "data": dict(p.data),
                        }
                        if block:
                            detail["block"] = block
                        cause = None
                        if meta is not None:
                            cause = (EVENT_MARK, O.mark(meta))
                            self._event_mark[dkey] = cause[1]
                        self._raise_event(r, ctx, now, p, detail, msg.received, cause)
                        touched.add(ctx.instance)
            if touched:
                self._composites(msg, ref, all_rules, touched, now)

    def _gateway_clock(self, msg: SafetyMessage, now: float) -> None:
        """`gateway_clock` (minor, trouble): the gateway's clock is more than CLOCK_TOLERANCE_S off
        the cloud's, by its own measurement (gateway health `clock_skew_s`, from the time beacon)
        or because the ingester had to rebase one of its messages (docs/wire.md, "Time"). Cleared
        by a gateway health that reports a skew within the tolerance."""
        p = msg.payload
        skew = p.clock_skew_s if isinstance(p, wire.GatewayHealth) else msg.clock_skew
        if skew is None:
            return
        k = active_key(msg.site, msg.gateway, "", CLOCK_RULE, "")
        if abs(skew) <= wire.CLOCK_TOLERANCE_S:
            if isinstance(p, wire.GatewayHealth):
                self._clear(k, now)
            return
        if k in self.active:
            return
        rule = AlarmRule.model_validate(
            {
                "key": CLOCK_RULE,
                "name": "Gateway clock wrong",
                "name_zh": "网关时钟错误",
                "kind": "event",
                "event_kind": "clock",
                "severity": "minor",
            }
        )
        how = "ahead of" if skew > 0 else "behind"
        reason = f"gateway clock {abs(skew):.0f} s {how} the cloud's; its timestamps beyond the tolerance are replaced"
        ctx = _Ctx(msg.site, msg.gateway, "", "", None, {"gateway": msg.gateway})
        self._raise(rule, ctx, now, skew, {"reason": reason, "skew_s": skew}, msg.received)

    def _track_seq(self, dkey: tuple[str, str, str], seq: int) -> None:
        """One counter per device across telemetry, events and health (docs/wire.md). A jump is a
        gap; a backfilled number later fills it. `seq_missing` counts numbers still missing."""
        last = self._last_seq.get(dkey)
        if last is None or seq > last:
            if last is not None and seq > last + 1:
                miss = self._missing.setdefault(dkey, set())
                if len(miss) < 10_000:
                    miss.update(range(last + 1, min(seq, last + 1 + 10_000 - len(miss))))
                self.counters["seq_gaps"] += 1
            self._last_seq[dkey] = seq
        else:
            self._missing.get(dkey, set()).discard(seq)

    def _track_run(self, dkey: tuple[str, str, str], lo: int, hi: int) -> None:
        """Every number lo..hi arrived (merged by the gate, cloud/ingest/conflate.py)."""
        self._track_seq(dkey, lo)
        if hi <= lo:
            return
        if hi > self._last_seq[dkey]:
            self._last_seq[dkey] = hi  # contiguous above lo: no new gap
        miss = self._missing.get(dkey)
        if miss:
            if hi - lo < len(miss):
                miss.difference_update(range(lo + 1, hi + 1))
            else:
                miss.difference_update([s for s in miss if lo < s <= hi])

    def _advance(self, dkey: tuple[str, str, str], meta: O.Meta) -> bool:
        """Is this the device's newest message so far (seq order, cloud/ordering.py)? Then remember it."""
        last = self._dev_mark.get(dkey)
        if O.newer(meta, last):
            if last is not None and meta.epoch != last.epoch:
                # A wiped outbox counts again from 1 (docs/wire.md): the old epoch's count is done.
                self._last_seq.pop(dkey, None)
                self._missing.pop(dkey, None)
            self._dev_mark[dkey] = O.mark(meta)
            return True
        return False

    def seq_missing(self, site: str, gateway: str, device: str) -> int:
        return len(self._missing.get((site, gateway, device), ()))

    def _health(self, msg: SafetyMessage, ref: DeviceRef, p: wire.DeviceHealth, now: float) -> None:
        cfg = self.sites.get(msg.site)
        if cfg is None or msg.device is None:
            return
        rule_cfg = cfg.comm_errors
        dkey = (msg.site, msg.gateway, msg.device)
        k = active_key(msg.site, msg.gateway, msg.device, COMM_RULE, "")
        errors = p.timeouts + p.crc_errors + p.exceptions
        meta = _meta(p, msg.received)
        if meta is not None:
            at = self._comm_at.get(dkey)
            if at is not None and not O.newer(meta, at):
                return  # counted already (read again after a takeover), or overtaken by a newer report
            self._comm_at[dkey] = O.mark(meta)
        self._comm_dirty.add(dkey)
        win, action, ratio = R.comm_step(
            self._comm.get(dkey),
            p.polls,
            errors,
            k in self.active,
            rule_cfg.raise_ratio,
            rule_cfg.clear_ratio,
            rule_cfg.min_polls,
        )
        self._comm[dkey] = win
        if action is R.Action.RAISE:
            rule = AlarmRule.model_validate(
                {
                    "key": COMM_RULE,
                    "name": "Communication errors",
                    "name_zh": "通信故障",
                    "kind": "offline",
                    "severity": rule_cfg.severity,
                    "for": 1,
                }
            )
            detail = {
                "reason": f"{ratio:.0%} of polls failed",
                "timeouts": p.timeouts,
                "crc_errors": p.crc_errors,
                "exceptions": p.exceptions,
                "polls": p.polls,
            }
            self._raise(
                rule,
                self._ctx(msg.site, msg.gateway, msg.device, ref, None, None),
                now,
                ratio,
                detail,
                msg.received,
            )
        elif action is R.Action.CLEAR:
            self._clear(k, now)

    def _ctx(
        self, site: str, gateway: str, device: str, ref: DeviceRef, block: str | None, idx: int | None
    ) -> _Ctx:
        labels = dict(ref.labels)
        if idx is not None:
            labels.update(ref.instance_labels.get(idx, {}))
        return _Ctx(site, gateway, device, "" if idx is None else str(idx), block, labels)

    def _value(
        self,
        msg: SafetyMessage,
        ref: DeviceRef,
        by_point: dict[str, list[AlarmRule]],
        pid: str,
        v: wire.Scalar,
        now: float,
        touched: set[str],
        sample: O.Meta | None = None,
    ) -> None:
        """One reading of one point. With `sample` (its message's seq, ts, receive time), a reading
        older than one already applied to the point is history, and rules run on its own time."""
        dev = msg.device or ""
        plan = self._plans.get((msg.site, msg.gateway, dev, pid))
        if plan is None:  # the point's rules and their alarm keys, worked out once (the hot path)
            block, idx, key = split_point_id(pid)
            inst = "" if idx is None else str(idx)
            plan = self._plans[(msg.site, msg.gateway, dev, pid)] = (block, idx, [
                (r, active_key(msg.site, msg.gateway, dev, r.key, inst))
                for r in by_point.get(key, ()) if r.block == block])
        block, idx, rules = plan
        if not rules:
            return
        t, origin = now, msg.received
        cause: tuple[str, O.Mark] | None = None
        if sample is not None:
            marks = self._marks.get((msg.site, msg.gateway, dev))
            if marks is None:
                marks = self._marks[(msg.site, msg.gateway, dev)] = {}
            if not O.newer(sample, marks.get(pid)):
                self.counters["stale"] += 1  # backlog, or overtaken by a newer reading: not state
                self.stale_by_point[(msg.site, msg.gateway, dev, pid)] += 1
                self._backfill_rates(rules, ref, idx, v, min(O.sample_time(sample.ts, sample.received), now),
                                     now, sample.received, block, pid, touched)
                return
            marks[pid] = cause_mark = O.mark(sample)
            cause = (pid, cause_mark)
            t, origin = min(O.sample_time(sample.ts, sample.received), now), sample.received
        for rule, k in rules:
            if _tagged_out(rule, ref, idx):
                continue
            entry = self.tracks.get(k)
            if entry is None:
                ctx = self._ctx(msg.site, msg.gateway, dev, ref, block, idx)
                entry = (rule, R.Track(active=k in self.active), ctx)
                self.tracks[k] = entry
            _, tr, ctx = entry
            before = tr.pending_since
            self._stepped(rule, k, tr, ctx, before, R.step(rule, tr, v, t), v, now, origin, block, pid, touched,
                          cause)

    def _stepped(self, rule: AlarmRule, k: str, tr: R.Track, ctx: Any, before: float | None, action: R.Action,
                 v: wire.Scalar, now: float, origin: float, block: str | None, pid: str, touched: set[str],
                 cause: tuple[str, O.Mark] | None = None) -> None:
        """What a rule's step changed: its window and hold to save, the alarm to raise or clear (with
        `cause`, the point and mark of the reading that did it: the row's transition mark)."""
        if rule.kind is AlarmKind.RATE_OF_RISE:
            self._rate_dirty[k] = pid
        if tr.pending_since is not None and not tr.active:
            self._pending.add(k)
        else:
            self._pending.discard(k)
        if rule.for_s > 0 and (tr.pending_since is None) != (before is None) and not tr.active:
            self._tracks_dirty[k] = tr.pending_since
        if action is R.Action.RAISE:
            if before is not None and rule.for_s > 0:
                self._tracks_dirty[k] = None
            self._raise(rule, ctx, now, v, {"block": block} if block else {}, origin, cause)
            touched.add(ctx.instance)
        elif action is R.Action.CLEAR:
            self._clear(k, now, cause=cause)
            touched.add(ctx.instance)

    def _backfill_rates(self, rules: list[tuple[AlarmRule, str]], ref: DeviceRef, idx: int | None,
                        v: wire.Scalar, t: float, now: float, origin: float, block: str | None, pid: str,
                        touched: set[str]) -> None:
        """An overtaken reading still counts for the rate of rise of its point (`R.backfill`)."""
        for rule, k in rules:
            entry = self.tracks.get(k)
            if rule.kind is not AlarmKind.RATE_OF_RISE or entry is None or _tagged_out(rule, ref, idx):
                continue  # (no window yet: nothing newer to judge it against)
            _, tr, ctx = entry
            before = tr.pending_since
            action = R.backfill(rule, tr, v, t)
            self._stepped(rule, k, tr, ctx, before, action, tr.samples[-1][1] if tr.samples else v, now, origin,
                          block, pid, touched)

    def _composites(
        self, msg: SafetyMessage, ref: DeviceRef, all_rules: list[AlarmRule], instances: set[str], now: float
    ) -> None:
        for r in all_rules:
            if r.kind is not AlarmKind.COMPOSITE:
                continue
            for inst in instances | {""}:
                keys = [active_key(msg.site, msg.gateway, msg.device or "", o, inst) for o in r.all_of]
                # device-level parts also count for an instance-level composite
                keys_dev = [active_key(msg.site, msg.gateway, msg.device or "", o, "") for o in r.all_of]
                on = all(k in self.active or kd in self.active for k, kd in zip(keys, keys_dev, strict=True))
                if inst and not any(k in self.active for k in keys):
                    on = False  # all parts device-level: that is the device's composite, not one per port
                k = active_key(msg.site, msg.gateway, msg.device or "", r.key, inst)
                if on and k not in self.active:
                    ctx = self._ctx(
                        msg.site, msg.gateway, msg.device or "", ref, None, int(inst) if inst else None
                    )
                    self._raise(r, ctx, now, None, {"all_of": list(r.all_of)}, msg.received)
                elif not on and k in self.active:
                    self._clear(k, now)

    # ------------------------------------------------------------------ raise / clear
    def _inspection(self, site: str, now: float) -> str | None:
        cfg = self.sites.get(site)
        for w in cfg.inspection_windows if cfg else []:
            if w.start.timestamp() <= now < w.end.timestamp():
                return f"inspection window: {w.reason}"
        for start, end, reason in self._windows.get(site, ()):
            if start <= now < end:
                return f"inspection window: {reason}"
        return None

    def _raise(
        self, rule: AlarmRule, ctx: _Ctx, now: float, value: Any, detail: dict[str, Any], origin: float,
        cause: tuple[str, O.Mark] | None = None,
    ) -> Alarm | None:
        """Raise (store, then push) unless already active. `cause`: the point and ordering mark of the
        reading that raised it, committed with the row (`adopt` restores it: `_restore_transitions`)."""
        k = active_key(ctx.site, ctx.gateway, ctx.device, rule.key, ctx.instance)
        existing = self.active.get(k)
        if existing is not None:
            return existing
        a = Alarm(
            id=0,
            site=ctx.site,
            gateway=ctx.gateway,
            device=ctx.device,
            rule=rule.key,
            instance=ctx.instance,
            kind=rule.kind.value,
            severity=rule.severity,
            name=rule.name,
            name_zh=rule.name_zh,
            sprinkler=rule.sprinkler,
            active=True,
            acked=False,
            raised_at=now,
            value=value,
            detail=detail,
            labels=ctx.labels,
        )
        if rule.sprinkler:
            a.suppressed = self._inspection(ctx.site, now)
        a, created = self.store.raise_alarm(a, now, RS.transition_json(*cause) if cause else None)
        self.active[k] = a
        self._changed("raise", a, now)
        if created:  # which replica raised what, from which reading: the log is the only witness
            log.info("alarm %s raised: id %d%s", k, a.id, _reading(cause))
        if created:
            self._notify(a, now, origin)
        return a

    def _raise_event(
        self, rule: AlarmRule, ctx: _Ctx, now: float, ev: wire.Event, detail: dict[str, Any], origin: float,
        cause: tuple[str, O.Mark] | None = None,
    ) -> None:
        """An edge action (interlock) is an alarm only a person resolves. One trip of the edge's
        condition (`data.trip`: its first cut, retries and re-asserts while the port stays hot) is
        one alarm: a repeat updates it (`occurrences`, `last_action`, audit `repeated`) and wakes
        nobody again. A new trip while the previous alarm is still active (someone switched the port
        back on and it overheated again) is a new occurrence: the old alarm is closed as
        `superseded` and a new one is raised and pushed, naming the previous one. Events without a
        trip (edges before it existed) each count as a new trip. `cause` (EVENT_MARK and the event's
        mark) is committed with the row each time, so a survivor knows which events were counted."""
        k = active_key(ctx.site, ctx.gateway, ctx.device, rule.key, ctx.instance)
        trip = ev.data.get("trip")
        if trip is not None:
            detail["trip"] = trip
        old = self.active.get(k)
        if old is not None:
            if trip is not None and old.detail.get("trip") == trip:
                old.occurrences += 1
                old.detail = {**old.detail, "last_action": detail["edge_action"], "last_event_id": ev.id}
                extra = {"mark": RS.transition_json(*cause)} if cause else {}
                self.store.update(old.id, occurrences=old.occurrences, detail=json.dumps(old.detail, default=str),
                                  **extra)
                self.store.add_audit(old.id, now, "repeated", detail=str(detail["edge_action"])[:500])
                return
            detail["previous_alarm"] = old.id
            detail["occurrence"] = int(old.detail.get("occurrence", 1)) + 1
            self._clear(k, now, action="superseded", detail=f"new occurrence (event {ev.id})", resolution=False,
                        cause=cause)
        self._raise(rule, ctx, now, ev.value, detail, origin, cause)

    def _status_news(self, gw: tuple[str, str], mark: O.Mark, now: float) -> bool:
        """Does this gateway status say something new? A status's ts names its connection and a
        connection's will comes after its birth (docs/wire.md, "Gateway status"): a stale will of an
        older connection arriving after a newer birth raises nothing, nor does the same status again
        (a takeover's stream delivering what the dead owner judged, a retained copy at a restart).
        Two allowances, so no sender's mistake mutes the alarm: a will counts unless it is older than
        the birth by more than the clock tolerance (a birth timed when it was sent, not at its will),
        and a kept time in the future (a wrong clock) never blocks a newer status."""
        last = self._status_mark.get(gw)
        if last is None or last.ts > now + wire.CLOCK_TOLERANCE_S:
            return True
        if (mark.ts, mark.seq) == (last.ts, last.seq):
            return False
        if mark.seq == 1 and last.seq == 0:  # a will after a birth
            return mark.ts + wire.CLOCK_TOLERANCE_S >= last.ts
        return (mark.ts, mark.seq) > (last.ts, last.seq)

    def _raise_gateway(self, site: str, gateway: str, now: float, reason: str, origin: float,
                       cause: tuple[str, O.Mark] | None = None) -> None:
        cfg = self.sites.get(site)
        sev = cfg.gateway_offline.severity if cfg else "minor"
        rule = AlarmRule.model_validate(
            {
                "key": GATEWAY_RULE,
                "name": "Gateway offline",
                "name_zh": "网关离线",
                "kind": "offline",
                "severity": sev,
                "for": 1,
            }
        )
        self._raise(
            rule,
            _Ctx(site, gateway, "", "", None, {"gateway": gateway}),
            now,
            None,
            {"reason": reason},
            origin,
            cause,
        )

    def _clear(
        self,
        k: str,
        now: float,
        who: str = "system",
        via: str = "engine",
        action: str = "cleared",
        detail: str = "",
        resolution: bool = True,
        cause: tuple[str, O.Mark] | None = None,
    ) -> bool:
        a = self.active.pop(k, None)
        if a is None:
            return False
        entry = self.tracks.get(k)
        if entry is not None:
            entry[1].active = False
            entry[1].pending_since = None
        self._pending.discard(k)
        self.store.clear(a.id, now, who=who, channel=via, action=action, detail=detail,
                         mark=RS.transition_json(*cause) if cause else None)
        log.info("alarm %s %s: id %d%s", k, action, a.id, _reading(cause))
        a.active, a.cleared_at = False, now
        self._changed("clear", a, now)
        if a.notified and self.dispatcher and resolution:
            cfg = self.sites.get(a.site)
            if cfg and cfg.escalation.notify_resolution:
                self._send(a, [p for p in cfg.people if p.id in a.notified], "resolution", now, now)
        return True

    # ------------------------------------------------------------------ notifications
    def _notify(self, a: Alarm, now: float, origin: float, reminder: bool = False) -> None:
        cfg = self.sites.get(a.site)
        if cfg is None or not wants(cfg.escalation, a.severity):
            return
        if a.suppressed:
            self.store.add_audit(a.id, now, "not-notified", detail=a.suppressed)
            return
        if a.silenced_until and now < a.silenced_until:
            return
        tiers, top, nxt = plan(cfg.escalation, a.raised_at, a.tier, now)
        people = [p for p in cfg.people if p.tier in tiers]
        purpose = "reminder" if (a.tier and top == a.tier) else "alarm"
        jobs = self._jobs(a, people, purpose, now, origin)
        a.tier, a.next_notify_at = top, nxt
        a.notified = sorted(set(a.notified) | {p.id for p in people})
        # The step and its pushes' intents are durable before anything is sent (cloud/notify/outbox.py)
        ids = self.store.set_notify(a.id, a.tier, a.next_notify_at, a.notified,
                                    [Intent(j.person, r, route_text(j.channels), purpose) for j, r in jobs], now)
        self._submit(a, [(j, i) for (j, _), i in zip(jobs, ids, strict=True)])

    def _send(self, a: Alarm, people: list[Any], purpose: str, now: float, origin: float) -> None:
        """Pushes without an intent (resolutions: the alarm is over, nobody re-sends them)."""
        self._submit(a, [(j, None) for j, _ in self._jobs(a, people, purpose, now, origin)])

    def _jobs(self, a: Alarm, people: list[Any], purpose: str, now: float, origin: float,
              only: int | None = None) -> list[tuple[Job, int]]:
        """(job, route) for each of the people's channel chains (cloud/notify/outbox.py `chains`), or
        only route `only`; none without a dispatcher."""
        if not self.dispatcher or not people:
            return []
        cfg = self.sites.get(a.site)
        site_name, site_zh = (cfg.name, cfg.name_zh) if cfg else (a.site, a.site)
        ttl = cfg.ack_link_ttl_s if cfg else 86400
        base = (cfg.public_url if cfg else "").rstrip("/")
        pol = cfg.escalation if cfg else None
        out = []
        for p in people:
            url = None
            if self.signer and purpose != "resolution":
                url = f"{base}/ack/{self.signer.sign(a.id, p.id, now + ttl)}"
            t = alarm_text(a, site_name, site_zh, url, purpose)
            for route, chain in enumerate(chains(p)):
                if only is not None and route != only:
                    continue
                out.append((Job(
                    a.id,
                    p.id,
                    chain,
                    t.title,
                    t.body,
                    purpose,
                    origin,
                    retries=pol.retries if pol else 2,
                    retry_delay_s=pol.retry_delay_s if pol else 1.0,
                ), route))
        return out

    def _submit(self, a: Alarm, jobs: list[tuple[Job, int | None]]) -> None:
        if self.dispatcher is None:
            return
        for job, intent in jobs:
            if intent is not None:
                with self._inflight_lock:
                    self._inflight[intent] = (a.site, a.gateway)
                job.done = functools.partial(self._settled, intent)
            self.dispatcher.submit(job)

    def _settled(self, intent: int, ok: bool) -> None:
        """From the dispatcher's threads: the push of `intent` went out (or every channel failed)."""
        try:
            self.store.settle(intent, "sent" if ok else "failed", "" if ok else "every channel failed")
        finally:
            with self._inflight_lock:
                self._inflight.pop(intent, None)

    def pushes_settled(self, mine: Callable[[str, str], bool]) -> bool:
        """No push of these gateways' alarms is still being sent here: a replica handing gateways over
        waits for this (cloud/cluster/replica.py), so the next owner does not send them again."""
        with self._inflight_lock:
            return not any(mine(*gw) for gw in self._inflight.values())

    def resend(self, mine: Callable[[str, str], bool] = owns_everything) -> int:
        """Re-send what a previous owner of these gateways (a replica that died, this process before a
        crash) intended to push and never finished, and notify alarms it raised but never got to
        notify (cloud/notify/outbox.py says which and why not). Called at a takeover (`adopt`) and at
        the start of a process that owns everything. Never raises: a takeover must not fail over its
        bookkeeping (the next reminder still comes). → pushes re-submitted."""
        if self.dispatcher is None:
            return 0
        try:
            return self._resend(mine)
        except Exception:
            self.counters["errors"] += 1
            log.exception("alarm engine could not re-send the pushes left pending")
            return 0

    def _resend(self, mine: Callable[[str, str], bool]) -> int:
        pending: dict[int, list[dict[str, Any]]] = {}
        for r in self.store.pending_intents():
            if mine(r["site"], r["gateway"]):
                pending.setdefault(r["alarm_id"], []).append(r)
        n = 0
        with self.lock:
            now = self.clock()
            by_id = {a.id: a for a in self.active.values() if mine(a.site, a.gateway)}
            for aid, rows in pending.items():
                a = by_id.get(aid)
                n += self._resend_alarm(a if a is not None else self.store.get(aid), rows, now)
            for a in by_id.values():
                cfg = self.sites.get(a.site)
                if (a.next_notify_at is None and not a.acked and not a.suppressed and a.id not in pending
                        and not (a.silenced_until and now < a.silenced_until)
                        and cfg is not None and wants(cfg.escalation, a.severity)):
                    self.store.add_audit(a.id, now, "push-resumed", detail="raised, never notified")
                    self._notify(a, now, a.raised_at)  # its owner died between raising and notifying
                    n += 1
        return n

    def _resend_alarm(self, a: Alarm | None, rows: list[dict[str, Any]], now: float) -> int:
        verdict = triage(rows, a, now)
        cfg = self.sites.get(a.site) if a is not None else None
        people = {p.id: p for p in cfg.people} if cfg else {}
        again: list[tuple[Job, int | None]] = []
        for r in rows:
            why = verdict[r["id"]]
            if not why and a is not None:
                p = people.get(r["person"])
                jobs = self._jobs(a, [p], r["purpose"], now, r["ts"], only=r["route"] or 0) if p else []
                if jobs:
                    again.append((jobs[0][0], r["id"]))
                    continue
                why = "person or channel no longer configured"
            self.store.settle(r["id"], "dropped", why)
        if a is not None and again:
            self.store.add_audit(a.id, now, "push-resent", detail=", ".join(j.person for j, _ in again)[:500])
            self.counters["pushes_resent"] += len(again)
            self._submit(a, again)
        return len(again)

    # ------------------------------------------------------------------ timers
    def tick(self, now: float | None = None) -> None:
        with self.lock:
            now = self.clock() if now is None else now
            for k in list(self._pending):
                rule, tr, ctx = self.tracks[k]
                if not self.owns(ctx.site, ctx.gateway):
                    continue
                if tr.pending_since is None or tr.active:
                    self._pending.discard(k)
                elif R.due(rule, tr, now) is R.Action.RAISE:
                    self._pending.discard(k)
                    self._tracks_dirty[k] = None
                    self._raise(rule, ctx, now, rule.value, {"block": ctx.block} if ctx.block else {}, now)
            self._flush_tracks()
            self._escalate(now)
            if now >= self._next_seen_flush:
                self._next_seen_flush = now + self.seen_flush_s
                self._seed_seen(now)
                if self._thread is None:
                    self.flush_seen()  # driven by hand (tests, tools): write now
                    self.flush_windows()
                elif self._flusher is None or not self._flusher.is_alive():
                    # thousands of rows take a database a few hundred ms: not on the alarm thread
                    self._flusher = threading.Thread(target=self._flush_quietly, name="alarm-seen", daemon=True)
                    self._flusher.start()
            if now < self._next_offline_check:
                return
            self._next_offline_check = now + 1.0  # silence is judged in seconds, not every tick
            self._check_silence(now)

    def _flush_tracks(self) -> None:
        """Write the durations that started or stopped since the last tick, in one transaction (one
        commit per change cost ~40 % of the engine's time under a busy fleet). A crash loses at most
        one tick of them: a duration that started then starts again with the next reading."""
        if not self._tracks_dirty:
            return
        rows, self._tracks_dirty = self._tracks_dirty, {}
        try:
            self.store.save_tracks(rows)
        except Exception:
            self._tracks_dirty = {**rows, **self._tracks_dirty}  # database away: next tick
            self.counters["errors"] += 1
            log.exception("alarm engine could not save duration timers (will retry)")

    def _check_silence(self, now: float) -> None:
        """Offline by silence: fires at last-seen + silence, but not before the restart grace."""
        if now < self._quiet_until:
            return
        silent_gw: list[tuple[str, str, float]] = []
        owns = self.owns
        for (site, gw), seen in self.seen_gw.items():
            if not owns(site, gw):
                continue
            cfg = self.sites.get(site)
            silence = cfg.gateway_offline.silence_s if cfg else 45.0
            if now - seen > silence and active_key(site, gw, "", GATEWAY_RULE, "") not in self.active:
                silent_gw.append((site, gw, silence))
        if silent_gw:
            fresher = self._others_saw()
            for site, gw, silence in silent_gw:
                seen = max(self.seen_gw[(site, gw)], fresher.get((site, gw, ""), 0.0))
                self.seen_gw[(site, gw)] = seen
                if now - seen > silence:
                    self._raise_gateway(site, gw, now, f"no message for {now - seen:.0f} s", now)
        fresher_dev: dict[tuple[str, str, str], float] | None = None
        for (site, gw, dev), seen in list(self.seen_dev.items()):
            if not owns(site, gw) or active_key(site, gw, "", GATEWAY_RULE, "") in self.active:
                continue  # the gateway alarm says it all; no storm of device alarms
            ref = self.directory.lookup(site, gw, dev)
            if ref is None or ref.profile_id not in self.profiles:
                continue
            _, all_rules = self.rules_for(site, dev, ref.profile_id)
            for r in all_rules:
                if (
                    r.kind is AlarmKind.OFFLINE
                    and now - seen > r.for_s
                    and active_key(site, gw, dev, r.key, "") not in self.active
                ):
                    if fresher_dev is None:
                        fresher_dev = self._others_saw()
                    seen = max(seen, fresher_dev.get((site, gw, dev), 0.0))
                    self.seen_dev[(site, gw, dev)] = seen
                    if now - seen <= r.for_s:
                        continue
                    self._raise(
                        r,
                        self._ctx(site, gw, dev, ref, None, None),
                        now,
                        None,
                        {"reason": f"no message for {now - seen:.0f} s"},
                        now,
                    )

    # ------------------------------------------------------------------ last seen, across restarts
    def _restore_seen(self, saved: dict[tuple[str, str, str], float], now: float) -> None:
        """Silence is judged from the last message stored before a restart; whatever the directory
        knows but the store never saw starts its silence now (at worst, from the restart)."""
        for (site, gw, dev), t in saved.items():
            if dev:
                self.seen_dev[(site, gw, dev)] = t
            else:
                self.seen_gw[(site, gw)] = t
        self._seed_seen(now)

    def _seed_seen(self, now: float) -> None:
        """Devices the directory learnt since (a gateway enrolled at run time) start their silence now."""
        for d in self.directory.devices():
            if d not in self.seen_dev:
                self.seen_dev[d] = now
                self._seen_dirty.add(d)
            if (d[0], d[1]) not in self.seen_gw:
                self.seen_gw[(d[0], d[1])] = now
                self._seen_dirty.add((d[0], d[1], ""))

    def _flush_quietly(self) -> None:
        try:
            self.flush_seen()
            self.flush_windows()
        except Exception:
            self.counters["errors"] += 1
            log.exception("alarm engine could not save last-seen times or rule windows (will retry)")

    def flush_seen(self) -> None:
        """Write the last-seen times that changed (called from `tick` every `seen_flush_s`, and at
        stop): a message costs a set insertion, never a database write."""
        with self.lock:
            dirty, self._seen_dirty = self._seen_dirty, set()
            rows = {k: self.seen_gw[(k[0], k[1])] if not k[2] else self.seen_dev[k] for k in dirty}
        try:
            self.store.save_seen(rows)
        except Exception:
            with self.lock:
                self._seen_dirty |= dirty  # database away: try again at the next flush
            raise

    # ------------------------------------------------------------------ rule windows, across takeovers
    def flush_windows(self, mine: Callable[[str, str], bool] | None = None) -> None:
        """Write the rate-of-rise and comm-error windows that changed since the last flush, of the
        gateways this replica owns (or of `mine`, at a hand-over: the leases are gone by then), in one
        transaction each: a telemetry message costs a dict assignment, never a database write. A
        replica that dies loses at most `seen_flush_s` of them: its successor's windows start from
        the last flush, and the samples since come again from the stream or are news."""
        owns = mine or self.owns
        with self.lock:
            rate_keys = [(k, pid) for k, pid in self._rate_dirty.items() if owns(*k.split("/", 2)[:2])]
            comm_keys = [d for d in self._comm_dirty if owns(d[0], d[1])]
            rates: dict[tuple[str, str, str], dict[str, Any] | None] = {}
            for k, pid in rate_keys:
                del self._rate_dirty[k]
                entry = self.tracks.get(k)
                site, gw, dev, *_ = k.split("/")
                mark = self._marks.get((site, gw, dev), {}).get(pid)
                # a copy of the samples (C speed): encoding them happens outside the engine's lock
                rates[(site, gw, k)] = None if entry is None else RS.rate_row(pid, tuple(entry[1].samples), mark)
            comms: dict[tuple[str, str, str], dict[str, Any] | None] = {}
            for d in comm_keys:
                self._comm_dirty.discard(d)
                win = self._comm.get(d)
                comms[(d[0], d[1], d[2])] = None if win is None else RS.comm_row(win, self._comm_at.get(d))
        try:
            self.resume_store.save("rate", rates)
            self.resume_store.save("comm", comms)
        except Exception:
            with self.lock:  # database away: try again at the next flush (newer changes win)
                for k, pid in rate_keys:
                    self._rate_dirty.setdefault(k, pid)
                self._comm_dirty.update(comm_keys)
            raise

    def _load_windows_rows(self, kind: str, mine: Callable[[str, str], bool]) -> dict[Any, Any]:
        """Saved windows of `kind` ("rate", "comm") of `mine`'s gateways; none if the store fails."""
        try:
            return self.resume_store.load(kind, mine)
        except Exception:
            self.counters["errors"] += 1
            log.exception("alarm engine could not read its saved %s windows; they start afresh", kind)
            return {}

    def _restore_windows(self, rates: dict[Any, dict[str, Any]], comms: dict[Any, dict[str, Any]]) -> None:
        """Rate-of-rise and comm-error windows as the store holds them (`_load_windows_rows`). A row
        that no longer matches the site file (device gone, profile or rule changed, malformed) is
        skipped: that window starts afresh, as it did before windows were kept."""
        skipped = 0
        for (site, gw, k), data in rates.items():
            parsed = RS.parse_rate(data)
            parts = k.split("/")
            ref = self.directory.lookup(site, gw, parts[2]) if len(parts) == 5 and parts[:2] == [site, gw] else None
            if parsed is None or ref is None or ref.profile_id not in self.profiles:
                skipped += 1
                continue
            pid, samples, mark = parsed
            dev, rule_key, inst = parts[2], parts[3], parts[4]
            block, idx, point = split_point_id(pid)
            by_point, _ = self.rules_for(site, dev, ref.profile_id)
            rule = next((r for r in by_point.get(point, ()) if r.key == rule_key and r.block == block
                         and r.kind is AlarmKind.RATE_OF_RISE), None)
            if rule is None or ("" if idx is None else str(idx)) != inst:
                skipped += 1
                continue
            entry = self.tracks.get(k)
            if entry is None:
                entry = (rule, R.Track(active=k in self.active), self._ctx(site, gw, dev, ref, block, idx))
                self.tracks[k] = entry
            entry[1].samples = samples
            if mark is not None:
                self._remember_mark((site, gw, dev), pid, mark)
        for (site, gw, dev), data in comms.items():
            comm = RS.parse_comm(data)
            ref = self.directory.lookup(site, gw, dev)
            if comm is None or ref is None or site not in self.sites:
                skipped += 1
                continue
            self._comm[(site, gw, dev)] = comm[0]
            if comm[1] is not None:
                self._comm_at[(site, gw, dev)] = comm[1]
        if skipped:
            log.warning("alarm engine: %d saved rule windows no longer match the site files; ignored", skipped)

    TRANSITION_HORIZON_S = 3600.0  # alarms cleared longer ago than this: their readings are long acknowledged

    def _load_transitions(self, mine: Callable[[str, str], bool]) -> list[tuple[tuple[str, str, str], str, O.Mark]]:
        """((site, gateway, device), point id, mark) of the readings that raised or cleared the alarms
        of `mine`'s gateways (active ones, and those cleared within TRANSITION_HORIZON_S), oldest
        first; none if the store fails (then those readings are judged again, as before marks)."""
        try:
            rows = self.store.transition_marks(self.clock() - self.TRANSITION_HORIZON_S)
        except Exception:
            self.counters["errors"] += 1
            log.exception("alarm engine could not read the alarms' transition marks")
            return []
        out = []
        for site, gw, dev, raw in rows:
            parsed = RS.parse_transition(raw) if mine(site, gw) else None
            if parsed is not None:
                out.append(((site, gw, dev), parsed[0], parsed[1]))
        return out

    def _restore_transitions(self, rows: list[tuple[tuple[str, str, str], str, O.Mark]]) -> None:
        """A point's ordering mark is at least that of the newest reading that raised or cleared one of
        its alarms. A replica that dies has judged messages it never acknowledged (acknowledgements wait
        for its durability point, its replay check is saved a second or two later still,
        cloud/ingest/service.py): the stream delivers them to the survivor as news, and judged again
        (ordering marks start afresh at `adopt`) a waterflow flip the dead owner had raised and cleared
        was raised and pushed a second time, a new row cleared 0.1 s later by the flip's "off" delivered
        again (tests/integration/test_cluster_chaos.py `test_kill9_of_a_replica`, 2026-12-02); an older
        "off" delivered again would clear the alarm a newer reading raised. Readings the dead owner never
        judged are newer than its last transition: still news (tests/integration/test_takeover_replay.py).
        A device-offline alarm's mark is the device's (DEVICE_MARK): its "not answering" and the message
        that cleared it, delivered again, are then older than the device's newest word. An edge-action
        alarm's (EVENT_MARK) is the newest event that raised, repeated or superseded it: events up to
        it, delivered again, neither count as repeats nor raise a new occurrence. A gateway-offline
        alarm's (STATUS_MARK) is the will or birth that raised or cleared it (`_status_news`)."""
        for dkey, pid, mark in rows:
            if pid == STATUS_MARK:  # rows oldest first: a later row's status is the newer one
                last = self._status_mark.get(dkey[:2])
                if last is None or mark.ts >= last.ts:
                    self._status_mark[(dkey[0], dkey[1])] = mark
            elif pid in (DEVICE_MARK, EVENT_MARK):
                per_device = self._dev_mark if pid == DEVICE_MARK else self._event_mark
                last = per_device.get(dkey)
                if last is None or O.newer(O.Meta(mark.seq, mark.ts, mark.ts, mark.epoch), last):
                    per_device[dkey] = mark
            else:
                self._remember_mark(dkey, pid, mark)

    def _remember_mark(self, dkey: tuple[str, str, str], pid: str, mark: O.Mark) -> None:
        """Set a point's ordering mark to `mark` unless it already has a newer one."""
        marks = self._marks.setdefault(dkey, {})
        last = marks.get(pid)
        if last is None or O.newer(O.Meta(mark.seq, mark.ts, mark.ts, mark.epoch), last):
            marks[pid] = mark

    def hand_over(self, mine: Callable[[str, str], bool]) -> None:
        """Gateways handed to another replica (a planned move): save what they have not saved yet, so
        the next owner resumes their timers, last-seen times and rule windows exactly."""
        with self.lock:
            self._flush_tracks()
        try:
            self.flush_seen()
            self.flush_windows(mine)
        except Exception:  # the database away: the next owner resumes from the last periodic flush
            self.counters["errors"] += 1
            log.exception("alarm engine could not save state at a hand-over")

    def _others_saw(self) -> dict[tuple[str, str, str], float]:
        """Last-seen times in the store: another replica (shared subscriptions split one gateway's
        messages between replicas) may have heard what this one did not. Read only before raising."""
        try:
            return self.store.load_seen()
        except Exception:
            log.exception("alarm engine could not read last-seen times; judging from its own")
            self.counters["errors"] += 1
            return {}

    def _escalate(self, now: float) -> None:
        for a in list(self.active.values()):
            if not self.owns(a.site, a.gateway):
                continue
            if self.owns is not owns_everything and (
                (a.suppressed or (a.next_notify_at is not None and now >= a.next_notify_at)) and not self._fresh(a)
            ):
                continue  # acknowledged, silenced or resolved on another replica meanwhile
            if a.suppressed and self._inspection(a.site, now) is None:
                # the inspection window closed and the condition is still there: wake people now
                a.suppressed = None
                self.store.update(a.id, suppressed=None)
                self.store.add_audit(a.id, now, "window-ended")
                self._notify(a, now, now)
                continue
            if a.acked or a.suppressed or a.next_notify_at is None or now < a.next_notify_at:
                continue
            self._notify(a, now, now)

    def _fresh(self, a: Alarm) -> bool:
        """Bring `a` up to date from the shared store (people act on any replica); False if it is no
        longer active there."""
        row = self.store.get(a.id)
        if row is None or not row.active:
            if self.active.get(a.key) is a:
                del self.active[a.key]
            return False
        a.acked, a.acked_by, a.acked_at, a.acked_via = row.acked, row.acked_by, row.acked_at, row.acked_via
        a.silenced_until, a.silence_reason = row.silenced_until, row.silence_reason
        a.next_notify_at, a.tier, a.notified, a.suppressed = row.next_notify_at, row.tier, row.notified, row.suppressed
        return True

    # ------------------------------------------------------------------ a cluster's hand-overs
    def adopt(self, mine: Callable[[str, str], bool], rate_windows: bool = True) -> None:
        """Take gateways over from another replica (or bring them up to date): their active alarms and
        escalation schedule, pending durations and last-seen times, as the shared store holds them,
        their rate-of-rise and comm-error windows as last flushed (`flush_windows`), and the pushes
        their previous owner intended and never finished. Hysteresis needs nothing more: an active
        threshold alarm comes back active and clears only past `clear`.

        `rate_windows=False` leaves out what only telemetry reads: a cluster's takeover loads it with
        `adopt_rate_windows` once the partitions' safety lanes are read, so their events wait for less
        (cloud/cluster/replica.py). The re-sending stays here, before any of the gateways' messages:
        run later, it took this replica's own pushes of the takeover, still pending, for the previous
        owner's and sent them twice (tests/integration/test_cluster_chaos.py, 2026-12-02)."""
        t0 = time.monotonic()
        alarms = [a for a in self.store.list_alarms(active=True, limit=100_000) if mine(a.site, a.gateway)]
        t1 = time.monotonic()
        tracks = {k: t for k, t in self.store.load_tracks().items() if mine(*k.split("/", 2)[:2])}
        seen = self.store.load_seen()
        t2 = time.monotonic()
        comms = self._load_windows_rows("comm", mine)
        rates = self._load_windows_rows("rate", mine) if rate_windows else {}
        transitions = self._load_transitions(mine)
        t3 = time.monotonic()
        with self.lock:
            for k in [k for k, a in self.active.items() if mine(a.site, a.gateway)]:
                del self.active[k]
            for a in alarms:
                self.active[a.key] = a
            for k in [k for k, (_r, _t, c) in self.tracks.items() if mine(c.site, c.gateway)]:
                del self.tracks[k]
                self._pending.discard(k)
            # Ordering marks and seq counts (cloud/ordering.py) of adopted devices start afresh: the
            # previous owner's newest messages come again from the stream, in order.
            for d in [d for d in {*self._dev_mark, *self._comm, *self._marks, *self._event_mark} if mine(d[0], d[1])]:
                for per_device in (self._dev_mark, self._marks, self._last_seq, self._missing, self._comm,
                                   self._comm_at, self._event_mark):
                    per_device.pop(d, None)
            for g in [g for g in self._status_mark if mine(*g)]:
                del self._status_mark[g]
            self._restore_tracks(tracks)
            # ... except the rate-of-rise and comm-error windows (with their points' marks), which
            # resume from the previous owner's last flush (cloud/alarms/resume.py), and the marks of
            # the readings that raised or cleared their alarms, committed with the rows: the previous
            # owner's newest messages come again, but those it had already judged are history
            self._restore_windows(rates, comms)
            self._restore_transitions(transitions)
            for (site, gw, dev), t in seen.items():
                if not mine(site, gw):
                    continue
                if dev:
                    self.seen_dev[(site, gw, dev)] = max(t, self.seen_dev.get((site, gw, dev), 0.0))
                else:
                    self.seen_gw[(site, gw)] = max(t, self.seen_gw.get((site, gw), 0.0))
        t4 = time.monotonic()
        self.resend(mine)  # pushes the previous owner intended and never finished
        self.adopt_times = {"alarms": t1 - t0, "tracks": t2 - t1, "windows": t3 - t2, "apply": t4 - t3,
                            "resend": time.monotonic() - t4}

    def adopt_rate_windows(self, mine: Callable[[str, str], bool]) -> None:
        """The rest of `adopt(mine, rate_windows=False)`: the rate-of-rise windows, which only
        telemetry reads. Called before the gateways' telemetry is read."""
        t0 = time.monotonic()
        rates = self._load_windows_rows("rate", mine)
        with self.lock:
            self._restore_windows(rates, {})
        self.adopt_times["rate_windows"] = time.monotonic() - t0

    def refresh(self) -> None:
        """Re-read the active alarms of the gateways this replica owns (a cluster: another replica's
        web page may have resolved one); cheap, called every few seconds.

        Only alarms that were already active before the store was read may be dropped: one the engine
        raised while the query ran is missing from its answer, and dropping it left its row active for
        ever (the clear found nothing to clear; bench/cluster.py, a waterflow flipped on and off within
        2 s under load, 2026-12-02)."""
        with self.lock:
            before = {k: a.id for k, a in self.active.items()}
        alarms = {a.key: a for a in self.store.list_alarms(active=True, limit=100_000) if self.owns(a.site, a.gateway)}
        with self.lock:
            now = self.clock()
            for k, a in list(self.active.items()):
                if self.owns(a.site, a.gateway) and k not in alarms and before.get(k) == a.id:
                    del self.active[k]
                    entry = self.tracks.get(k)
                    if entry is not None:
                        entry[1].active = False
                    a.active, a.cleared_at = False, now
                    self._changed("clear", a, now)  # the owner writes the history point

    def _restore_tracks(self, saved: dict[str, float]) -> None:
        """Rebuild timers persisted before a restart (a retard half elapsed stays half elapsed)."""
        for k, since in saved.items():
            site, gw, dev, rule_key, inst = k.split("/")
            ref = self.directory.lookup(site, gw, dev)
            if ref is None or ref.profile_id not in self.profiles:
                continue
            _, all_rules = self.rules_for(site, dev, ref.profile_id)
            rule = next((r for r in all_rules if r.key == rule_key), None)
            if rule is None:
                continue
            ctx = self._ctx(site, gw, dev, ref, rule.block, int(inst) if inst else None)
            self.tracks[k] = (rule, R.Track(pending_since=since, active=k in self.active), ctx)
            if k not in self.active:
                self._pending.add(k)

    # ------------------------------------------------------------------ people's actions (API)
    def acknowledge(self, alarm_id: int, who: str, via: str) -> bool:
        with self.lock:
            now = self.clock()
            ok = self.store.ack(alarm_id, who, via, now)
            for a in self.active.values():
                if a.id == alarm_id:
                    a.acked, a.acked_by, a.acked_at, a.acked_via, a.next_notify_at = True, who, now, via, None
                    self._changed("ack", a, now)
            return ok

    def resolve(self, alarm_id: int, who: str, via: str, note: str = "") -> bool:
        """A person closes an active alarm (edge actions clear no other way). Whoever resolves it
        has seen it: an alarm nobody acknowledged yet is acknowledged by them first."""
        with self.lock:
            now = self.clock()
            for k, a in list(self.active.items()):
                if a.id == alarm_id:
                    if not a.acked:
                        self.acknowledge(alarm_id, who, via)
                    return self._clear(k, now, who=who, via=via, action="resolved", detail=note)
            if self.owns is owns_everything:
                return False
            # a cluster: another replica's engine holds it; the store is shared (its owner refreshes)
            return self.store.clear(alarm_id, now, who=who, channel=via, action="resolved", detail=note)

    def silence(self, alarm_id: int, until: float, reason: str, who: str, via: str) -> bool:
        with self.lock:
            now = self.clock()
            ok = self.store.silence(alarm_id, until, reason, who, via, now)
            for a in self.active.values():
                if a.id == alarm_id:
                    a.silenced_until, a.silence_reason = until, reason
                    if a.next_notify_at is not None:
                        a.next_notify_at = max(a.next_notify_at, until)
            return ok

    def add_window(self, site: str, start: float, end: float, reason: str, by: str) -> int:
        with self.lock:
            self._windows.setdefault(site, []).append((start, end, reason))
            wid = self.store.add_window(site, start, end, reason, by)
            self._changed("window", (site, start, end), self.clock())
            return wid

    def end_window(self, window_id: int) -> dict[str, Any] | None:
        """End an inspection window added over the API now (a test finished early, or a mistake):
        alarms it held back are pushed at the next tick if their condition is still there."""
        with self.lock:
            now = self.clock()
            w = self.store.end_window(window_id, now)
            if w is not None:
                self._load_windows()
                self._changed("window-end", (w["site"], w["start"], w.pop("was_end"), w["end"]), now)
            return w

    def _load_windows(self) -> None:
        windows: dict[str, list[tuple[float, float, str]]] = {}
        for w in self.store.list_windows():
            windows.setdefault(w["site"], []).append((w["start"], w["end"], w["reason"]))
        self._windows = windows

    def _changed(self, what: str, obj: Any, now: float) -> None:
        if self.on_change is not None:
            try:
                self.on_change(what, obj, now)
            except Exception:  # history is a by-product: it must never break the safety path
                log.exception("alarm engine: on_change hook failed (%s)", what)

    def stats(self) -> dict[str, Any]:
        return {**self.counters, "active": len(self.active), "tracks": len(self.tracks)}


def _tagged_out(rule: AlarmRule, ref: DeviceRef, idx: int | None) -> bool:
    """A rule limited to instances the site tags (`only_tagged`) that this instance is not tagged for."""
    return bool(rule.only_tagged) and (
        idx is None or ref.instance_labels.get(idx, {}).get(rule.only_tagged or "", "").lower() not in TRUE_TAGS)


def _reading(cause: tuple[str, O.Mark] | None) -> str:
    """", by <point> seq <n>" for the log of a raise or clear a reading caused."""
    return "" if cause is None else f", by {cause[0]} seq {cause[1].seq}"


def _meta(p: Any, received: float) -> O.Meta | None:
    """Order and time of a device message (None for kinds without a seq)."""
    if isinstance(p, Readings):
        return p.last
    seq = getattr(p, "seq", None)
    return None if seq is None else O.Meta(seq, p.ts.timestamp(), received, p.epoch)


# Samples of a rate-of-rise point the gate holds: its oldest, its lowest and the newest. The rule
# judges the newest against the lowest of its window over the window's span, so the rate at the end
# of a held run is the same with more samples between; fewer samples kept a saturated engine's round
# over the fleet ~2x shorter.
RATE_SAMPLES = 4


def point_depth(by_point: dict[str, list[AlarmRule]], pid: str) -> int:
    """Samples of a point worth holding in front of this engine: none if no rule reads it; where a
    held condition started and the newest for threshold and state rules; a window for a rate."""
    block, _, key = split_point_id(pid)
    rules = [r for r in by_point.get(key, ()) if r.block == block]
    if not rules:
        return 0
    return RATE_SAMPLES if any(r.kind is AlarmKind.RATE_OF_RISE for r in rules) else 2
