"""From what was found to a ready edge config. Pure: dicts in, dicts and text out.

`edge-agent scan` and `shelterwatch sim run --edge-config` both end here, so a scanned site and a
simulated one get the same kind of file. Written into an existing config (the one enrolment made,
say), the scan keeps what the installer or enrolment already decided: site, gateway, uplink, and
the ids, labels and poll periods of devices it finds again (matched by profile, the same unit id
first), so the device ids the cloud registered stay. Buses left without devices are removed, and
everything removed or left to fill in is said in the notes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import yaml

from device_profiles.model import ModbusTransport, Profile, Table, TransportKind
from edge_agent.budget import read_time

FILL_IN = {"name": "", "location": ""}


@dataclass(frozen=True)
class FoundDevice:
    """A device to configure: where it is and which profile it speaks."""

    profile: str
    transport: TransportKind
    serial_port: str | None = None  # RTU / serial line
    baud: int = 9600
    parity: str = "N"
    stop_bits: int = 1
    host: str | None = None  # Modbus TCP
    tcp_port: int = 502
    unit: int = 0  # Modbus unit id; 0 for a serial line receiver
    labels: dict[str, str] = field(default_factory=dict)
    timeout_s: float | None = None  # a slow device: the bus's request timeout must be at least this
    id: str | None = None  # wanted id (the simulators' own), else one is made from the profile
    bus: str | None = None  # wanted name for a new bus, else one is made from where it is


def _slug(text: str) -> str:
    s = re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-_")
    return (s or "bus")[:60]


def bus_key(b: dict[str, Any]) -> tuple[str, ...]:
    """What makes two bus entries the same line: the serial device, or host and TCP port."""
    if b.get("transport") == TransportKind.MODBUS_TCP.value:
        return ("tcp", str(b.get("host")), str(b.get("tcp_port", 502)))
    return ("serial", str(b.get("serial_port") or b.get("port")))


def _bus_for(d: FoundDevice, profiles: dict[str, Profile]) -> dict[str, Any]:
    if d.transport is TransportKind.MODBUS_TCP:
        assert d.host is not None
        return {"name": _slug(f"tcp-{d.host}-{d.tcp_port}"), "transport": d.transport.value, "host": d.host,
                "tcp_port": d.tcp_port}
    assert d.serial_port is not None
    bus: dict[str, Any] = {"name": _slug(d.serial_port.removeprefix("/dev/")), "transport": d.transport.value,
                           "serial_port": d.serial_port, "baud": d.baud, "parity": d.parity,
                           "stop_bits": d.stop_bits}
    if d.transport is TransportKind.MODBUS_RTU:
        bus["timeout_s"] = rtu_timeout_for(d.baud, [profiles[d.profile]])
    return bus


def rtu_timeout_for(baud: int, profiles: list[Profile]) -> float:
    """Room for the largest read the agent will make at this baud, plus 100 ms for the device to
    start answering (the default 0.3 s is too short for 100 registers at 9600 baud)."""
    largest = max((p.transport.max_registers_per_read for p in profiles if isinstance(p.transport, ModbusTransport)),
                  default=60)
    return max(0.3, round(read_time(baud, Table.HOLDING, largest) + 0.1, 2))


def _new_id(profile: str, unit: int, taken: set[str]) -> str:
    stem = profile.rsplit("-", 1)[-1] if "-" in profile else profile
    base = f"{stem}-u{unit}" if unit else stem
    out, n = base, 2
    while out in taken:
        out, n = f"{base}-{n}", n + 1
    taken.add(out)
    return out


def build_config(
    found: list[FoundDevice],
    profiles: dict[str, Profile],
    base: dict[str, Any] | None = None,
    site: str = "my-site",
    gateway: str = "gw1",
    uplink_url: str = "mqtt://127.0.0.1:1883",
) -> tuple[dict[str, Any], list[str]]:
    """The config (as data) and notes for the installer. `base` is an existing config's data."""
    notes: list[str] = []
    doc: dict[str, Any] = dict(base) if base else {"site": site, "gateway": gateway,
                                                   "uplink": {"url": uplink_url}}
    if not base:
        notes.append(f"uplink: {uplink_url} is a placeholder unless you gave --uplink; enrolment's config "
                     "has the gateway's broker, user and password")
    buses: list[dict[str, Any]] = [_new_keys(b) for b in doc.get("buses") or [] if isinstance(b, dict)]
    devices: list[dict[str, Any]] = [dict(d) for d in doc.get("devices") or [] if isinstance(d, dict)]
    by_key = {bus_key(b): b for b in buses}
    bus_kind = {b.get("name"): b.get("transport") for b in buses}
    taken = {str(d.get("id")) for d in devices}
    claimed: set[int] = set()  # indexes of existing device entries reused

    for f in found:
        want = _bus_for(f, profiles)
        key = bus_key(want)
        bus = by_key.get(key)
        if bus is None:
            names = {b["name"] for b in buses}
            want["name"] = _slug(f.bus) if f.bus else want["name"]
            name, n = want["name"], 2
            while name in names:
                name, n = f"{want['name']}-{n}", n + 1
            bus = {**want, "name": name}
            buses.append(bus)
            by_key[key] = bus
            bus_kind[name] = f.transport.value
        else:
            for k in ("baud", "parity", "stop_bits"):
                if k in want:
                    bus[k] = want[k]
        if f.timeout_s and f.timeout_s > float(bus.get("timeout_s", 0.3)):
            bus["timeout_s"] = f.timeout_s
            notes.append(f"unit {f.unit} on {bus['name']} answers slowly: the bus waits {f.timeout_s:g} s per request")
        i = _reuse(devices, claimed, f, bus_kind, bus["name"])
        entry: dict[str, Any]
        if i is not None:
            claimed.add(i)
            entry = devices[i]
            entry.update(bus=bus["name"])
        else:
            did = f.id if f.id and f.id not in taken else _new_id(f.profile, f.unit, taken)
            taken.add(did)
            entry = {"id": did, "profile": f.profile, "bus": bus["name"], "address": f.unit,
                     "labels": dict(f.labels) if f.labels else dict(FILL_IN)}
            devices.append(entry)
            claimed.add(len(devices) - 1)
        entry["address"] = f.unit
    scanned = {bus_key(_bus_for(f, profiles)) for f in found}
    keep: list[dict[str, Any]] = []
    for i, d in enumerate(devices):
        b = next((x for x in buses if x.get("name") == d.get("bus")), None)
        if i not in claimed and b is not None and bus_key(b) in scanned:
            notes.append(f"device {d.get('id')} ({d.get('profile')}, unit {d.get('address')}) was not found on "
                         f"bus {b.get('name')}: removed")
            continue
        keep.append(d)
    used = {d.get("bus") for d in keep}
    for b in buses:
        if b.get("name") not in used:
            notes.append(f"bus {b.get('name')} has no device left: removed")
    doc["buses"] = [b for b in buses if b.get("name") in used]
    doc["devices"] = keep
    blank = [d["id"] for d in keep if any(v == "" for v in (d.get("labels") or {}).values())]
    if blank:
        notes.append(f"fill in the labels (name, location) of: {', '.join(blank)}")
    return doc, notes


