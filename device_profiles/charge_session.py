"""Charge-session analytics: warn of a failing e-bike battery or connector minutes before a fixed
threshold would. Pure (no I/O, no clock reads) and numpy only, so the edge gateway runs it on what
it polls and the cloud on what it stores; docs/charging.md explains the model and how to tune it.

Why not thresholds: a failing pack first shows as heat that nothing explains — the connector
warms while the current is flat and the cabinet is not warming — long before it is hot. So each
port keeps a small thermal model learnt at the start of every session:

    connector temperature ≈ cabinet ambient + offset + a·F(I²) + d·S(P) + g·N

F is I² through the connector's fast thermal lag, S the charging power through the pack's slow
lag, N the neighbouring ports' power through the cabinet's lag; `offset` and `a` are fitted by
least squares over the first minutes of the session (the warm-up transient makes both
identifiable), d and g are priors (`Settings`). What the model does not explain — the *excess* —
is what the warnings are about: a growing excess under steady conditions, current spikes and
ripple, energy beyond any pack, a connector far hotter than its current or its peers explain.

Everything works on fixed time buckets (`bucket_s`, 60 s): samples are folded in as they arrive
(any subset of points, at any rate: 1 s polls at the edge, report-by-exception in the cloud), and
judged once per bucket. A single spiking sample is outvoted by the bucket median; a sensor stuck on
one value is recognised and not judged.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from statistics import linear_regression, median
from typing import Any

import numpy as np

Scalar = bool | int | float | str

# The charger family's point keys (docs/profiles.md): per port and per cabinet.
PORT_KEYS = ("state", "current", "power", "energy", "connector_temp", "enabled", "voltage")
AMBIENT_KEY = "ambient_temp"
ACTIVE_STATES = frozenset({"charging", "full", "plugged"})
NOMINAL_V = 228.0

# Reasons, most specific first: the first that applies is the warning's `reason`.
REASONS = (
    "current_spikes",  # spikes and ripple in the current (internal short)
    "no_taper",  # the current never tapers and heat rises under it (BMS)
    "energy_beyond_pack",  # more energy than any e-bike pack holds
    "connector_heating",  # far hotter than its current explains, or than its peers
    "unexplained_heat",  # heat that current and ambient do not explain, rising
)


@dataclass(frozen=True, slots=True)
class Settings:
    """Thresholds and priors; docs/charging.md says what each is for and how to tune it."""

    bucket_s: float = 60.0
    fast_tau_s: float = 120.0  # connector thermal lag
    slow_tau_s: float = 2400.0  # pack thermal lag, seen through the locker air
    neighbour_tau_s: float = 600.0  # how a neighbour's warmth reaches a port
    learn_from_s: float = 300.0  # learn the port's model over these minutes of a session ...
    learn_s: float = 720.0
    prior_a: float = 1.6  # ... pulled towards a typical port (K/A², the brick's heat included)
    prior_a_sd: float = 1.0
    prior_offset_sd: float = 2.0  # and towards the port's idle offset (0 if unknown) ...
    offset_max_c: float = 4.0  # ... which is never further than this from the cabinet's air
    pack_k_per_w: float = 0.0035  # typical pack warmth at the sensor per W of charging power
    pack_allowance_k_per_w: float = 0.006  # the most a healthy (old, big, fast) pack adds
    neighbour_k_per_k: float = 0.25  # warmth per K a neighbouring port runs above the cabinet
    warn_excess_c: float = 5.0  # unexplained heat that, rising, makes a warning
    warn_slope_c_per_min: float = 0.08
    high_excess_c: float = 9.0  # unexplained heat that makes a warning even when steady ...
    sustain_excess_c: float = 3.5  # ... and less of it, when it lasts (held `sustain_buckets`)
    sustain_buckets: int = 20
    early_from_s: float = 360.0  # before the model is learnt: heat rising faster than the warm-up can ...
    early_slope_c_per_min: float = 0.8  # ... (after `early_from_s`, beyond the steepest healthy connector)
    early_k_per_a2: float = 3.0  # the steepest healthy warm-up, K/A²
    near_cutoff_c: float = 15.0  # within this of the cut-off, less unexplained heat will do ...
    near_excess_c: float = 3.0  # ... this much, growing at least ...
    near_slope_c_per_min: float = 0.2  # ... this fast (a hot afternoon on a fast charger leaves little room)
    confirm_buckets: int = 3  # consecutive buckets a condition must hold
    trend_buckets: int = 12  # buckets in the trend (slope) fit
    severe_excess_c: float = 14.0  # a severe finding: the edge may stop the port
    stop_eta_s: float = 900.0  # ... or this close to the cut-off with a warning standing
    envelope_k_per_a2: float = 2.6  # hotter than any healthy connector at this current ...
    envelope_margin_c: float = 14.0  # ... by this much
    energy_limit_kwh: float = 2.2  # more than any e-bike pack takes in one charge
    spike_rel: float = 0.15  # a current sample this far above the mean of its neighbours is a spike
    spikes_warn: int = 3  # spikes within `ripple_buckets` buckets ...
    ripple_rel: float = 0.015  # ... with this much ripple (relative, against the local trend)
    ripple_buckets: int = 10
    peer_ratio: float = 2.0  # a port heating this many times as much as its peers at the same load ...
    peer_excess_c: float = 8.0  # ... and this many °C more
    peer_load: float = 0.25  # peers: ports charging within ±25 % of its current
    stuck_s: float = 300.0  # a reading that has not moved for this long (and `stuck_samples` reads) ...
    stuck_samples: int = 10  # ... is not judged
    steep_c_per_min: float = 0.5  # an excess growing this fast needs one bucket less to confirm
    curve_points: int = 720  # buckets of curve kept per session (cloud pages)


@dataclass(slots=True)
class Finding:
    """An `abnormal_charge` warning (or its escalation to severe) for one port."""

    port: int
    at: float
    reason: str
    reasons: tuple[str, ...]
    severe: bool
    eta_s: float | None  # estimated time to the cut-off temperature at this pace; None: not heading there
    excess_c: float
    slope_c_per_min: float
    temp_c: float
    explained_c: float
    current_a: float
    energy_kwh: float
    session_s: float
    spikes: int = 0

    @property
    def trip(self) -> str:
        """The charge session's id (port and start): its warning and its severe finding share it,
        so the cloud keeps one alarm per session (docs/alarms.md, repeated edge events)."""
        return f"{self.port}-{round(self.at - self.session_s)}"

    def data(self) -> dict[str, Scalar]:
        """The wire event's `data` (flat scalars, docs/wire.md)."""
        d: dict[str, Scalar] = {
            "reason": self.reason,
            "reasons": ",".join(self.reasons),
            "severe": self.severe,
            "excess_c": round(self.excess_c, 1),
            "slope_c_per_min": round(self.slope_c_per_min, 2),
            "temp_c": round(self.temp_c, 1),
            "explained_c": round(self.explained_c, 1),
            "current_a": round(self.current_a, 2),
            "energy_kwh": round(self.energy_kwh, 3),
            "session_s": round(self.session_s),
            "index": self.port,
            "trip": self.trip,
        }
        if self.eta_s is not None:
            d["eta_s"] = round(self.eta_s)
        if self.spikes:
            d["spikes"] = self.spikes
        return d


