"""N simulated Modbus TCP devices in their own process (so the benchmark measures the agent alone).

Prints {"ports": [...]} as one JSON line, then serves until stdin closes or SIGTERM.

The readings move once a second like charging ports do (temperature, voltage, current and power
wander by up to their deadband a second, energy counts up): devices whose registers never change
give a report-by-exception agent nothing to publish after its first snapshot, and a benchmark of
that measured 0 values published (`--static` keeps them still, to see it).

    .venv/bin/python bench/sim_tcp_fleet.py 200 hengtong-ebc12
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from device_profiles.loader import get_profile
from tests.fixtures.modbus_slave import SimDevice, TcpSlave

# point key → (step, low, high): each second a value moves by up to ±step within [low, high]
WANDER = {
    "connector_temp": (0.5, 25.0, 45.0),
    "voltage": (0.5, 46.0, 56.0),
    "current": (0.05, 0.5, 4.0),
    "power": (5.0, 20.0, 220.0),
}


def wander(devices: list[SimDevice], rnd: random.Random) -> None:
    """One second of change on every port that is charging."""
    for dev in devices:
        with dev.lock:
            for pid, v in dev.values.items():
                key = pid.rsplit(".", 1)[-1]
                if key in WANDER and isinstance(v, int | float) and not isinstance(v, bool):
                    step, lo, hi = WANDER[key]
                    nv = min(hi, max(lo, v + rnd.uniform(-step, step)))
                    dev.values[pid] = round(nv) if isinstance(v, int) else round(nv, 2)
                elif key == "energy" and isinstance(v, int | float) and not isinstance(v, bool):
                    dev.values[pid] = round(v + rnd.uniform(0.0, 0.03), 3)


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    n = int(args[0]) if args else 200
    prof = get_profile(args[1] if len(args) > 1 else "hengtong-ebc12")
    devices = [SimDevice(prof, 1) for _ in range(n)]
    slaves = [TcpSlave([d]) for d in devices]
    print(json.dumps({"ports": [s.port for s in slaves]}), flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: done.set())
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    rnd = random.Random(1)
    while not done.wait(1.0):
        if "--static" not in sys.argv:
            wander(devices, rnd)
    os._exit(0)  # 200 server threads: no orderly shutdown needed, the sockets close with the process


if __name__ == "__main__":
    main()
