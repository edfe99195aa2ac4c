"""Draw each dashboard's panels with matplotlib from InfluxDB query results, for the docs.

These pictures are not Grafana screenshots (Grafana cannot run here): they show the data each panel's
real query returned on the simulated day, laid out on the dashboard's grid, so a manager sees what
each screen holds. Used by the integration tests; matplotlib comes with the `dev` extra.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

Series = list[dict[str, Any]]  # InfluxDB JSON "series"
PanelData = list[tuple[dict[str, Any], Series]]  # (target, series) per target


def _label(target: dict[str, Any], s: dict[str, Any], col: str) -> str:
    alias = target.get("alias")
    tags = s.get("tags") or {}
    if alias:
        out = alias.replace("$col", col)
        for k, v in tags.items():
            out = out.replace(f"$tag_{k}", v)
        return out
    return " ".join(tags.values()) or col


def _val(v: Any) -> float | None:
    if v is None or isinstance(v, str):
        return None
    return float(v)


def render(dash: dict[str, Any], data: dict[int, PanelData], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.gridspec import GridSpec

    panels = dash["panels"]
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    fig = plt.figure(figsize=(18, rows * 0.5))
    gs = GridSpec(rows, 24, figure=fig, hspace=5.0, wspace=1.5)
    for p in panels:
        g = p["gridPos"]
        ax = fig.add_subplot(gs[g["y"] : g["y"] + g["h"], g["x"] : g["x"] + g["w"]])
        unit = p["fieldConfig"]["defaults"].get("unit", "")
        ax.set_title(f"{p['title']}  [{unit}]", fontsize=9, loc="left")
        _draw(ax, p, data.get(p["id"], []))
    fig.suptitle(f"{dash['title']} — data from the simulated day (matplotlib, not Grafana)", fontsize=11)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=70, bbox_inches="tight")
    plt.close(fig)
    return out


def _draw(ax: Any, panel: dict[str, Any], data: PanelData) -> None:
    kind = panel["type"]
    if kind in ("timeseries", "state-timeline"):
        n = 0
        for target, series in data:
            for s in series:
                for ci, col in enumerate(s["columns"][1:], start=1):
                    pts = [(datetime.fromtimestamp(r[0] / 1000, UTC), _val(r[ci])) for r in s["values"]]
                    if kind == "state-timeline":
                        pts = [(t, None if v is None else float(v) + 1.2 * n) for t, v in pts]
                    xs = [t for t, v in pts if v is not None]
                    ys = [v for t, v in pts if v is not None]
                    if n < 14:
                        ax.plot(xs, ys, lw=0.8, label=_label(target, s, col))
                    else:
                        ax.plot(xs, ys, lw=0.5, color="0.6")
                    n += 1
        for st in panel["fieldConfig"]["defaults"]["thresholds"]["steps"][1:]:
            if kind == "timeseries":
                ax.axhline(st["value"], color=st["color"], lw=0.7, ls="--")
        ax.tick_params(labelsize=7)
        ax.xaxis.set_major_formatter(__import__("matplotlib.dates", fromlist=["x"]).DateFormatter("%H:%M"))
        if n:
            ax.legend(fontsize=6, ncol=2 if n > 6 else 1, loc="upper left")
    elif kind == "bargauge":
        labels, vals = [], []
        for target, series in data:
            for s in series:
                labels.append(_label(target, s, s["columns"][1]))
                vals.append(_val(s["values"][-1][1]) or 0.0)
        ax.barh(labels, vals, color="tab:green")
        ax.tick_params(labelsize=7)
    elif kind == "stat":
        texts = []
        for target, series in data:
            for s in series:
                v = _val(s["values"][-1][1])
                texts.append(f"{_label(target, s, s['columns'][1])}: {v:g}" if v is not None else "")
        ax.text(
            0.5,
            0.5,
            "\n".join(texts) or panel.get("fieldConfig", {}).get("defaults", {}).get("noValue", ""),
            ha="center",
            va="center",
            fontsize=11,
            transform=ax.transAxes,
        )
        ax.set_axis_off()
    else:  # table
        lines = []
        for _target, series in data:
            for s in series:
                tags = " ".join(f"{k}={v}" for k, v in (s.get("tags") or {}).items())
                for r in s["values"][:3]:
                    when = datetime.fromtimestamp(r[0] / 1000, UTC).strftime("%H:%M")
                    cells = ", ".join(f"{c}={x}" for c, x in zip(s["columns"][1:], r[1:], strict=True))
                    lines.append(f"{tags}  {when}  {cells}" if r[0] else f"{tags}  {cells}")
        ax.text(
            0.01,
            0.98,
            "\n".join(lines[:10]),
            ha="left",
            va="top",
            fontsize=6.5,
            family="monospace",
            transform=ax.transAxes,
        )
        ax.set_axis_off()
