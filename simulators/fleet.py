"""Fleet generator: N virtual gateways publishing valid wire-contract traffic straight to a broker.

For load tests and benchmarks of the cloud side without running device simulators and edge agents:
each virtual gateway announces itself (retained birth listing its devices), then per tick sends
routine telemetry (report by exception: a few points that moved), a periodic full snapshot, bay
events with the matching telemetry on parking devices, and device / gateway health, each device
with its own rising sequence number. Timestamps follow a simulated clock (`sim_start`, `tick_s`)
so an hour of a site can be published in seconds, or the real clock.

`FleetModel` only makes messages (pure, deterministic with a seed, tested without a broker);
`publish_fleet` sends them with paho-mqtt at a set rate, bounded in count and time.
"""

from __future__ import annotations

import random
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from device_profiles import wire
from device_profiles.loader import get_profile
from device_profiles.model import DataType, LineTransport, Profile, point_id, split_point_id
from device_profiles.points import resolve_points
from simulators.fleet_ranges import quiet

Scalar = bool | int | float | str

@dataclass(frozen=True, slots=True)
class PointGen:
    """One point of a virtual device and how it may move: `lo`..`hi`, at most `band` around its
    starting value, `hold` (the one boolean value), `avoid` (values never sent) and `dwell` (values
    held at most so many seconds) — all from the profile's alarm rules (simulators/fleet_ranges.py)."""

    id: str
    key: str
    kind: str  # bool | int | float | enum | str
    lo: float = 0.0
    hi: float = 100.0
    decimals: int = 2
    labels: tuple[str, ...] = ()
    band: float | None = None
    hold: bool | None = None
    avoid: tuple[Scalar, ...] = ()
    dwell: tuple[tuple[Scalar, float], ...] = ()


def _decimals(scale: float) -> int:
    d = 0
    while scale < 1 and d < 4:
        scale *= 10
        d += 1
    return d


def point_generators(profile: Profile, instance_labels: dict[int, dict[str, str]] | None = None,
                     follow_rules: bool = True) -> list[PointGen]:
    """Every point of `profile`, with its quiet behaviour (per instance: rules such as the fire lane's
    apply only to instances the site tags so); `follow_rules` False: nominal ranges only."""
    out: list[PointGen] = []
    tags = instance_labels or {}

    def gen(pid: str, key: str, kind: str, unit: str, decimals: int, labels: tuple[str, ...] = ()) -> PointGen:
        block, idx, _ = split_point_id(pid)
        q = quiet(profile, block, key, kind, unit, 10.0**-decimals, tags.get(idx, {}) if idx else {}, labels,
                  follow_rules)
        return PointGen(pid, key, kind, q.lo, q.hi, decimals, labels, q.band, q.hold, q.avoid, q.dwell)

    tr = profile.transport
    if isinstance(tr, LineTransport):
        for i in range(1, tr.instance_count + 1):
            for f in tr.fields:
                pid = point_id(f.key, tr.block, i)
                if f.type in ("bool", "str"):
                    out.append(gen(pid, f.key, f.type, f.unit, 0))
                elif f.type == "enum":
                    out.append(gen(pid, f.key, "enum", "", 0, tuple((f.enum or {}).values())))
                else:
                    kind = "float" if f.type == "float" or f.scale != 1 else "int"
                    out.append(gen(pid, f.key, kind, f.unit, (_decimals(f.scale) or 2) if kind == "float" else 0))
        return out
    for rp in resolve_points(profile):
        spec = rp.spec
        if spec.type.is_bool:
            out.append(gen(rp.id, rp.key, "bool", spec.unit, 0))
        elif spec.type is DataType.ENUM:
            out.append(gen(rp.id, rp.key, "enum", "", 0, tuple((spec.enum or {}).values())))
        elif spec.type is DataType.STRING:
            out.append(gen(rp.id, rp.key, "str", "", 0))
        elif spec.type is DataType.FLOAT32 or spec.scale != 1 or spec.offset != 0:
            out.append(gen(rp.id, rp.key, "float", spec.unit, max(_decimals(spec.scale), 1)))
        else:
            out.append(gen(rp.id, rp.key, "int", spec.unit, 0))
    return out


def gen_value(g: PointGen, rnd: random.Random) -> Scalar:
    if g.kind == "bool":
        return g.hold if g.hold is not None else rnd.random() < 0.5
    if g.kind == "enum":
        normal = [x for x in g.labels if x != "fault" and x not in g.avoid] or list(g.labels)
        return rnd.choice(normal)
    if g.kind == "str":
        return "2.1.7"
    for _ in range(10):  # a number a state rule names is not sent (rare: a rule on an exact reading)
        v: Scalar = rnd.randint(int(g.lo), int(g.hi)) if g.kind == "int" else round(rnd.uniform(g.lo, g.hi), g.decimals)
        if v not in g.avoid:
            break
    return v


