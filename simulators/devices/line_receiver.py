"""Line-protocol bay receiver (geomag-rx200 and any serial_line parking profile).

Prints one line per bay change and a periodic heartbeat line per bay, formatted by
`lineproto.format_line` from the profile, so the edge parses with the same profile. Garbage
injection adds lines a real noisy RS-232/RS-485 link produces: random bytes, a bad checksum, a bay
number the receiver does not have.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from typing import Any

from pydantic import Field

from device_profiles.lineproto import format_line, transport_of
from device_profiles.model import LineField, Profile
from simulators.devices.faults import Faults
from simulators.physics.parking import ParkingModel, ParkingParams


class LineReceiverParams(ParkingParams):
    heartbeat_s: float = Field(default=600.0, gt=0, description="each bay reports this often (real seconds)")


GARBAGE_KINDS = ("random_bytes", "bad_checksum", "unknown_bay")


class LineReceiverDevice:
    family = "parking"
    Params = LineReceiverParams

    def __init__(
        self, device_id: str, profile: Profile, params: dict[str, Any] | None = None, seed: int = 0
    ) -> None:
        self.id = device_id
        self.profile = profile
        self.tr = transport_of(profile)
        prm = LineReceiverParams(**(params or {}))
        self.heartbeat_s = prm.heartbeat_s
        self.model = ParkingModel(
            n_bays=self.tr.instance_count,
            params=ParkingParams(**prm.model_dump(exclude={"heartbeat_s"})),
            seed=seed,
        )
        self.faults = Faults()
        self.faults.rng.seed(seed + 104729)
        self.rng = random.Random(seed + 31)
        self.lock = threading.RLock()
        self.sent: Counter[str] = Counter()  # "line", "heartbeat", and each garbage kind
        n = self.tr.instance_count
        # Heartbeats spread evenly over the period so the line is not flooded at once.
        self._next_hb = {b: self.heartbeat_s * (i + 1) / n for i, b in enumerate(sorted(self.model.bays))}
        self._t = 0.0
        self._pending: list[bytes] = []

    # ---- formatting ----
    def _raw(self, f: LineField, value: object) -> str:
        if f.type == "bool":
            return f.true_values[0] if value else "0"
        if f.type in ("str", "enum"):
            if f.type == "enum":
                for k, label in (f.enum or {}).items():
                    if label == value:
                        return k
            return str(value)
        raw = (float(value) - f.offset) / f.scale  # type: ignore[arg-type]
        if f.type == "int" or f.scale != 1.0:
            return str(round(raw))
        return f"{raw:.2f}"

    def line_for(self, bay: int) -> bytes:
        b = self.model.bays[bay]
        vals = {"occupied": b.occupied, "battery": b.battery, "rssi": b.rssi, "sensor_fault": b.sensor_fault}
        groups = {f.group: self._raw(f, vals.get(f.key, 0)) for f in self.tr.fields}
        return format_line(self.profile, bay, groups)

    def garbage_line(self, kind: str | None = None) -> bytes:
        kind = kind or self.rng.choice(GARBAGE_KINDS)
        self.sent[kind] += 1
        term = self.tr.terminator.encode()
        if kind == "random_bytes":
            n = self.rng.randint(4, 40)
            return (
                bytes(self.rng.choice([c for c in range(256) if c not in (10, 13)]) for _ in range(n)) + term
            )
        bay = self.rng.choice(sorted(self.model.bays))
        if kind == "bad_checksum":
            good = self.line_for(bay).rstrip(term)
            cs = good[-2:]
            bad = b"%02X" % (int(cs, 16) ^ 0x5A)
            return good[:-2] + bad + term
        # unknown_bay: a well-formed line for a bay number past the receiver's last one
        bogus = self.tr.instance_count + 1 + self.rng.randint(0, 50)
        b = self.model.bays[bay]
        groups = {
            f.group: self._raw(
                f, {"occupied": b.occupied, "battery": b.battery, "rssi": b.rssi}.get(f.key, 0)
            )
            for f in self.tr.fields
        }
        return format_line(self.profile, bogus, groups)  # format_line does not range-check

    # ---- time ----
    def step(self, dt: float) -> None:
        with self.lock:
            self.model.step(dt)
            self._t += dt
            out: list[tuple[str, int]] = [("line", b) for b in self.model.drain_changes()]
            for bay, due in self._next_hb.items():
                if self._t >= due:
                    out.append(("heartbeat", bay))
                    self._next_hb[bay] = due + self.heartbeat_s
            for kind, bay in out:
                self.sent[kind] += 1
                self._pending.append(self.line_for(bay))
                if self.faults.garbage():
                    self._pending.append(self.garbage_line())

    def take_lines(self) -> list[bytes]:
        """Lines produced since the last call; the transport writes them to the serial port."""
        with self.lock:
            out, self._pending = self._pending, []
        return out

    def emit(self, bay: int) -> None:
        """Report one bay now (as a heartbeat would)."""
        with self.lock:
            self.sent["heartbeat"] += 1
            self._pending.append(self.line_for(bay))