def _new_keys(bus: dict[str, Any]) -> dict[str, Any]:
    """A bus entry with the old `port:` of a serial device written as `serial_port:`."""
    if "port" in bus and "serial_port" not in bus and bus.get("transport") != TransportKind.MODBUS_TCP.value:
        return {("serial_port" if k == "port" else k): v for k, v in bus.items()}
    return dict(bus)


def _reuse(devices: list[dict[str, Any]], claimed: set[int], f: FoundDevice, bus_kind: dict[Any, Any],
           bus_name: str) -> int | None:
    """An existing entry for this device: same profile and transport, on this bus at this unit,
    else on this bus, else anywhere (enrolment's placeholder buses), else None."""
    cands = [i for i, d in enumerate(devices)
             if i not in claimed and d.get("profile") == f.profile and bus_kind.get(d.get("bus")) == f.transport.value]
    if f.id is not None:
        same_id = [i for i in cands if devices[i].get("id") == f.id]
        if same_id:
            return same_id[0]
    for test in (lambda d: d.get("bus") == bus_name and d.get("address") == f.unit,
                 lambda d: d.get("bus") == bus_name,
                 lambda d: True):
        hits = [i for i in cands if test(devices[i])]
        if hits:
            return hits[0]
    return None


def render(doc: dict[str, Any], what: str, notes: list[str]) -> str:
    """YAML text with a header saying where it came from and what is left to do."""
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    head = [f"# Written by {what} on {now}.", "# Check it with `edge-agent check <this file>`."]
    head += [f"# TODO: {n}" for n in notes]
    order = ["site", "gateway", "state_dir", "profile_dirs", "uplink", "outbox", "snapshot_s", "health_s",
             "buses", "devices"]
    ordered = {k: doc[k] for k in order if k in doc}
    ordered.update({k: v for k, v in doc.items() if k not in ordered})
    return "\n".join(head) + "\n" + yaml.safe_dump(ordered, sort_keys=False, allow_unicode=True, width=110)