def next_value(g: PointGen, prev: Scalar | None, home: Scalar | None, rnd: random.Random) -> Scalar:
    """The next reading of a point that moved. Numbers drift a little around the point's own
    starting value (mean-reverting, noise 0.2 % of the range per step, spread ~0.5 %) instead of
    jumping anywhere in the range: uniform jumps (18 °C → 45 °C between two reports) tripped the
    profiles' rate-of-rise rules tens of times a second across a fleet, an alarm storm no routine
    fleet sends. Other kinds as `gen_value`."""
    if (
        g.kind not in ("int", "float")
        or not isinstance(prev, int | float)
        or not isinstance(home, int | float)
    ):
        return gen_value(g, rnd)
    span = g.hi - g.lo
    v = prev + 0.1 * (home - prev) + rnd.gauss(0.0, 0.002 * span)
    if g.band is not None:  # a rate-of-rise rule watches it: stay within `band` of home
        v = min(home + g.band, max(home - g.band, v))
    v = min(g.hi, max(g.lo, v))
    out = round(v) if g.kind == "int" else round(v, g.decimals)
    return prev if out in g.avoid else out


@dataclass(slots=True)
class VDevice:
    id: str
    profile: str
    labels: dict[str, str]
    points: list[PointGen]
    bay_points: dict[int, str] = field(default_factory=dict)  # bay number → occupied point id
    seq: int = 0
    values: dict[str, Scalar] = field(default_factory=dict)
    home: dict[str, Scalar] = field(default_factory=dict)  # starting values numbers drift around
    since: dict[str, float] = field(default_factory=dict)  # when a point with a `dwell` limit last changed
    long_states: list[PointGen] = field(default_factory=list)  # the points with a `dwell` limit


@dataclass(slots=True)
class VGateway:
    id: str
    devices: list[VDevice]


@dataclass
class FleetConfig:
    # One broker, or the MQTT listeners of a cluster's nodes, comma-separated
    # ("mqtt://h1:1883,mqtt://h2:1883,mqtt://h3:1883"): connections spread over them and move to the
    # next node when theirs is lost, re-sending what was in flight (like the edge's uplink).
    broker: str = "mqtt://127.0.0.1:1883"
    site: str = "demo-estate"
    site_file: str | None = None  # topology from a site file; else `gateways` synthetic gateways
    gateways: int = 3
    rate: float = 1000.0  # messages per second over the whole fleet; 0 = as fast as possible
    duration: float | None = 60.0  # seconds of real time
    max_messages: int | None = None
    ticks: int | None = None  # stop after this many ticks per gateway
    qos: int = 1
    sim_start: datetime | None = None  # None: real clock
    tick_s: float = 1.0  # simulated seconds per tick
    seed: int = 1
    snapshot_every: int = 60  # ticks between full snapshots
    health_every: int = 30
    event_probability: float = 0.05  # per parking device per tick
    points_per_report: tuple[int, int] = (1, 4)
    seq_start: int = 1  # a device's first message is seq 1 (docs/wire.md, "Sequence numbers")
    epoch: str | None = None  # the virtual outboxes' epoch; None: a new random one per model
    connections: int = 8
    client_prefix: str = "sw-fleet"
    keepalive_s: int = 30  # a hung node is noticed after up to twice this; use 5 with a cluster
    # Values quiet by each profile's alarm rules (simulators/fleet_ranges.py); False: nominal ranges
    # only, so cars park in fire lanes and ports charge for hours (tests that want alarm traffic).
    quiet: bool = True


@dataclass(frozen=True)
class FleetDevice:
    """A device of the fleet's topology (and of the site file that registers it)."""

    id: str
    profile: str
    labels: dict[str, str]
    instance_labels: dict[int, dict[str, str]] = field(default_factory=dict)


Topology = list[tuple[str, list[FleetDevice]]]


def synthetic_topology(n: int, site: str) -> Topology:
    """n gateways, each a shelter like the demo's Shelter A/B mix: two chargers, a sprinkler
    monitor and a bay receiver."""
    kinds = [
        ("chg1", "voltpile-cp10"),
        ("chg2", "hengtong-ebc12"),
        ("spk1", "nanfang-fsm8"),
        ("bays", "geomag-rx200"),
    ]
    out = []
    for i in range(1, n + 1):
        gw = f"gw-{i:04d}"
        out.append((gw, [FleetDevice(f"g{i:04d}-{d}", prof, {"shelter": f"shelter-{i:04d}"}) for d, prof in kinds]))
    return out