@dataclass(slots=True)
class Session:
    """One charge on one port, from plug-in (current flowing) to unplug."""

    port: int
    start: float
    end: float | None = None
    phase: str = "cc"  # cc | taper | full | stopped
    energy_kwh: float = 0.0
    peak_c: float = -273.0
    peak_excess_c: float = 0.0
    peak_slope_c_per_min: float = 0.0  # of the excess, while it was above 2 °C
    peak_sustained_c: float = 0.0  # the most excess held for `sustain_buckets`
    cc_current_a: float = 0.0
    cc_s: float = 0.0
    taper_at: float | None = None
    learned: bool = False
    offset_c: float = 0.0
    a_k_per_a2: float = 0.0
    flagged: str = ""  # the warning's reason, if any
    severe: bool = False
    warned_at: float | None = None
    curve: list[tuple[float, float, float, float]] = field(default_factory=list)  # t, temp, explained, current

    @property
    def duration_s(self) -> float:
        return (self.end if self.end is not None else self.start) - self.start


@dataclass(slots=True)
class _Port:
    n: int
    temps: list[float] = field(default_factory=list)
    currents: list[float] = field(default_factory=list)
    powers: list[float] = field(default_factory=list)
    state: str | None = None
    enabled: bool | None = None
    energy: float | None = None
    energy_at_start: float | None = None
    voltage: float = NOMINAL_V
    temp: float | None = None
    current: float = 0.0
    power: float = 0.0
    raw_last: float | None = None
    moved_at: float = 0.0
    same: int = 0  # consecutive identical readings
    c1: float = 0.0  # the last two current samples, for spikes and ripple against the local trend
    c2: float = 0.0
    nc: int = 0
    spikes: int = 0  # in the bucket being filled
    wobble: list[float] = field(default_factory=list)
    f_fast: float = 0.0  # I² through the connector lag
    s_slow: float = 0.0  # power through the pack lag
    n_cab: float = 0.0  # neighbours' warmth above the cabinet, lagged
    idle_offset: float | None = None  # temperature above the cabinet while idle and cool
    idle_at: float = -1e18
    session: Session | None = None
    rows: list[tuple[float, float, float, float, float, float]] = field(default_factory=list)  # t, y, F, S, N, I
    excess: deque[tuple[float, float, float]] = field(default_factory=lambda: deque(maxlen=64))  # age, excess, temp
    ripple: deque[tuple[int, float]] = field(default_factory=lambda: deque(maxlen=32))
    hold: dict[str, int] = field(default_factory=dict)  # condition → consecutive buckets
    idle_since: float | None = None
    # a bike taken away and another plugged in within one bucket (or between two polls): when, the
    # energy counter's last reading before it was reset and its first after
    swap_at: float | None = None
    swap_energy: tuple[float, float] | None = None


