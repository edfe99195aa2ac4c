"""A simulated day of one estate, as InfluxDB line protocol, for checking every dashboard query.

What the cloud ingester stores (telemetry and device_health) is produced here as wire-contract
messages (`Day.messages`: topic, encoded `Telemetry` / `DeviceHealth`) for the site in
`dashboards/maple-court.yaml`; `dashboards.ingest_day` feeds them through the ingester's own pipeline
and InfluxDB 1.x sink, and through cloud/history, which writes `parking_stay` from them (the stays
it should find are in `Day.stay_list`). alarm, gateway_status and inspection (which cloud/history
derives from the alarm engine and from gateway status messages, not replayed here) are produced as
line protocol (`Day.lines`) following `dashboards.schema`.

Estate `maple-court`: shelter-1 (VoltPile CP-10 charger, Nanfang FSM-8 riser, bar), shelter-2
(Hengtong EBC-12 charger, AquaGuard RM-4 riser, kPa), garage-b1 (ParkHub PH-48, 48 bays in zones
A/B/C, bays 45-48 fire lane). Devices send a full snapshot every 5 minutes and changes in between.
Deterministic for a given seed.
"""

from __future__ import annotations

import math
import random
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from device_profiles import wire
from device_profiles.timeseries import FieldValue

SITE = "maple-court"
SITE_FILE = Path(__file__).resolve().parent / "maple-court.yaml"  # the same estate, registered
MIN = 60_000
DAY_MIN = 24 * 60
SNAPSHOT_MIN = 5
ZONES = {"A": range(1, 21), "B": range(21, 41), "C": range(41, 49)}
FIRE_LANE = range(45, 49)
TEMP_RANGE = (-10.0, 90.0)  # every temperature the simulator can produce lies inside
BATTERY_RANGE = (2.5, 3.4)


@dataclass(frozen=True, slots=True)
class Device:
    id: str
    profile: str
    gateway: str
    shelter: str


DEVICES = (
    Device("pile-1", "voltpile-cp10", "gw-shelter-1", "shelter-1"),
    Device("riser-1", "nanfang-fsm8", "gw-shelter-1", "shelter-1"),
    Device("cabinet-2", "hengtong-ebc12", "gw-shelter-2", "shelter-2"),
    Device("riser-2", "aquaguard-rm4", "gw-shelter-2", "shelter-2"),
    Device("hub-1", "parkhub-ph48", "gw-garage", "garage-b1"),
)
OFFLINE_AT_MIN = DAY_MIN - 30  # riser-2 stops answering for the last half hour
FLAGGED_AT_MIN = 1184  # pile-1 port 7: the edge's abnormal_charge warning, 16 min before it overheats


def zone_of(bay: int) -> str:
    return next(z for z, r in ZONES.items() if bay in r)


def bay_tags() -> dict[int, dict[str, str]]:
    return {b: {"zone": zone_of(b), "fire_lane": "true" if b in FIRE_LANE else "false"} for b in range(1, 49)}


# ---- line protocol ---------------------------------------------------------------------------


def _esc_key(s: str) -> str:
    return s.replace("\\", "\\\\").replace(",", "\\,").replace(" ", "\\ ").replace("=", "\\=")


def _field(v: FieldValue) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(float(v))  # always float: see dashboards.schema
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def line(measurement: str, tags: dict[str, str], fields: dict[str, FieldValue], ts_ms: int) -> str:
    t = "".join(f",{_esc_key(k)}={_esc_key(v)}" for k, v in sorted(tags.items()) if v != "")
    f = ",".join(f"{_esc_key(k)}={_field(v)}" for k, v in fields.items())
    return f"{_esc_key(measurement)}{t} {f} {ts_ms}"


def write_lines(url: str, db: str, lines: Iterable[str], batch: int = 5000) -> int:
    """POST to InfluxDB 1.x `/write` (precision ms) in batches; returns the number of lines."""
    buf: list[str] = []
    n = 0

    def flush() -> None:
        req = urllib.request.Request(f"{url}/write?db={db}&precision=ms", data="\n".join(buf).encode(), method="POST")
        with urllib.request.urlopen(req, timeout=60) as r:
            r.read()
        buf.clear()

    for ln in lines:
        buf.append(ln)
        n += 1
        if len(buf) >= batch:
            flush()
    if buf:
        flush()
    return n


# ---- the day ---------------------------------------------------------------------------------


@dataclass
class _Port:
    state: str = "idle"
    energy: float = 0.0
    enabled: bool = True
    temp: float = 20.0
    power: float = 0.0
    sessions: list[tuple[int, int]] = field(default_factory=list)  # (start, end) minutes


