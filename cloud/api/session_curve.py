"""A charge session's curve as a small inline SVG: the connector temperature, the temperature the
port's model explains (dashed) and the current (thin, own scale). Pure; no JavaScript, no library:
the estate page renders one per port and refreshes them with the live fragment."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

W, H, PAD = 180, 48, 2


def _path(points: Sequence[tuple[float, float]]) -> str:
    out, pen = [], "M"
    for x, y in points:
        if math.isnan(y):
            pen = "M"
            continue
        out.append(f"{pen}{x:.1f},{y:.1f}")
        pen = "L"
    return " ".join(out)


def svg(curve: Sequence[tuple[float, float, float, float]], title: str = "", flagged: bool = False) -> str:
    """`curve`: (t, temperature, explained or NaN, current) per minute. Empty curve: empty string."""
    pts = [c for c in curve if not math.isnan(c[1])]
    if len(pts) < 2:
        return ""
    t0, t1 = pts[0][0], pts[-1][0]
    temps = [c[1] for c in pts] + [c[2] for c in pts if not math.isnan(c[2])]
    lo, hi = min(temps) - 1.0, max(temps) + 1.0
    imax = max(max(c[3] for c in pts), 0.5)
    span = max(t1 - t0, 1.0)

    def x(t: float) -> float:
        return PAD + (t - t0) / span * (W - 2 * PAD)

    def y(v: float, top: float, bottom: float) -> float:
        return PAD + (1 - (v - bottom) / (top - bottom)) * (H - 2 * PAD)

    temp = _path([(x(c[0]), y(c[1], hi, lo)) for c in pts])
    expl = _path([(x(c[0]), y(c[2], hi, lo) if not math.isnan(c[2]) else math.nan) for c in pts])
    cur = _path([(x(c[0]), y(c[3], imax * 1.05, 0.0)) for c in pts])
    cls = "curve flagged" if flagged else "curve"
    return (
        f'<svg class="{cls}" viewBox="0 0 {W} {H}" preserveAspectRatio="none" role="img" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>'
        f'<path class="current" d="{cur}" fill="none" stroke="#9aa" stroke-width="1" '
        'vector-effect="non-scaling-stroke"/>'
        f'<path class="explained" d="{expl}" fill="none" stroke="#888" stroke-width="1.2" stroke-dasharray="3 2" '
        'vector-effect="non-scaling-stroke"/>'
        f'<path class="temp" d="{temp}" fill="none" stroke="{"#c22" if flagged else "#d60"}" stroke-width="1.6" '
        'vector-effect="non-scaling-stroke"/>'
        "</svg>"
    )