class ChargeWatch:
    """Every port of one charger (one cabinet): sessions, the thermal model, the peers.

    `observe(values, now)` takes wire point ids (`port.3.current`, `ambient_temp`) and returns the
    findings of the buckets it closed. `cutoff_c` is the edge's cut-off (the profile's interlock),
    used for the time-to-cut-off estimate. With `judge=False` (the cloud, which takes the edge's
    verdict) it keeps the sessions and their curves and finds nothing."""

    def __init__(
        self,
        ports: Iterable[int],
        cutoff_c: float = 75.0,
        settings: Settings | None = None,
        keep_curves: bool = False,
        keep_ended: int = 0,
        judge: bool = True,
    ) -> None:
        self.s = settings or Settings()
        self.judge = judge  # False: bookkeeping only (sessions, model, curves), no findings
        self.cutoff_c = cutoff_c
        self.keep_curves = keep_curves
        self.ports: dict[int, _Port] = {n: _Port(n) for n in ports}
        self._order = sorted(self.ports)
        self._ids: dict[str, tuple[_Port, int] | None] = {}
        self._plan_keys: tuple[str, ...] = ()
        self._plan: list[tuple[Any, int] | None] = []
        self._ambient: list[float] = []
        self.ambient: float | None = None
        self.bucket: int | None = None
        self.closed_at: float | None = None
        self.ended: deque[Session] = deque(maxlen=keep_ended or None) if keep_ended else deque(maxlen=1)
        self._kf = self._ks = self._kc = 0.0
        self._k_dt = -1.0

    @classmethod
    def for_profile(cls, profile: Any, settings: Settings | None = None, **kw: Any) -> ChargeWatch:
        """Ports from the profile's `port` block, cut-off from its connector interlock."""
        cutoff = 75.0
        for il in profile.interlocks:
            if il.block == "port" and il.when.point == "connector_temp" and isinstance(il.when.value, int | float):
                cutoff = float(il.when.value)
        return cls(profile.instance_range("port"), cutoff, settings, **kw)

    # ------------------------------------------------------------------ input
    def _where(self, pid: str) -> tuple[_Port, int] | None:
        if pid in self._ids:
            return self._ids[pid]
        out: tuple[_Port, int] | None = None
        parts = pid.split(".")
        if len(parts) == 3 and parts[0] == "port" and parts[1].isdigit() and parts[2] in PORT_KEYS:
            n = int(parts[1])
            if n in self.ports:
                out = (self.ports[n], PORT_KEYS.index(parts[2]))
        if len(self._ids) < 4096:
            self._ids[pid] = out
        return out

    def observe(self, values: Mapping[str, Scalar], now: float) -> list[Finding]:
        """Fold in one poll's (or one message's) values read at `now` (seconds)."""
        out = self._tick(now)
        keys = tuple(values)
        if keys != self._plan_keys:  # a poll class reads the same points every time: plan once
            self._plan_keys = keys
            self._plan = [self._where(k) if k != AMBIENT_KEY else (None, -1) for k in keys]
        spike_rel = self.s.spike_rel
        for w, v in zip(self._plan, values.values(), strict=True):
            if w is None:
                continue
            p, key = w
            num = type(v) is float or type(v) is int
            if key == 4:  # connector_temp
                if num:
                    p.temps.append(v)
                    if v != p.raw_last:
                        p.raw_last, p.moved_at, p.same = v, now, 0
                    else:
                        p.same += 1
            elif key == 1:  # current
                if num:
                    p.currents.append(v)
                    if p.state is None and float(v) <= 0.05 and p.session is not None and p.swap_at is None:
                        p.swap_at = now  # no state point: a current that stops is the end of the session
                    # the previous sample against the mean of its neighbours: a spike stands out,
                    # a taper (a straight or gently curved line) does not
                    if p.nc >= 2 and p.c1 > 0.3:
                        d = p.c1 - (p.c2 + v) / 2
                        p.wobble.append(abs(d) / p.c1)
                        if d > spike_rel * p.c1:
                            p.spikes += 1
                    p.c2, p.c1, p.nc = p.c1, float(v), p.nc + 1
            elif key == 2:  # power
                if num:
                    p.powers.append(v)
            elif key == 0:  # state
                p.state = str(v)
                if p.state == "idle" and p.session is not None and p.swap_at is None:
                    p.swap_at = now  # unplugged, if only for one poll: the session ends here
            elif key == 5:  # enabled
                p.enabled = bool(v)
            elif key == 3:  # energy
                if num:
                    # the charger resets the session's counter when a bike is plugged in: a counter that
                    # went back is a new bike, even when no poll saw the port empty
                    if p.energy is not None and v < p.energy - 5e-4 and p.session is not None:
                        p.swap_at = now if p.swap_at is None else p.swap_at
                        p.swap_energy = (p.energy, float(v))
                    p.energy = float(v)
            elif key == 6:  # voltage
                if num and float(v) > 50:
                    p.voltage = float(v)
            elif key == -1 and num:  # the cabinet's ambient
                self._ambient.append(float(v))
        return out

    def _tick(self, now: float) -> list[Finding]:
        b = math.floor(now / self.s.bucket_s)
        if self.bucket is None:
            self.bucket = b
        elif b > self.bucket:
            out = self._close((self.bucket + 1) * self.s.bucket_s, (b - self.bucket) * self.s.bucket_s)
            self.bucket = b
            return out
        return []

    # ------------------------------------------------------------------ buckets
    def _close(self, t: float, dt: float) -> list[Finding]:
        s = self.s
        if self._ambient:
            self.ambient = float(sum(self._ambient) / len(self._ambient))
            self._ambient.clear()
        if dt != self._k_dt:
            self._k_dt = dt
            self._kf = 1.0 - math.exp(-dt / s.fast_tau_s)
            self._ks = 1.0 - math.exp(-dt / s.slow_tau_s)
            self._kc = 1.0 - math.exp(-dt / s.neighbour_tau_s)
        self.closed_at = t
        ports = self.ports
        for p in ports.values():
            if p.temps or p.currents or p.powers or p.session is not None:
                self._fold(p)
        out: list[Finding] = []
        order = self._order
        amb = self.ambient
        for i, n in enumerate(order):
            p = ports[n]
            nb = 0.0
            if amb is not None:
                if i > 0 and order[i - 1] == n - 1 and (tl := ports[n - 1].temp) is not None:
                    nb += max(0.0, tl - amb)
                if i + 1 < len(order) and order[i + 1] == n + 1 and (tr := ports[n + 1].temp) is not None:
                    nb += max(0.0, tr - amb)
            p.f_fast += (p.current * p.current - p.f_fast) * self._kf
            p.s_slow += (p.power - p.s_slow) * self._ks
            p.n_cab += (nb - p.n_cab) * self._kc
            f = self._session(p, t)
            if f is not None:
                out.append(f)
        return out

    def _fold(self, p: _Port) -> None:
        """A bucket's samples → the port's values for it (robust to one bad sample)."""
        if p.temps:
            p.temp = float(median(p.temps)) if len(p.temps) > 2 else float(p.temps[-1])
            p.temps.clear()
        cur = p.currents
        if cur:
            med = float(median(cur)) if len(cur) > 2 else float(cur[-1])
            p.current = float(sum(cur) / len(cur)) if len(cur) > 2 else med
            cur.clear()
        p.ripple.append((p.spikes, float(median(p.wobble)) if p.wobble else 0.0))
        p.spikes = 0
        p.wobble.clear()
        if p.powers:
            p.power = float(sum(p.powers) / len(p.powers))
            p.powers.clear()
        elif p.current > 0:
            p.power = p.current * p.voltage * 0.97
        else:
            p.power = 0.0
        if p.state in ("idle", "disabled", "fault") or p.enabled is False:
            p.current, p.power = 0.0, 0.0

    # ------------------------------------------------------------------ sessions
    def _active(self, p: _Port) -> bool:
        if p.enabled is False:
            return False
        if p.state is not None:
            return p.state in ACTIVE_STATES
        return p.current > 0.05

    def _session(self, p: _Port, t: float) -> Finding | None:
        s = self.s
        swap_at, swap_energy, p.swap_at, p.swap_energy = p.swap_at, p.swap_energy, None, None
        if swap_at is not None and p.session is not None:  # the bike changed within the bucket
            ended = p.session
            if swap_energy is not None and p.energy_at_start is not None and swap_energy[0] >= p.energy_at_start:
                ended.energy_kwh = swap_energy[0] - p.energy_at_start
            ended.end = swap_at
            self.ended.append(ended)
            p.session = None
        ses = p.session
        if not self._active(p):
            if ses is not None:
                ses.end = t
                ses.phase = "stopped" if p.enabled is False else ses.phase
                self.ended.append(ses)
                p.session = None
            if p.idle_since is None:
                p.idle_since = t
            stuck = t - p.moved_at >= s.stuck_s and p.same >= s.stuck_samples
            if p.temp is not None and self.ambient is not None and p.f_fast < 0.02 and p.s_slow < 20 and not stuck:
                d = min(s.offset_max_c, max(-s.offset_max_c, p.temp - self.ambient - s.neighbour_k_per_k * p.n_cab))
                p.idle_offset = d if p.idle_offset is None or t - p.idle_at > 1800 else p.idle_offset * 0.8 + d * 0.2
                p.idle_at = t
            return None
        if ses is None:
            ses = p.session = Session(p.n, t - s.bucket_s if swap_at is None else swap_at)
            p.energy_at_start = p.energy if swap_energy is None else swap_energy[1]
            p.rows.clear()
            p.excess.clear()
            p.ripple.clear()
            p.hold.clear()
            p.idle_since = None
        if p.temp is None or self.ambient is None:
            return None
        age = t - ses.start
        # bookkeeping
        if p.energy is not None and p.energy_at_start is not None and p.energy >= p.energy_at_start:
            ses.energy_kwh = p.energy - p.energy_at_start
        else:
            ses.energy_kwh += p.power * s.bucket_s / 3.6e6
        ses.peak_c = max(ses.peak_c, p.temp)
        self._phase(ses, p, t)
        y = p.temp - self.ambient - s.pack_k_per_w * p.s_slow - s.neighbour_k_per_k * p.n_cab
        stuck = t - p.moved_at >= s.stuck_s and p.same >= s.stuck_samples
        if not stuck:
            p.rows.append((age, y, p.f_fast, p.s_slow, p.n_cab, p.current))
        elif p.rows and p.rows[-1][0] >= p.moved_at - ses.start:
            frozen = p.moved_at - ses.start  # recognised late: what was recorded since is not a reading
            p.rows = [r for r in p.rows if r[0] < frozen]
        if not ses.learned and age >= s.learn_s:
            self._learn(ses, p, t)
        if ses.learned and len(p.rows) > 32:
            del p.rows[:-8]  # learnt: only the last few are still read (a bike may stay plugged for days)
        explained = self.ambient + ses.offset_c + ses.a_k_per_a2 * p.f_fast
        explained += s.pack_k_per_w * p.s_slow + s.neighbour_k_per_k * p.n_cab
        excess = p.temp - explained if ses.learned else 0.0
        if self.keep_curves:
            ses.curve.append((t, p.temp, explained if ses.learned else float("nan"), p.current))
            if len(ses.curve) > s.curve_points:
                del ses.curve[0]
        if stuck:
            return None
        # the most a healthy pack could add beyond the typical one does not count
        excess -= (s.pack_allowance_k_per_w - s.pack_k_per_w) * p.s_slow
        if ses.learned:
            p.excess.append((age, excess, p.temp))
            ses.peak_excess_c = max(ses.peak_excess_c, excess)
        return self._judge(ses, p, t, excess, explained) if self.judge else None

    def _phase(self, ses: Session, p: _Port, t: float) -> None:
        i = p.current
        if p.state == "full" or (i < 0.05 and ses.cc_current_a > 0):
            ses.phase = "full"
            return
        if i >= 0.9 * ses.cc_current_a or ses.cc_current_a == 0:
            if ses.phase == "taper" and i > 0.95 * ses.cc_current_a:
                ses.phase = "cc"  # it went back up: a taper that undid itself
            ses.cc_current_a = max(ses.cc_current_a * 0.98 + i * 0.02, i if ses.cc_current_a == 0 else 0)
            if ses.phase == "cc":
                ses.cc_s += self.s.bucket_s
            return
        if ses.phase == "cc":
            ses.phase = "taper"
            ses.taper_at = t

    def _learn(self, ses: Session, p: _Port, t: float) -> None:
        """Fit offset + a·F over the settled minutes of the warm-up (or, if the reading was stuck then,
        the first minutes it moved again), by least squares pulled towards priors: the port's idle
        offset (or 0) and a typical `a`. With a steady current the data fix the level and the priors
        share it out; a current that changed fixes both."""
        s = self.s
        need = max(4, round((s.learn_s - s.learn_from_s) / s.bucket_s))
        rows = [r for r in p.rows if r[0] >= s.learn_from_s][:need]
        if len(rows) < need:
            return  # not enough readings yet: learn later, judge nothing until then
        ses.learned = True
        recent_idle = p.idle_offset is not None and t - p.idle_at < ses.start - p.idle_at + 1800
        off0 = p.idle_offset if recent_idle and p.idle_offset is not None else 0.0
        noise = 0.3  # K, per bucket
        w_off, w_a = noise / s.prior_offset_sd, noise / s.prior_a_sd
        a_mat = [[1.0, r[2]] for r in rows] + [[w_off, 0.0], [0.0, w_a]]
        b_vec = [r[1] for r in rows] + [w_off * off0, w_a * s.prior_a]
        (off, a), *_ = np.linalg.lstsq(np.asarray(a_mat), np.asarray(b_vec), rcond=None)
        if a < 0:
            off, a = float(median([r[1] for r in rows])), 0.0
        if abs(off) > s.offset_max_c:  # no port sits that far from its cabinet: keep the level, not the split
            f = float(median([r[2] for r in rows]))
            level = off + a * f
            off = math.copysign(s.offset_max_c, off)
            a = max(0.0, (level - off) / f) if f > 0.05 else a
        ses.offset_c, ses.a_k_per_a2 = float(off), float(a)

    # ------------------------------------------------------------------ judging
    def _held(self, p: _Port, key: str, cond: bool, need: int = 0) -> bool:
        n = p.hold.get(key, 0) + 1 if cond else 0
        p.hold[key] = n
        return n >= (need or self.s.confirm_buckets)

    def _judge(self, ses: Session, p: _Port, t: float, excess: float, explained: float) -> Finding | None:
        s = self.s
        age = t - ses.start
        reasons: list[str] = []
        slope = t_slope = 0.0
        level = excess
        if ses.learned and len(p.excess) >= 3:
            tail = list(p.excess)[-s.trend_buckets :]
            level = float(median([e for _, e, _ in tail[-3:]]))
            if len(tail) >= 5 and level >= min(0.4 * s.warn_excess_c, s.near_excess_c):  # only near a warning
                mins = [a / 60.0 for a, _, _ in tail]
                slope = linear_regression(mins, [e for _, e, _ in tail]).slope
                t_slope = linear_regression(mins, [x for _, _, x in tail]).slope
        if level >= 2.0:
            ses.peak_slope_c_per_min = max(ses.peak_slope_c_per_min, slope)
        # rising: more heat than explained, growing, and the connector really warming (a reading
        # that merely stays put while the current tapers is not a fire)
        cond = ses.learned and level >= s.warn_excess_c and slope >= s.warn_slope_c_per_min and t_slope > 0.03
        near = p.temp is not None and self.cutoff_c - p.temp <= s.near_cutoff_c
        cond = cond or (
            ses.learned and near and level >= s.near_excess_c and slope >= s.near_slope_c_per_min and t_slope > 0.1
        )
        rising = self._held(p, "rising", cond)
        if cond and not rising and slope >= s.steep_c_per_min and p.hold["rising"] >= s.confirm_buckets - 1:
            rising = True
        high = self._held(p, "high", ses.learned and level >= s.high_excess_c)
        if ses.learned and len(p.excess) >= s.sustain_buckets:
            held = min(e for _, e, _ in list(p.excess)[-s.sustain_buckets :])
            ses.peak_sustained_c = max(ses.peak_sustained_c, held)
            high = high or held >= s.sustain_excess_c
        warming = not ses.learned and age >= s.early_from_s and self._early(p) >= s.early_slope_c_per_min
        early = self._held(p, "early", warming, 2)
        rising = rising or early
        # hotter than any healthy connector at this current, learnt or not
        raw = p.temp - (self.ambient or 0.0) if p.temp is not None else 0.0
        envelope = s.envelope_k_per_a2 * p.f_fast + s.pack_allowance_k_per_w * p.s_slow + s.envelope_margin_c
        hot = self._held(p, "envelope", age >= 3 * s.bucket_s and raw >= envelope)
        spikes = sum(k for k, _ in list(p.ripple)[-s.ripple_buckets :])
        rip = [r for _, r in list(p.ripple)[-s.ripple_buckets :]]
        ripple = float(median(rip)) if rip else 0.0
        spiky = p.current > 0.3 and spikes >= s.spikes_warn and ripple >= s.ripple_rel
        energy = ses.energy_kwh >= s.energy_limit_kwh
        peers = self._peers(p) if ses.learned else None
        peer_hot = self._held(
            p,
            "peers",
            peers is not None and peers[0] >= s.peer_ratio * peers[1] and peers[0] - peers[1] >= s.peer_excess_c,
        )
        if spiky:
            reasons.append("current_spikes")
        if (rising or high) and ses.phase == "cc" and ses.cc_current_a > 0 and ses.taper_at is None:
            reasons.append("no_taper")
        if energy:
            reasons.append("energy_beyond_pack")
        if hot or peer_hot:
            reasons.append("connector_heating")
        if rising or high:
            reasons.append("unexplained_heat")
        if not reasons:
            return None
        if ses.severe:
            return None  # said all there is to say about this session
        eta = self._eta(p, explained)
        severe = (ses.learned and level >= s.severe_excess_c and slope > 0) or (
            ses.flagged != "" and eta is not None and eta <= s.stop_eta_s and level >= s.warn_excess_c
        )
        severe = severe or (hot and raw >= envelope + 6.0) or ses.energy_kwh >= 1.3 * s.energy_limit_kwh
        if ses.flagged and not severe:
            return None
        ordered = tuple(r for r in REASONS if r in reasons)
        ses.flagged = ses.flagged or ordered[0]
        ses.warned_at = ses.warned_at if ses.warned_at is not None else t
        ses.severe = ses.severe or severe
        return Finding(
            port=p.n,
            at=t,
            reason=ordered[0],
            reasons=ordered,
            severe=severe,
            eta_s=eta,
            excess_c=level if ses.learned else raw - envelope + s.envelope_margin_c,
            slope_c_per_min=slope,
            temp_c=p.temp if p.temp is not None else float("nan"),
            explained_c=explained,
            current_a=p.current,
            energy_kwh=ses.energy_kwh,
            session_s=age,
            spikes=spikes if spiky else 0,
        )

    def _early(self, p: _Port) -> float:
        """During the warm-up: how much faster (K/min) the connector warms than the steepest healthy
        connector could at this current (its fast lag still settling)."""
        rows = p.rows[-4:]
        if len(rows) < 4 or min(r[5] for r in rows) < 0.9 * max(r[5] for r in rows):
            return 0.0  # too few buckets, or the current moved
        if rows[-1][0] - rows[0][0] > 3.5 * self.s.bucket_s:
            return 0.0  # a gap (a reading that was stuck): no slope across it
        mins = [r[0] / 60.0 for r in rows]
        slope = linear_regression(mins, [r[1] for r in rows]).slope
        f_slope = linear_regression(mins, [r[2] for r in rows]).slope
        return slope - self.s.early_k_per_a2 * max(0.0, f_slope)

    def _peers(self, p: _Port) -> tuple[float, float] | None:
        """(this port's heating at its current, what its peers' would be): from the learnt `a` of the
        ports charging at a similar current (within `peer_load`), as at least two must be."""
        ses = p.session
        if ses is None or not ses.learned or p.current < 0.8:
            return None
        lo, hi = p.current / (1 + self.s.peer_load), p.current * (1 + self.s.peer_load)
        others = [
            q.session.a_k_per_a2
            for q in self.ports.values()
            if q is not p and q.session is not None and q.session.learned and lo <= q.current <= hi
        ]
        if len(others) < 2:
            return None
        i2 = p.current * p.current
        return ses.a_k_per_a2 * i2, max(float(median(others)), 0.1) * i2

    def _eta(self, p: _Port, explained: float) -> float | None:
        """Seconds until the connector reaches the cut-off if the excess keeps growing as it has:
        exponentially (self-heating feeds on itself) when it fits, else along a straight line."""
        tail = [(a, e) for a, e, _ in list(p.excess)[-self.s.trend_buckets :]]
        if p.temp is None or len(tail) < 5:
            return None
        if p.temp >= self.cutoff_c:
            return 0.0
        need = self.cutoff_c - explained  # the excess at which the cut-off is reached
        now_e = tail[-1][1]
        mins = [a / 60.0 for a, _ in tail]
        grow = [(m, math.log(e)) for m, (_, e) in zip(mins, tail, strict=True) if e > 1.0]
        if len(grow) >= 5 and now_e > 1.0:
            rate = linear_regression([m for m, _ in grow], [g for _, g in grow]).slope
            if rate > 1e-3:
                return float(min(12 * 3600.0, max(0.0, math.log(max(need, now_e) / now_e) / rate * 60.0)))
        slope = linear_regression(mins, [e for _, e in tail]).slope
        if slope > 0.02:
            return float(min(12 * 3600.0, max(0.0, (need - now_e) / slope * 60.0)))
        return None

    # ------------------------------------------------------------------ views
    def session(self, port: int) -> Session | None:
        return self.ports[port].session