@dataclass
class Day:
    end_ms: int
    seed: int = 7
    lines: list[str] = field(default_factory=list)  # alarm, gateway_status, inspection
    messages: list[tuple[str, bytes]] = field(default_factory=list)  # wire messages for the ingester
    stays: int = 0
    stay_list: list[tuple[int, int, float]] = field(default_factory=list)  # (bay, departure ms, dwell_s)
    seqs: dict[str, int] = field(default_factory=dict)

    @property
    def start_ms(self) -> int:
        return self.end_ms - DAY_MIN * MIN

    def ts(self, minute: float) -> int:
        return self.start_ms + int(minute * MIN)

    def _seq(self, dev: Device) -> int:
        n = self.seqs[dev.id] = self.seqs.get(dev.id, 0) + 1
        return n

    def _at(self, minute: float) -> datetime:
        return datetime.fromtimestamp(self.ts(minute) / 1000, UTC)

    def emit(self, dev: Device, values: dict[str, FieldValue], minute: float, snapshot: bool) -> None:
        """One Telemetry message from the device's gateway, as the edge agent publishes it."""
        msg = wire.Telemetry(ts=self._at(minute), seq=self._seq(dev), values=values, snapshot=snapshot)
        topic = wire.topic(SITE, dev.gateway, wire.Kind.TELEMETRY, dev.id)
        self.messages.append((topic, wire.encode(msg)))

    def health(self, dev: Device, minute: float, online: bool, counters: list[int]) -> None:
        msg = wire.DeviceHealth(
            ts=self._at(minute),
            seq=self._seq(dev),
            online=online,
            polls=counters[0],
            timeouts=counters[1],
            crc_errors=counters[2],
            exceptions=counters[3],
        )
        self.messages.append((wire.topic(SITE, dev.gateway, wire.Kind.HEALTH, dev.id), wire.encode(msg)))

    def event(self, dev: Device, ev: wire.Event, minute: float) -> None:
        """One Event from the device's gateway (`ts`, `seq` and `id` set here)."""
        msg = wire.Event(ts=self._at(minute), seq=self._seq(dev), id=wire.new_id(), kind=ev.kind,
                         severity=ev.severity, point=ev.point, value=ev.value, text=ev.text, data=ev.data)
        self.messages.append((wire.topic(SITE, dev.gateway, wire.Kind.EVENT, dev.id), wire.encode(msg)))

    def raw(self, measurement: str, tags: dict[str, str], fields: dict[str, FieldValue], minute: float) -> None:
        self.lines.append(line(measurement, tags, fields, self.ts(minute)))


def _base(d: Device) -> dict[str, str]:
    """Tags the ingester puts on this device's series (site file labels + identity)."""
    return {"site": SITE, "gateway": d.gateway, "device": d.id, "shelter": d.shelter}


def _ambient(minute: float) -> float:
    return 15.0 + 7.0 * math.sin((minute / DAY_MIN - 0.375) * 2 * math.pi)  # warmest mid-afternoon


