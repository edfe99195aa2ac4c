"""The edge config matching a running simulated site: `shelterwatch sim run … --edge-config FILE`.

The simulators know exactly which profile answers where, so nothing is scanned: the endpoints
become `edge_agent.scan_config.FoundDevice`s and go through the same config builder as a scan
(so a simulated and a scanned site get the same kind of file, and both pass `edge-agent check`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from device_profiles.loader import catalog
from device_profiles.model import TransportKind
from edge_agent.scan_config import FoundDevice, build_config, render


def found_devices(endpoints: dict[str, dict[str, Any]], ids: dict[str, str] | None = None) -> list[FoundDevice]:
    """Endpoints (SimSite.endpoints()) as devices to configure; `ids` renames sim ids (demo)."""
    out = []
    for sim_id, ep in endpoints.items():
        if ids is not None and sim_id not in ids:
            continue
        kind = TransportKind(ep["transport"])
        labels = {k: str(v) for k, v in (ep.get("labels") or {}).items()}
        did = ids[sim_id] if ids is not None else sim_id
        if kind is TransportKind.MODBUS_TCP:
            out.append(FoundDevice(ep["profile"], kind, host=ep["host"], tcp_port=int(ep["tcp_port"]),
                                   unit=int(ep["unit"]), labels=labels, id=did, bus=ep.get("bus")))
        else:
            out.append(FoundDevice(ep["profile"], kind, serial_port=ep["serial_port"], baud=int(ep["baud"]),
                                   parity=ep["parity"], stop_bits=int(ep["stop_bits"]), unit=int(ep.get("unit", 0)),
                                   labels=labels, id=did, bus=ep.get("bus")))
    return out


def edge_config(
    site: str,
    endpoints: dict[str, dict[str, Any]],
    gateway: str = "gw1",
    uplink_url: str = "mqtt://127.0.0.1:1883",
    state_dir: str | None = None,
    ids: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """The config (as data) for an agent reading this simulated site, and notes."""
    base: dict[str, Any] = {"site": site, "gateway": gateway, "uplink": {"url": uplink_url}}
    if state_dir:
        base["state_dir"] = state_dir
    base.update(extra or {})
    return build_config(found_devices(endpoints, ids), catalog(), base)


def write_edge_config(path: Path, site: str, endpoints: dict[str, dict[str, Any]], gateway: str = "gw1",
                      uplink_url: str = "mqtt://127.0.0.1:1883") -> Path:
    """Write it next to a state folder of its own (`<file stem>-state`), so `edge-agent run FILE`
    works as a normal user."""
    state = str(path.parent.resolve() / f"{path.stem}-state")
    doc, notes = edge_config(site, endpoints, gateway, uplink_url, state)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(render(doc, f"shelterwatch sim run (site {site})", notes), encoding="utf-8")
    tmp.replace(path)
    return path