# ---------------------------------------------------------------------------------- words
# What each reason means to a person, in English and Chinese: the edge's event text and the cloud's
# push both say it from here.
REASON_WORDS: dict[str, tuple[str, str]] = {
    "current_spikes": ("the charging current spikes and ripples, as an internal short in the battery makes it",
                       "充电电流出现尖峰和波动，像是电池内部短路"),
    "no_taper": ("the charge never tapers: current keeps flowing into the battery while it heats up "
                 "(its BMS may have failed)",
                 "充电电流一直不下降，电池却在升温（电池管理系统可能失效）"),
    "energy_beyond_pack": ("more energy went in than any e-bike battery holds", "充入电量超过任何电动车电池的容量"),
    "connector_heating": ("the connector heats far more than its current explains (or than the ports beside it)",
                          "充电口发热远超电流所能解释（或明显高于相邻充电口）"),
    "unexplained_heat": ("the port is heating up although neither the current nor the cabinet temperature explains it",
                         "充电口在升温，但电流和柜内温度都解释不了"),
}


def describe(data: Mapping[str, Any], cutoff_c: float | None = None, lang: str = "en") -> str:
    """One sentence from a finding's wire data (`Finding.data()`), in `en` or `zh`."""
    zh = lang == "zh"
    reason = str(data.get("reason", "unexplained_heat"))
    words = REASON_WORDS.get(reason, REASON_WORDS["unexplained_heat"])[1 if zh else 0]
    parts = [words]
    ex, slope = data.get("excess_c"), data.get("slope_c_per_min")
    if isinstance(ex, int | float) and not isinstance(ex, bool) and ex > 0.5:
        rising = isinstance(slope, float) and slope > 0.05
        if zh:
            parts.append(f"比应有温度高 {ex:.1f} °C" + (f"，每分钟升 {slope:.1f} °C" if rising else ""))
        else:
            parts.append(f"{ex:.1f} °C above what it should be" + (f", rising {slope:.1f} °C/min" if rising else ""))
    energy = data.get("energy_kwh")
    if isinstance(energy, int | float) and not isinstance(energy, bool) and energy > 0:
        parts.append(f"本次已充 {energy:.2f} kWh" if zh else f"{energy:.2f} kWh charged so far")
    eta = data.get("eta_s")
    if isinstance(eta, int | float) and not isinstance(eta, bool):
        mins = max(1, round(eta / 60))
        at = f" {cutoff_c:g} °C" if cutoff_c is not None else ""
        if zh:
            parts.append(f"按此速度约 {mins} 分钟后达到断电温度{at}")
        else:
            parts.append(f"about {mins} min to the{at} cut-off at this pace")
    return ("；" if zh else "; ").join(parts)