def site_topology(path: str | Path) -> tuple[str, Topology]:
    from cloud.site_config import load_site

    s = load_site(path)
    return s.site, [(g.id, [FleetDevice(d.id, d.profile, dict(d.labels), {k: dict(v) for k, v in
                                                                           d.instance_labels.items()})
                            for d in g.devices]) for g in s.gateways]


def site_file_text(site: str, topo: Topology, auto_enrol: bool = True) -> str:
    """A site file registering a fleet (so the ingester's identity checks pass)."""

    def entry(d: FleetDevice) -> dict[str, Any]:
        e: dict[str, Any] = {"id": d.id, "profile": d.profile, "labels": d.labels}
        if d.instance_labels:
            e["instance_labels"] = d.instance_labels
        return e

    doc = {
        "site": site,
        "name": f"Fleet {site}",
        "auto_enrol": auto_enrol,
        "gateways": [{"id": gw, "devices": [entry(d) for d in devs]} for gw, devs in topo],
    }
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


class FleetModel:
    """Makes the fleet's messages, tick by tick, gateway by gateway."""

    def __init__(self, cfg: FleetConfig) -> None:
        self.cfg = cfg
        self.rnd = random.Random(cfg.seed)
        if cfg.site_file:
            self.site, topo = site_topology(cfg.site_file)
        else:
            self.site, topo = cfg.site, synthetic_topology(cfg.gateways, cfg.site)
        self.topology = topo
        # Like a fresh outbox: a rerun against the same cloud is new traffic, not a replay.
        self.epoch = cfg.epoch if cfg.epoch is not None else wire.new_id()[:8]
        self.gateways: list[VGateway] = []
        gens: dict[tuple[str, str], list[PointGen]] = {}
        t0 = self.clock(0).timestamp()
        for gw, devs in topo:
            vdevs = []
            for d in devs:
                gk = (d.profile, repr(sorted(d.instance_labels.items())))
                if gk not in gens:
                    gens[gk] = point_generators(get_profile(d.profile), d.instance_labels, cfg.quiet)
                pts = gens[gk]
                # bays a car may park in (a fire-lane bay's rule keeps it free: `hold` False)
                bays = {int(p.id.split(".")[1]): p.id for p in pts
                        if p.key == "occupied" and "." in p.id and p.hold is None}
                vd = VDevice(d.id, d.profile, d.labels, pts, bays, seq=cfg.seq_start)
                vd.values = {p.id: gen_value(p, self.rnd) for p in pts}
                vd.home = dict(vd.values)
                vd.long_states = [p for p in pts if p.dwell]
                vd.since = {p.id: t0 for p in vd.long_states}
                vdevs.append(vd)
            self.gateways.append(VGateway(gw, vdevs))
        self.tick = 0

    def clock(self, tick: int, sub: int = 0) -> datetime:
        if self.cfg.sim_start is None:
            return wire.now()
        # `sub` spreads the messages of one tick by a millisecond each, so that no two readings of
        # one device share a timestamp (a store keeps one value per series and time).
        return wire.wire_time(self.cfg.sim_start + timedelta(seconds=tick * self.cfg.tick_s, milliseconds=sub))

    def topic(self, gw: str, kind: wire.Kind, dev: str | None = None) -> str:
        return wire.topic(self.site, gw, kind, dev)

    def births(self) -> Iterator[tuple[str, bytes, bool]]:
        for g in self.gateways:
            st = wire.Status(
                ts=self.clock(0),
                state="online",
                agent="shelterwatch-fleet",
                devices=[wire.DeviceInfo(d.id, d.profile, d.labels) for d in g.devices],
            )
            yield self.topic(g.id, wire.Kind.STATUS), wire.encode(st), True

    def will(self, gw: str) -> bytes:
        return wire.encode(wire.last_will())

    def next_seq(self, d: VDevice) -> int:
        s = d.seq
        d.seq += 1
        return s

    def tick_messages(self) -> Iterator[tuple[str, bytes, bool]]:
        """Every message of one tick, for every gateway."""
        cfg, rnd, t = self.cfg, self.rnd, self.tick
        self.tick += 1
        for g in self.gateways:
            sub = 0
            for d in g.devices:
                sub += 1
                ts = self.clock(t, sub)
                now = ts.timestamp()
                changed = self._end_long_states(d, now)
                if t % cfg.snapshot_every == 0:
                    for p in d.points:
                        if rnd.random() < 0.2:
                            self._set(d, p, next_value(p, d.values.get(p.id), d.home.get(p.id), rnd), now)
                    msg = wire.Telemetry(
                        ts=ts, seq=self.next_seq(d), values=dict(d.values), snapshot=True, epoch=self.epoch
                    )
                    yield self.topic(g.id, wire.Kind.TELEMETRY, d.id), wire.encode(msg), False
                else:
                    k = min(len(d.points), rnd.randint(*cfg.points_per_report))
                    for p in rnd.sample(d.points, k):
                        if p.kind in ("str",) or (p.kind == "bool" and p.key != "occupied"):
                            continue
                        v = next_value(p, d.values.get(p.id), d.home.get(p.id), rnd)
                        self._set(d, p, v, now)
                        changed[p.id] = v
                    if changed:
                        msg = wire.Telemetry(ts=ts, seq=self.next_seq(d), values=changed, epoch=self.epoch)
                        yield self.topic(g.id, wire.Kind.TELEMETRY, d.id), wire.encode(msg), False
                if d.bay_points and rnd.random() < cfg.event_probability:
                    bay = rnd.choice(list(d.bay_points))
                    pid = d.bay_points[bay]
                    prev = bool(d.values.get(pid, False))
                    d.values[pid] = not prev
                    sub += 1
                    ts = self.clock(t, sub)
                    ev = wire.Event(
                        ts=ts,
                        seq=self.next_seq(d),
                        id=wire.new_id(),
                        kind="state",
                        point=pid,
                        value=not prev,
                        previous=prev,
                        text="car arrived" if not prev else "bay freed",
                        epoch=self.epoch,
                    )
                    yield self.topic(g.id, wire.Kind.EVENT, d.id), wire.encode(ev), False
                    tm = wire.Telemetry(ts=ts, seq=self.next_seq(d), values={pid: not prev}, epoch=self.epoch)
                    yield self.topic(g.id, wire.Kind.TELEMETRY, d.id), wire.encode(tm), False
                if t % cfg.health_every == cfg.health_every - 1:
                    polls = (t + 1) * 10
                    h = wire.DeviceHealth(
                        ts=ts,
                        seq=self.next_seq(d),
                        online=True,
                        polls=polls,
                        ok=polls,
                        latency_ms=round(rnd.uniform(8, 40), 1),
                        poll_rate_hz=1.0,
                        epoch=self.epoch,
                    )
                    yield self.topic(g.id, wire.Kind.HEALTH, d.id), wire.encode(h), False
            if t % cfg.health_every == cfg.health_every - 1:
                gh = wire.GatewayHealth(
                    ts=self.clock(t, sub + 1),
                    uptime_s=(t + 1) * cfg.tick_s,
                    buses=[wire.BusHealth("rs485-1", round(rnd.uniform(0.2, 0.6), 3))],
                )
                yield self.topic(g.id, wire.Kind.GATEWAY_HEALTH), wire.encode(gh), False

    @staticmethod
    def _set(d: VDevice, p: PointGen, v: Scalar, now: float) -> None:
        if p.dwell and d.values.get(p.id) != v:
            d.since[p.id] = now
        d.values[p.id] = v

    def _end_long_states(self, d: VDevice, now: float) -> dict[str, Scalar]:
        """A value a long state rule names (a port charging, 8 h rule) is held at most half the
        rule's `for`: then the point moves on (the bike leaves), reported at once."""
        out: dict[str, Scalar] = {}
        for p in d.long_states:
            for value, limit in p.dwell:
                if d.values.get(p.id) == value and now - d.since.get(p.id, now) >= limit:
                    others = [x for x in p.labels if x != value and x != "fault" and x not in p.avoid]
                    if others:
                        self._set(d, p, self.rnd.choice(others), now)
                        out[p.id] = d.values[p.id]
        return out

    def messages(self) -> Iterator[tuple[str, bytes, bool]]:
        """Births, then ticks until `ticks` (or forever)."""
        yield from self.births()
        while self.cfg.ticks is None or self.tick < self.cfg.ticks:
            yield from self.tick_messages()


