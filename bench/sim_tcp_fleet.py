"""N simulated Modbus TCP devices in their own process (so the benchmark measures the agent alone).

Prints {"ports": [...]} as one JSON line, then serves until stdin closes or SIGTERM.

    .venv/bin/python bench/sim_tcp_fleet.py 200 hengtong-ebc12
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from device_profiles.loader import get_profile
from tests.fixtures.modbus_slave import SimDevice, TcpSlave


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    prof = get_profile(sys.argv[2] if len(sys.argv) > 2 else "hengtong-ebc12")
    slaves = [TcpSlave([SimDevice(prof, 1)]) for _ in range(n)]
    print(json.dumps({"ports": [s.port for s in slaves]}), flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: done.set())
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    done.wait()
    os._exit(0)  # 200 server threads: no orderly shutdown needed, the sockets close with the process


if __name__ == "__main__":
    main()