def _chargers(day: Day, rnd: random.Random, dev: Device, ports: int, charging: str, full: str, off: str) -> None:
    st = {p: _Port() for p in range(1, ports + 1)}
    for s in st.values():  # sessions: one to three a day, 1-5 h each
        t = rnd.randint(0, 300)
        while t < DAY_MIN - 60:
            dur = rnd.randint(60, 300)
            s.sessions.append((t, min(t + dur, DAY_MIN + 600)))
            t += dur + rnd.randint(120, 600)
    if dev.id == "cabinet-2":  # port 3: a session of 9.5 h still running at the end → long_charge
        st[3].sessions = [(DAY_MIN - 570, DAY_MIN + 60)]
    hot_port = 7 if dev.id == "pile-1" else None  # overheats at 20:00, the interlock cuts it
    if hot_port is not None:  # ... in a session the edge's analytics flagged 16 min before
        st[hot_port].sessions = [(1080, DAY_MIN + 60)]
    warm_port = 5 if dev.id == "cabinet-2" else None  # runs warm (≈60 °C) in the afternoon
    prev: dict[int, tuple[str, bool]] = {}
    for minute in range(DAY_MIN):
        amb = _ambient(minute)
        snap = minute % SNAPSHOT_MIN == 0
        values: dict[str, FieldValue] = {}
        for p, s in st.items():
            active = any(a <= minute < b for a, b in s.sessions)
            ended = any(b <= minute < b + 45 for a, b in s.sessions)
            if any(a == minute for a, b in s.sessions):
                s.energy = 0.0  # a new session starts its energy count
            if not s.enabled:
                s.state, s.power = off, 0.0
            elif active:
                s.state, s.power = charging, 180.0 + 120.0 * rnd.random()
            else:
                s.state, s.power = (full if ended else "idle"), 0.0
            s.energy += s.power / 60_000.0
            target = amb + s.power / 25.0
            if warm_port == p and 840 <= minute < 960:
                target = 61.0
            if hot_port == p and 1200 <= minute < 1212:
                target = 78.0
            s.temp += (target - s.temp) * 0.3 + rnd.uniform(-0.2, 0.2)
            if hot_port == p and minute == FLAGGED_AT_MIN:
                data: dict[str, wire.Scalar] = {
                    "reason": "unexplained_heat", "reasons": "unexplained_heat", "severe": False, "excess_c": 6.1,
                    "slope_c_per_min": 0.5, "temp_c": round(s.temp, 1), "index": p}
                day.event(dev, wire.Event(ts=day._at(minute), seq=0, id="x" * 8, kind="abnormal_charge",
                                          severity="major", point=f"port.{p}.connector_temp", value=round(s.temp, 1),
                                          data=data), minute)
            if hot_port == p and s.temp >= 75.0 and s.enabled:
                s.enabled = False
                _alarm(day, dev, "connector_overtemp", "critical", minute, minute + 20, str(p), ack_after=5)
            volts = 220.0 + rnd.uniform(-3, 3)
            key = (s.state, s.enabled)
            if snap or active or prev.get(p) != key or abs(s.temp - target) > 2:
                values.update(
                    {
                        f"port.{p}.state": s.state,
                        f"port.{p}.voltage": round(volts, 1),
                        f"port.{p}.current": round(s.power / volts, 3),
                        f"port.{p}.power": round(s.power, 1),
                        f"port.{p}.energy": round(s.energy, 3),
                        f"port.{p}.connector_temp": round(s.temp, 1),
                        f"port.{p}.enabled": s.enabled,
                    }
                )
            prev[p] = key
        if snap:
            values.update({"smoke": False, "ambient_temp": round(amb + 3.0, 1), "main_relay": True})
            if dev.profile == "hengtong-ebc12":
                values["door_open"] = 600 <= minute < 615
        if values:
            day.emit(dev, values, minute, snap)
        if minute >= 0 and dev.id == "cabinet-2" and minute >= st[3].sessions[0][0] + 480 and snap:
            _alarm_point(day, dev, "long_charge", "warning", minute, True, False, "3")


def _sprinkler(day: Day, rnd: random.Random, dev: Device, bar: bool) -> None:
    scale = 1.0 if bar else 100.0
    for minute in range(0, DAY_MIN, 1):
        if dev.id == "riser-2" and minute >= OFFLINE_AT_MIN:
            break
        flow = dev.id == "riser-1" and 600 <= minute < 603  # inspection flow test, 10:00
        tamper = dev.id == "riser-2" and 900 <= minute < 910  # valve closed at 15:00
        if minute % SNAPSHOT_MIN and not (flow or tamper or minute in (603, 910)):
            continue
        p = (3.2 if flow else 6.0 + rnd.uniform(-0.15, 0.15)) * scale
        values: dict[str, FieldValue] = {
            "waterflow": flow,
            "valve_tamper": tamper,
            "pump_running": flow,
            "power_fault": False,
            "pipe_pressure": round(p, 2),
        }
        if bar:
            values["supply_voltage"] = round(24.0 + rnd.uniform(-0.3, 0.3), 1)
        day.emit(dev, values, minute, minute % SNAPSHOT_MIN == 0)


