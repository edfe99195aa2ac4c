"""CPU and peak RSS of the edge agent polling 200 simulated Modbus TCP devices once a second.

The devices run in a separate process (bench/sim_tcp_fleet.py), the agent as `edge-agent run`
publishing to a real mosquitto; only the agent process is measured (psutil CPU times over the
window, peak RSS from /proc VmHWM).

Reference: ThingsBoard IoT Gateway 3.8.5 polling 200 simulated Modbus TCP devices once a second
used 48 % of one core and 73 MiB RSS (quoted in the brief, measured on this class of machine;
thingsboard-gateway was NOT installed and measured side by side in this run). Target: at most a
third of its CPU (16 %).

    .venv/bin/python bench/edge_cpu.py [devices] [seconds]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fixtures.servers import make_mosquitto  # noqa: E402

TB_CPU, TB_RSS_MIB = 48.0, 73.0


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 60.0
    profile = "hengtong-ebc12"
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        (tmp / "mq").mkdir()
        mq = make_mosquitto(tmp / "mq").start()
        sim = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "sim_tcp_fleet.py"), str(n), profile],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        agent = None
        try:
            assert sim.stdout is not None
            ports = json.loads(sim.stdout.readline())["ports"]
            cfg = {
                "site": "bench",
                "gateway": "gw1",
                "state_dir": str(tmp / "state"),
                "uplink": {"url": f"mqtt://127.0.0.1:{mq.port}"},
                "snapshot_s": 60,
                "health_s": 10,
                "buses": [
                    {"name": f"t{i}", "transport": "modbus_tcp", "host": "127.0.0.1", "tcp_port": p, "timeout_s": 0.5}
                    for i, p in enumerate(ports)
                ],
                "devices": [
                    {
                        "id": f"d{i}",
                        "profile": profile,
                        "bus": f"t{i}",
                        "address": 1,
                        "poll": {"safety": 1, "routine": 1, "slow": 1},
                    }
                    for i in range(n)
                ],
            }
            (tmp / "agent.yaml").write_text(yaml.safe_dump(cfg))
            log = open(tmp / "agent.log", "wb")  # noqa: SIM115
            agent = subprocess.Popen(
                [sys.executable, "-m", "edge_agent", "run", str(tmp / "agent.yaml"), "--log-level", "WARNING"],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=ROOT,
            )
            p = psutil.Process(agent.pid)
            time.sleep(15)  # start-up and first snapshots
            st0 = json.loads((tmp / "state" / "status.json").read_text())
            c0, t0 = p.cpu_times(), time.monotonic()
            time.sleep(seconds)
            c1, t1 = p.cpu_times(), time.monotonic()
            time.sleep(10.5)
            st1 = json.loads((tmp / "state" / "status.json").read_text())
            hwm = 0
            for line in Path(f"/proc/{agent.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    hwm = int(line.split()[1]) // 1024
            cpu = ((c1.user - c0.user) + (c1.system - c0.system)) / (t1 - t0) * 100
            ok = sum(d["ok"] for d in st1["devices"]) - sum(d["ok"] for d in st0["devices"])
            dt = st1["written"] - st0["written"]
            errs = sum(d["timeouts"] + d["exceptions"] + d["crc_errors"] for d in st1["devices"])
            reads = ok / dt
        finally:
            if agent is not None:
                agent.terminate()
                agent.wait(20)
            sim.terminate()
            sim.wait(10)
            mq.stop()
    print(f"edge_agent polling {n} Modbus TCP devices ({profile}) at 1 Hz, {seconds:.0f} s window:")
    print(f"  transactions ok/s {reads:.0f} ({reads / n:.2f} per device per second), errors {errs}")
    print(f"  CPU {cpu:.1f} % of one core   peak RSS {hwm} MiB")
    print(
        f"reference (quoted, not measured in this run): ThingsBoard IoT Gateway 3.8.5: {TB_CPU:.0f} % CPU, "
        f"{TB_RSS_MIB:.0f} MiB RSS"
    )
    print(f"  ratio CPU {cpu / TB_CPU:.2f} of ThingsBoard (target <= 0.33), RSS {hwm / TB_RSS_MIB:.2f}")
    print(f"  host: {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