@dataclass
class FleetResult:
    published: int = 0
    size: int = 0  # payload bytes
    seconds: float = 0.0
    by_kind: dict[str, int] = field(default_factory=dict)
    sent: list[tuple[str, bytes]] = field(default_factory=list)  # only with record=True
    unacked: int = 0  # published but never acknowledged by the broker (lost, if the broker lost them)

    @property
    def rate(self) -> float:
        return self.published / self.seconds if self.seconds else 0.0


def broker_urls(broker: str) -> list[str]:
    """`mqtt://h1:1883,mqtt://h2:1883` (or `mqtt://h1:1883,h2:1883`) → one URL per broker."""
    parts = [p.strip() for p in broker.split(",") if p.strip()]
    scheme = parts[0].split("://", 1)[0] if "://" in parts[0] else "mqtt"
    return [p if "://" in p else f"{scheme}://{p}" for p in parts]


def _connect(
    urls: list[str], client_id: str, will: tuple[str, bytes] | None, start: int = 0, keepalive: int = 30,
    wait_s: float = 30.0,
) -> Any:
    """A paho client on `urls[start]`; every later connection attempt goes to the next URL."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    servers = [urllib.parse.urlsplit(u if "://" in u else f"mqtt://{u}") for u in urls]
    at = {"i": start % len(servers), "attempts": 0}
    u = servers[at["i"]]
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.reconnect_delay_set(1, 2)
    if u.username:
        c.username_pw_set(u.username, u.password)
    if u.scheme in ("mqtts", "ssl", "tls"):
        c.tls_set()
    if will:
        c.will_set(will[0], will[1], qos=1, retain=True)

    def pre_connect(client: Any, _u: Any) -> None:
        if at["attempts"] and len(servers) > 1:
            at["i"] = (at["i"] + 1) % len(servers)
            # paho's `host` setter refuses while CONNECTING (its state here); reconnect() reads these next
            client._host, client._port = servers[at["i"]].hostname or "127.0.0.1", servers[at["i"]].port or 1883
        at["attempts"] += 1

    ready = threading.Event()
    c.on_pre_connect = pre_connect
    c.on_connect = lambda *a: ready.set()
    c.connect_async(u.hostname or "127.0.0.1", u.port or 1883, keepalive=keepalive)
    c.loop_start()
    # a NATS node answers an MQTT CONNECT once the session is in its replicated stream: seconds on a busy machine
    if not ready.wait(wait_s):
        c.loop_stop()
        raise ConnectionError(f"no CONNACK from {urls}")
    return c


def publish_fleet(
    cfg: FleetConfig,
    record: bool = False,
    model: FleetModel | None = None,
    stop: threading.Event | None = None,
) -> FleetResult:
    """Publish the fleet's traffic; returns counts. Bounded by `duration`, `max_messages`, `ticks`."""
    model = model or FleetModel(cfg)
    n_conn = max(1, min(cfg.connections, len(model.gateways)))
    urls = broker_urls(cfg.broker)
    clients = []
    gw_conn: dict[str, int] = {}
    for i in range(n_conn):
        mine = [g.id for j, g in enumerate(model.gateways) if j % n_conn == i]
        for g in mine:
            gw_conn[g] = i
        will = (model.topic(mine[0], wire.Kind.STATUS), model.will(mine[0])) if len(mine) == 1 else None
        clients.append(_connect(urls, f"{cfg.client_prefix}-{cfg.seed}-{i}", will, start=i, keepalive=cfg.keepalive_s))
    res = FleetResult()
    t0 = time.monotonic()
    deadline = t0 + cfg.duration if cfg.duration else None
    infos = []
    try:
        for topic, payload, retain in model.messages():
            if stop is not None and stop.is_set():
                break
            if cfg.max_messages is not None and res.published >= cfg.max_messages:
                break
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            if cfg.rate > 0:
                due = t0 + res.published / cfg.rate
                if due > now:
                    time.sleep(due - now)
            gw = topic.split("/")[3]
            c = clients[gw_conn[gw]]
            # Queue 0 = unbounded: paho takes every QoS 1 message; while disconnected it keeps it (rc
            # NO_CONN) and sends it after the reconnect, as it re-sends those still in flight.
            info = c.publish(topic, payload, qos=cfg.qos, retain=retain)
            infos.append(info)
            if len(infos) > 5000:
                infos = [i for i in infos if not _acked(i)]
            res.published += 1
            res.size += len(payload)
            kind = topic.rsplit("/", 1)[1]
            res.by_kind[kind] = res.by_kind.get(kind, 0) + 1
            if record:
                res.sent.append((topic, payload))
        deadline = time.monotonic() + 30
        while infos and time.monotonic() < deadline:
            infos = [i for i in infos if not _acked(i)]
            time.sleep(0.05)
        res.unacked = len(infos)
    finally:
        res.seconds = time.monotonic() - t0
        for c in clients:
            c.disconnect()
            c.loop_stop()
    return res


def _acked(info: Any) -> bool:
    """The broker acknowledged it (QoS 1), or it went out (QoS 0)."""
    return bool(info._published)


def now_utc() -> datetime:
    return datetime.now(UTC)