def _parking(day: Day, rnd: random.Random, dev: Device) -> None:
    changes: dict[int, list[tuple[int, bool]]] = {}
    for b in range(1, 49):
        ev: list[tuple[int, bool]] = []
        if b in FIRE_LANE:
            ev = [(0, False)] + ([(840, True), (880, False)] if b == 46 else [])
            ev += [(DAY_MIN - 40, True)] if b == 47 else []  # still blocking the fire lane at the end
        else:
            occ = rnd.random() < 0.6
            t = 0
            while t < DAY_MIN:
                ev.append((t, occ))
                t += int(rnd.expovariate(1 / (180 if occ else 90))) + 5
                occ = not occ
        changes[b] = ev
    battery = {b: 3.0 + 0.3 * rnd.random() for b in range(1, 49)}
    battery[12] = 2.95
    state = {b: False for b in range(1, 49)}
    since: dict[int, int | None] = {b: None for b in range(1, 49)}
    for minute in range(DAY_MIN):
        snap = minute % SNAPSHOT_MIN == 0
        values: dict[str, FieldValue] = {}
        for b in range(1, 49):
            new = state[b]
            for t, occ in changes[b]:
                if t == minute:
                    new = occ
            changed = new != state[b]
            arrived = since[b]
            if changed and not new and arrived is not None:
                # the stay cloud/history writes from these readings (ingest_day runs it)
                day.stay_list.append((b, day.ts(minute), float((minute - arrived) * 60)))
                day.stays += 1
            if changed:
                since[b] = minute if minute > 0 else None  # the first reading: arrival unknown
            state[b] = new
            if b == 12:
                battery[b] = max(2.6, battery[b] - 0.0002)
            if snap or changed or minute == 0:
                values.update(
                    {
                        f"bay.{b}.occupied": new,
                        f"bay.{b}.sensor_fault": False,
                        f"bay.{b}.battery": round(battery[b], 3),
                        f"bay.{b}.rssi": -60 - b % 20,
                    }
                )
        if snap:
            values["occupied_count"] = sum(state.values())
        if values:
            day.emit(dev, values, minute, snap)
    _alarm(day, dev, "fire_lane_blocked", "major", 845, 880, "46", ack_after=3)
    _alarm(day, dev, "fire_lane_blocked", "major", DAY_MIN - 35, None, "47")
    _alarm(day, dev, "low_battery", "minor", 360, None, "12")


def _alarm_point(
    day: Day, dev: Device, rule: str, sev: str, minute: float, active: bool, ack: bool, instance: str = ""
) -> None:
    day.raw(
        "alarm",
        {"site": SITE, "device": dev.id, "rule": rule, "severity": sev, "instance": instance},
        {"active": active, "acknowledged": ack},
        minute,
    )


def _alarm(
    day: Day,
    dev: Device,
    rule: str,
    sev: str,
    start: int,
    end: int | None,
    instance: str = "",
    ack_after: int | None = None,
) -> None:
    """Raise at `start`, refresh every snapshot period while active, clear at `end` (None: still active)."""
    stop = end if end is not None else DAY_MIN
    for t in range(start, stop, 10):
        ack = ack_after is not None and t >= start + ack_after
        _alarm_point(day, dev, rule, sev, t, True, ack, instance)
    if end is not None:
        _alarm_point(day, dev, rule, sev, end, False, ack_after is not None, instance)


def _health(day: Day, rnd: random.Random) -> None:
    counters = {d.id: [0, 0, 0, 0] for d in DEVICES}  # polls, timeouts, crc, exceptions
    for minute in range(0, DAY_MIN, SNAPSHOT_MIN):
        for d in DEVICES:
            c = counters[d.id]
            offline = d.id == "riser-2" and minute >= OFFLINE_AT_MIN + 2
            c[0] += 300
            c[1] += 300 if offline else (rnd.random() < 0.2) * rnd.randint(1, 3)
            c[2] += (d.profile.endswith(("cp10", "fsm8", "ph48")) and rnd.random() < 0.3) * rnd.randint(1, 4)
            c[3] += (rnd.random() < 0.05) * 1
            day.health(d, minute, not offline, c)
        if minute % 10 == 0:
            for gw in sorted({d.gateway for d in DEVICES}):
                day.raw("gateway_status", {"site": SITE, "gateway": gw}, {"online": True}, minute)
    riser2 = next(d for d in DEVICES if d.id == "riser-2")
    _alarm(day, riser2, "offline", "minor", OFFLINE_AT_MIN + 2, None)
    day.raw("inspection", {"site": SITE}, {"active": True}, 595)
    day.raw("inspection", {"site": SITE}, {"active": False}, 630)


def simulate_day(end_ms: int, seed: int = 7) -> Day:
    """Every line of one day ending at `end_ms` (epoch ms)."""
    day = Day(end_ms, seed)
    rnd = random.Random(seed)
    by_id = {d.id: d for d in DEVICES}
    _chargers(day, rnd, by_id["pile-1"], 10, "charging", "full", "disabled")
    _chargers(day, rnd, by_id["cabinet-2"], 12, "charging", "full", "disabled")
    _sprinkler(day, rnd, by_id["riser-1"], bar=True)
    _sprinkler(day, rnd, by_id["riser-2"], bar=False)
    _parking(day, rnd, by_id["hub-1"])
    _health(day, rnd)
    return day
