"""A charger port's charge session as a `resume_state` row and back (pure, no I/O).

What a replica taking a charger over needs so that a session open at the takeover is neither lost
nor split into a wrong one (a session "starting" at the takeover, with the energy counted from
there): the session's start and bookkeeping (energy baseline, peaks, phase, the edge's flag) and
the port's last known values (state, current, power, energy counter, temperature). Without those
values the new owner, which hears only what changes (report by exception), would judge the port
idle at its first bucket and end the session there.

What is not carried: the thermal model's learning rows and the session curve (the new owner learns
again from its own buckets; the pages' curve starts at the takeover). A row is written by the
previous owner; anything malformed gives None (the port starts afresh, as before rows were kept).
"""

from __future__ import annotations

import math
from typing import Any

from cloud.alarms.resume import finite
from device_profiles.charge_session import ChargeWatch, Session

_SES_FLOATS = ("start", "energy_kwh", "peak_c", "peak_excess_c", "cc_current_a", "cc_s")
_SES_OPT = ("end", "taper_at", "warned_at")
_PORT_FLOATS = ("current", "power")
_PORT_OPT = ("energy", "energy_at_start", "temp")


def session_row(watch: ChargeWatch, port: int, ses: Session, at: float) -> dict[str, Any]:
    """The row of `port`'s session `ses` (open, or just ended: then `end` is set), as of the reading
    at `at` (edge time): the next owner ignores readings up to it (the stream delivers the previous
    owner's last ones again; an energy counter read again would look like a new bike)."""
    p = watch.ports[port]
    d: dict[str, Any] = {k: getattr(ses, k) for k in (*_SES_FLOATS, *_SES_OPT)}
    d.update(phase=ses.phase, flagged=ses.flagged, severe=ses.severe)
    d.update({k: getattr(p, k) for k in (*_PORT_FLOATS, *_PORT_OPT)})
    d.update(state=p.state, enabled=p.enabled, at=at, amb=watch.ambient)
    return d


def parse_session(port: int, data: dict[str, Any]) -> Session | None:
    """The Session a row describes, or None if the row is malformed."""
    if not all(finite(data.get(k)) for k in _SES_FLOATS) or not all(_opt(data.get(k)) for k in _SES_OPT):
        return None
    if not isinstance(data.get("phase"), str) or not isinstance(data.get("flagged"), str):
        return None
    if not isinstance(data.get("severe"), bool):
        return None
    ses = Session(port, float(data["start"]))
    for k in (*_SES_FLOATS, *_SES_OPT):
        v = data.get(k)
        setattr(ses, k, None if v is None else float(v))
    ses.phase, ses.flagged, ses.severe = data["phase"], data["flagged"], data["severe"]
    return ses


def resume_port(watch: ChargeWatch, port: int, ses: Session, data: dict[str, Any]) -> bool:
    """Put an open session and its port's last known values back into `watch` (replacing what it
    holds for that port). False if the row's port values are malformed."""
    if not all(finite(data.get(k)) for k in _PORT_FLOATS) or not all(_opt(data.get(k)) for k in _PORT_OPT):
        return False
    state, enabled, at, amb = data.get("state"), data.get("enabled"), data.get("at"), data.get("amb")
    if not (state is None or isinstance(state, str)) or not (enabled is None or isinstance(enabled, bool)):
        return False
    if at is None or not finite(at) or not _opt(amb):
        return False
    # the bucket the previous owner was filling closes at the next reading, judged on these values
    bucket = math.floor(at / watch.s.bucket_s)
    if watch.bucket is None or watch.bucket < bucket:
        watch.bucket = bucket
    if watch.ambient is None and amb is not None:
        watch.ambient = float(amb)
    p = watch.ports[port]
    for k in (*_PORT_FLOATS, *_PORT_OPT):
        v = data.get(k)
        setattr(p, k, None if v is None and k in _PORT_OPT else float(v) if v is not None else 0.0)
    p.state, p.enabled = state, enabled
    p.session = ses
    p.rows.clear()
    p.excess.clear()
    p.hold.clear()
    p.idle_since = None
    return True


def _opt(v: Any) -> bool:
    return v is None or finite(v)
