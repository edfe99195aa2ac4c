"""Runs the history trackers beside the ingester and the alarm engine, off their hot paths.

- `fan_out(primary)` wraps the engine as the ingester's SafetySink: every message goes to the engine
  first, then only status messages and telemetry of devices with parking bays are appended to a
  deque (one set lookup and one append; no lock, no wake-up).
- The alarm engine calls `_on_change` from its own thread for raises, acknowledgements, clears and
  new inspection windows: one point built and handed to the StorageWriter (thread-safe, never blocks).
- One background thread drains the deque every `poll_s`, turns readings into `gateway_status` and
  `parking_stay` points, and writes the periodic repeats (`gateway_status`, `alarm`) and due
  `inspection` boundaries. Everything goes into the ingester's StorageWriter, so it reaches SQLite,
  InfluxDB or VictoriaMetrics with the ingester's batching, spooling and retries.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from cloud.alarms.resume import finite
from cloud.history.alarm import AlarmTracker
from cloud.history.charge_session import FROM as SESSION_FROM
from cloud.history.charge_session import MEASUREMENT as SESSION_MEASUREMENT
from cloud.history.charge_session import ChargeSessions
from cloud.history.gateway_status import GatewayStatusTracker
from cloud.history.inspection import InspectionTracker
from cloud.history.parking_stay import StayTracker
from cloud.history.stamp import ms
from cloud.safety import SafetyMessage, SafetySink
from cloud.state.registry import DeviceEntry, Directory
from cloud.tsdb.lineproto import Series, TsPoint
from dashboards.schema import SNAPSHOT_PERIOD_S
from device_profiles import wire
from device_profiles.loader import get_profile
from device_profiles.model import split_point_id
from device_profiles.timeseries import Mapping

log = logging.getLogger(__name__)

STAY_FROM = ("parking_bay", "occupied")  # a stay is a run of this measurement's field being true
STAY_MEASUREMENT = "parking_stay"
WINDOW_KEEP_S = 7 * 86400  # inspection windows ended longer ago are forgotten
# At a takeover, a stay or charge session that ended this recently is written again: its previous
# owner saved the end before handing the point to storage, and may have died in between (the point's
# series and timestamp are the same, so the store overwrites it: written once, whatever happened).
REEMIT_S = 600.0
SESSION_SAVE_S = 5.0  # a charge session's bookkeeping (energy, peaks) is saved this often


class Storage(Protocol):
    def put(self, points: list[TsPoint], received: float | None = None) -> None: ...


def stay_keys(profile_id: str) -> frozenset[tuple[str | None, str]]:
    """(block, point key) pairs of a profile that feed STAY_FROM, from its timeseries mapping."""
    m, f = STAY_FROM
    prof = get_profile(profile_id)
    return frozenset((ts.block, f) for ts in prof.timeseries if ts.measurement == m and f in ts.fields)


@dataclass
class HistoryStats:
    messages: int = 0
    dropped: int = 0  # deque full: the history thread fell far behind
    points: int = 0
    stays: int = 0
    errors: int = 0


class _FanOut:
    """SafetySink: the primary sink first, then the history queue for the few messages it reads."""

    def __init__(self, primary: SafetySink, history: HistoryService) -> None:
        self.primary = primary
        self.h = history
        self.qsize = getattr(primary, "qsize", None)  # IngestService.stats() reads it if present

    def put(self, msg: SafetyMessage) -> None:
        self.primary.put(msg)
        k = msg.kind
        if (
            k is wire.Kind.STATUS
            or (k in wire.TELEMETRY_KINDS and (msg.site, msg.device) in self.h.watch)
            or (k is wire.Kind.EVENT and getattr(msg.payload, "kind", None) == "abnormal_charge")
        ):
            q = self.h.queue
            if len(q) >= self.h.maxlen:
                self.h.stats.dropped += 1
            q.append(msg)

    def __getattr__(self, name: str) -> Any:  # drain(), stats()... of the engine
        return getattr(self.primary, name)


class HistoryService:
    def __init__(
        self,
        period_s: float = SNAPSHOT_PERIOD_S / 2,  # half the panels' bucket: every bucket gets a point
        poll_s: float = 0.2,
        maxlen: int = 500_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.period_s = period_s
        self.poll_s = poll_s
        self.maxlen = maxlen
        self.clock = clock
        self.queue: deque[SafetyMessage] = deque(maxlen=maxlen)
        self.watch: frozenset[tuple[str, str | None]] = frozenset()
        self.stats = HistoryStats()
        self.gateways = GatewayStatusTracker(period_s)
        self.stays = StayTracker()
        self.alarms = AlarmTracker(period_s)
        self.inspections = InspectionTracker()
        self.sessions = ChargeSessions(self._session_series_for)
        self._chargers: frozenset[tuple[str, str]] = frozenset()
        self._session_series: dict[tuple[str, str, int, str], Series] = {}
        self._lock = threading.Lock()  # alarms and inspections: engine thread vs history thread
        self._step_lock = threading.Lock()
        self._storage: Storage | None = None
        self._directory: Callable[[], Directory] | None = None
        self._dir_seen: Directory | None = None
        self._stay_keys: dict[str, frozenset[tuple[str | None, str]]] = {}
        self._watched: dict[str, dict[str, bool]] = {}  # profile → point id → feeds stays
        self._stay_series: dict[tuple[str, str, str], Series] = {}
        self._engine: Any = None
        # A cluster replica writes the periodic repeats only of the gateways it owns (the owner of a
        # gateway's partition sees its messages and alarms; cloud/cluster); alone it owns all.
        self.owns: Callable[[str, str], bool] = lambda site, gateway: True
        self._alarm_gw: dict[int, tuple[str, str]] = {}  # alarm id → (site, gateway), for `owns`
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_due = 0.0
        # Open stays and charge sessions, saved for a replica that takes their gateways over (the
        # alarm store's `resume_state`, set by `attach`): rows not saved yet, by (site, gateway, key)
        self._resume: Any = None
        self._stay_rows: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._session_rows: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._next_session_save = 0.0
        self.resumed = {"stays": 0, "sessions": 0, "reemitted": 0, "ignored": 0}
        self._to_resume: list[Callable[[str, str], bool]] = []  # `adopt(defer_resume=True)`: the next step's

    # ------------------------------------------------------------------ wiring
    def fan_out(self, primary: SafetySink) -> SafetySink:
        return _FanOut(primary, self)

    def attach(self, engine: Any) -> HistoryService:
        """Follow an AlarmEngine: its active alarms and inspection windows now, its changes from now."""
        with engine.lock:
            now = engine.clock()
            with self._lock:
                for a in engine.active.values():
                    self.alarms.known(a, now)
                    self._alarm_gw[a.id] = (a.site, a.gateway)
                for w in engine.store.list_windows():
                    self.inspections.add(w["site"], w["start"], w["end"])
                for site, cfg in engine.sites.items():
                    for iw in cfg.inspection_windows:
                        self.inspections.add(site, iw.start.timestamp(), iw.end.timestamp())
                self.inspections.prune(now - WINDOW_KEEP_S)
            engine.on_change = self._on_change
            self._engine = engine
            self._resume = getattr(engine, "resume_store", None)
        return self

    def bind(self, storage: Storage, directory: Callable[[], Directory]) -> HistoryService:
        """Where points go and where devices are looked up; `step()` then works without the thread
        (dashboards/ingest_day.py replays a day that way)."""
        self._storage, self._directory = storage, directory
        self.resume(self.owns)  # a restart picks up the stays and sessions that were open
        return self

    def start(self, storage: Storage | None = None, directory: Callable[[], Directory] | None = None) -> HistoryService:
        """Start the thread; `storage` and `directory` as for `bind` (or already bound)."""
        if storage is not None and directory is not None:
            self.bind(storage, directory)
        if self._storage is None or self._directory is None:
            raise ValueError("HistoryService.start: nothing bound (storage, directory)")
        self._thread = threading.Thread(target=self._run, name="history", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._engine is not None and self._engine.on_change == self._on_change:
            self._engine.on_change = None
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        self._next_session_save = 0.0  # open sessions' bookkeeping too: a restart resumes them
        self.step()  # what was queued until now

    # ------------------------------------------------------------------ engine hook (engine thread)
    def _on_change(self, what: str, obj: Any, now: float) -> None:
        with self._lock:
            if what == "window":
                site, start, end = obj
                self.inspections.add(site, start, end)
                self._next_due = 0.0  # a window opening now is written on the next poll
                return
            if what == "window-end":
                self.inspections.end(*obj)
                self._next_due = 0.0
                return
            p = self.alarms.change(obj, now)
            if obj.active:
                self._alarm_gw[obj.id] = (obj.site, obj.gateway)
            else:
                self._alarm_gw.pop(obj.id, None)
        self._put([p])

    # ------------------------------------------------------------------ a cluster's hand-overs
    def adopt(self, mine: Callable[[str, str], bool], gateways: list[tuple[str, str, bool]], alarms: list[Any],
              defer_resume: bool = False) -> None:
        """Gateways taken over from another replica: their online state (from the registry) and
        active alarms (from the shared store) are repeated from now, as their previous owner did,
        and their open stays and charge sessions resumed.

        `defer_resume`: the stays and sessions are resumed by the history thread, before it handles
        any message queued from now on, instead of here: a cluster's takeover does not wait for them
        before reading the gateways' alarms (they were up to a third of its state load)."""
        now = self.clock()
        for site, gw, online in gateways:
            if mine(site, gw) and (site, gw) not in self.gateways.online:
                self.gateways.online[(site, gw)] = online
                self.gateways._next[(site, gw)] = now
        with self._lock:
            for a in alarms:
                if mine(a.site, a.gateway):
                    self.alarms.known(a, now)
                    self._alarm_gw[a.id] = (a.site, a.gateway)
        if defer_resume:
            self._to_resume.append(mine)
        else:
            self.resume(mine)

    def resume(self, mine: Callable[[str, str], bool]) -> None:
        """Open parking stays and charge sessions of `mine`'s gateways as their previous owner (or this
        process before a restart) saved them. Rows that no longer fit the site file (device removed,
        profile changed, malformed) are ignored; a database that does not answer costs the resume,
        never the takeover."""
        if self._resume is None or self._storage is None or self._directory is None:
            return
        try:
            stays, sessions = self._resume.load("stay", mine), self._resume.load("session", mine)
        except Exception:
            self.stats.errors += 1
            log.exception("history: could not read open stays and sessions; they start afresh")
            return
        with self._step_lock:
            d = self._directory()
            if d is not self._dir_seen:
                self._set_directory(d)
            out: list[TsPoint] = []
            after = self.clock() - REEMIT_S
            for (site, gw, key), data in stays.items():
                device, _, pid = key.rpartition("/")
                dev = d.devices.get((site, device))
                ts, occ, since, last = data.get("ts"), data.get("occ"), data.get("since"), data.get("last")
                block, _, pkey = split_point_id(pid)
                if (dev is None or dev.gateway != gw or (block, pkey) not in self._stay_keys.get(dev.profile, ())
                        or not finite(ts) or not isinstance(occ, bool) or not (since is None or finite(since))):
                    self.resumed["ignored"] += 1
                    continue
                if self.stays.restore((site, device, pid), ts, occ, since):
                    self.resumed["stays"] += occ and since is not None
                    if (not occ and isinstance(last, list) and len(last) == 2 and all(finite(x) for x in last)
                            and last[1] >= after and last[1] == ts):
                        out.append(TsPoint(self._stay_series_for(dev, pid), {"dwell_s": float(last[1] - last[0])},
                                           ms(last[1])))
            for (site, gw, key), data in sessions.items():
                device, _, port = key.rpartition("/")
                dev = d.devices.get((site, device))
                if dev is None or dev.gateway != gw or (site, device) not in self._chargers or not port.isdigit():
                    self.resumed["ignored"] += 1
                    continue
                got = self.sessions.restore(site, device, get_profile(dev.profile), int(port), data, after)
                if got is False:
                    self.resumed["ignored"] += 1
                elif isinstance(got, TsPoint):
                    out.append(got)
                else:
                    self.resumed["sessions"] += data.get("end") is None
            self.resumed["reemitted"] += len(out)
            self._put(out)
        if self.resumed["ignored"]:
            log.warning("history: %d saved stays or sessions no longer match the site files; ignored",
                        self.resumed["ignored"])

    def hand_over(self, mine: Callable[[str, str], bool]) -> None:
        """Gateways handed to another replica: what is queued is processed (its transitions saved),
        and the open sessions' latest bookkeeping too, so the next owner resumes them as they are."""
        self._next_session_save = 0.0
        self.step()

    # ------------------------------------------------------------------ history thread
    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.step()

    def step(self) -> None:
        """Process what is queued and write what is due. Called by the thread; tests call it to sync."""
        if self._storage is None or self._directory is None:
            return
        while True:
            while self._to_resume:  # gateways taken over: before any of their messages
                try:
                    self.resume(self._to_resume.pop(0))
                except Exception:  # a bug costs the resume (stays start afresh), never the thread
                    self.stats.errors += 1
                    log.exception("history: resuming taken-over stays and sessions failed")
            with self._step_lock:
                try:
                    self._step()
                except Exception:  # bad input or a bug costs one round, never the thread
                    self.stats.errors += 1
                    log.exception("history step failed")
            if not self._to_resume:
                return

    def _step(self) -> None:
        d = self._directory() if self._directory else None
        if d is not None and d is not self._dir_seen:
            self._set_directory(d)
        out: list[TsPoint] = []
        q = self.queue
        while q and not self._to_resume:  # a takeover's resume goes before the messages queued after it
            msg = q.popleft()
            self.stats.messages += 1
            try:
                self._message(msg, out)
            except Exception:
                self.stats.errors += 1
                log.exception("history: message from %s/%s", msg.site, msg.gateway)
        now = self.clock()
        self._save_open(now)  # before the points they explain go to storage (REEMIT_S)
        if now >= self._next_due:
            self._next_due = now + 1.0
            owns = self.owns
            for key in [k for k in self.gateways._next if not owns(*k)]:  # moved to another replica
                self.gateways._next.pop(key, None)
                self.gateways.online.pop(key, None)
            out.extend(self.gateways.due(now))
            with self._lock:
                for aid in [i for i in self.alarms.active if not owns(*self._alarm_gw.get(i, ("", "")))]:
                    self.alarms.active.pop(aid, None)
                    self._alarm_gw.pop(aid, None)
                out.extend(self.alarms.due(now))
                out.extend(self.inspections.due(now))
                if self.inspections.windows:
                    self.inspections.prune(now - WINDOW_KEEP_S)
        self._put(out)

    def _save_open(self, now: float) -> None:
        """Save the stays that arrived or departed and the charge sessions that started, ended or were
        flagged since the last step (and every SESSION_SAVE_S the others' bookkeeping), in one
        transaction per kind. Kept for the next step if the database is away."""
        if self._resume is None:
            return
        periodic = now >= self._next_session_save
        if periodic:
            self._next_session_save = now + SESSION_SAVE_S
        d = self._dir_seen
        for (site, device, port), row in self.sessions.take_dirty(urgent_only=not periodic).items():
            dev = d.devices.get((site, device)) if d is not None else None
            if dev is not None:
                self._session_rows[(site, dev.gateway, f"{device}/{port}")] = row
        stays, sessions = self._stay_rows, self._session_rows
        if not stays and not sessions:
            return
        try:
            if stays:
                self._resume.save("stay", stays)
                self._stay_rows = {}
            if sessions:
                self._resume.save("session", sessions)
                self._session_rows = {}
        except Exception:
            self.stats.errors += 1
            log.exception("history: could not save open stays and sessions (will retry)")

    def _put(self, pts: list[TsPoint]) -> None:
        if pts and self._storage is not None:
            self.stats.points += len(pts)
            self._storage.put(pts)

    def _set_directory(self, d: Directory) -> None:
        self._dir_seen = d
        self._stay_series.clear()  # labels may have changed
        self._session_series.clear()
        watch = set()
        chargers = set()
        for (site, dev_id), dev in d.devices.items():
            try:
                if get_profile(dev.profile).family.value == "charger":
                    chargers.add((site, dev_id))
            except KeyError:
                pass
            keys = self._stay_keys.get(dev.profile)
            if keys is None:
                try:
                    keys = stay_keys(dev.profile)
                except KeyError:
                    keys = frozenset()
                self._stay_keys[dev.profile] = keys
            if keys:
                watch.add((site, dev_id))
        self._chargers = frozenset(chargers)
        self.watch = frozenset(watch | chargers)

    def _message(self, msg: SafetyMessage, out: list[TsPoint]) -> None:
        p = msg.payload
        if isinstance(p, wire.Status):
            out.append(self.gateways.status(msg.site, msg.gateway, p.state == "online", msg.received))
            return
        if msg.device is None or self._dir_seen is None:
            return
        if isinstance(p, wire.Event):
            self._charge_event(msg.site, msg.device, p, out)
            return
        if not isinstance(p, wire.Telemetry):
            return
        dev = self._dir_seen.devices.get((msg.site, msg.device))
        if dev is None:
            return
        if (msg.site, msg.device) in self._chargers:
            out.extend(self.sessions.telemetry(msg.site, msg.device, get_profile(dev.profile), p.values,
                                               p.ts.timestamp()))
        watched = self._watched.get(dev.profile)
        if watched is None:
            watched = self._watched[dev.profile] = {}
        keys = self._stay_keys.get(dev.profile, frozenset())
        ts = p.ts.timestamp()
        for pid, v in p.values.items():
            ok = watched.get(pid)
            if ok is None:
                block, _, key = split_point_id(pid)
                ok = (block, key) in keys
                if len(watched) < 20_000:  # point ids per profile; bounded against junk ids
                    watched[pid] = ok
            if not ok or not isinstance(v, bool | int | float):
                continue
            bay = (msg.site, msg.device, pid)
            stay = self.stays.reading(bay, ts, bool(v))
            if bay in self.stays.changed:
                self.stays.changed.discard(bay)
                b = self.stays.bays[bay]
                self._stay_rows[(msg.site, dev.gateway, f"{msg.device}/{pid}")] = {
                    "ts": b.ts, "occ": b.occupied, "since": b.since,
                    "last": None if stay is None else [stay.arrived, stay.departed]}
            if stay is not None:
                self.stats.stays += 1
                s = self._stay_series_for(dev, pid)
                out.append(TsPoint(s, {"dwell_s": float(stay.dwell_s)}, ms(stay.departed)))

    def _charge_event(self, site: str, device: str, ev: wire.Event, out: list[TsPoint]) -> None:
        """The edge's verdict on a charge session (docs/wire.md `abnormal_charge`)."""
        if ev.kind != "abnormal_charge" or (site, device) not in self._chargers:
            return
        port = ev.data.get("index")
        if not isinstance(port, int) or isinstance(port, bool):
            block, idx, _ = split_point_id(ev.point or "")
            port = idx if block == "port" else None
        if port is None:
            return
        out.extend(self.sessions.flag(site, device, port, str(ev.data.get("reason", "unexplained_heat")),
                                      bool(ev.data.get("severe", False)), ev.ts.timestamp()))

    def _session_series_for(self, site: str, device: str, port: int, reason: str) -> Series:
        key = (site, device, port, reason)
        s = self._session_series.get(key)
        if s is None:
            d = self._dir_seen
            dev = d.devices.get((site, device)) if d else None
            if dev is None:
                s = Series.make(SESSION_MEASUREMENT, {"site": site, "device": device, "port": str(port),
                                                      "reason": reason})
            else:
                base = {
                    **(d.gateway_labels.get((dev.site, dev.gateway), {}) if d else {}),
                    **dev.labels,
                    "site": dev.site,
                    "gateway": dev.gateway,
                    "device": dev.id,
                }
                rows = Mapping(get_profile(dev.profile)).rows({f"port.{port}.state": "charging"}, base,
                                                              dev.instance_labels)
                tags = next((dict(r.tags) for r in rows if r.measurement == SESSION_FROM), dict(base))
                s = Series.make(SESSION_MEASUREMENT, {**tags, "reason": reason})
            self._session_series[key] = s
        return s

    def _stay_series_for(self, dev: DeviceEntry, pid: str) -> Series:
        key = (dev.site, dev.id, pid)
        s = self._stay_series.get(key)
        if s is None:
            d = self._dir_seen
            # The same tags as the bay's parking_bay series (cf. cloud/ingest/pipeline.py's
            # _device_series): gateway labels, device labels, identity, then the Mapping's block
            # tag and instance labels (zone, fire_lane).
            base = {
                **(d.gateway_labels.get((dev.site, dev.gateway), {}) if d else {}),
                **dev.labels,
                "site": dev.site,
                "gateway": dev.gateway,
                "device": dev.id,
            }
            rows = Mapping(get_profile(dev.profile)).rows({pid: True}, base, dev.instance_labels)
            tags = next(r.tags for r in rows if r.measurement == STAY_FROM[0])
            s = self._stay_series[key] = Series.make(STAY_MEASUREMENT, tags)
        return s

    def snapshot(self) -> dict[str, int]:
        st = self.stats
        return {"messages": st.messages, "dropped": st.dropped, "points": st.points, "stays": st.stays,
                "errors": st.errors, "queued": len(self.queue), "gateways": len(self.gateways.online),
                "active_alarms": len(self.alarms.active)}
