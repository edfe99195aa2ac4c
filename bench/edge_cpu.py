"""CPU and peak RSS of our edge agent vs ThingsBoard IoT Gateway, side by side in one run (issue #3).

Both poll the SAME N simulated Modbus TCP devices (one simulator process, bench/sim_tcp_fleet.py,
started once) once a second, one after the other (never together: the machine has 2 cores), each
for the same window after the same warm-up, each publishing to the same local mosquitto (free
loopback port). For each we measure CPU % of one core (psutil user+system of the process and all
its children over the window) and peak RSS (max VmHWM of the process tree; sum of the tree's RSS
sampled every second). A subscriber in this process counts the values each one published, so the
work is shown to be comparable.

ThingsBoard IoT Gateway 3.8.5 is installed by this script, once, in its own venv cached at
/tmp/shelterwatch-bench/tb-venv (never committed; `--tb-venv DIR` to move it), together with the
pymodbus 3.9.2 / pyserial / pyserial-asyncio its Modbus connector would otherwise pip-install at
start-up. Its Modbus connector config is GENERATED from our profile's resolved points: one slave per
simulated device, one timeseries entry per point at the same table/address/register count as our
agent reads (TB reads each entry with its own request; our planner merges neighbouring points).
TB's MQTT uplink connects to the mosquitto as if it were ThingsBoard (access token as username;
telemetry on `v1/gateway/telemetry`); a small responder answers its `getSessionLimits` RPC as a
ThingsBoard with rate limits off would (without it TB polls but never publishes), and its update
check (a POST to the vendor) is turned off by the launcher so all traffic stays on loopback.
Its logs are left in the temp dir while running and their tail is printed if it delivers nothing.

Our agent publishes by exception (deadband) plus a snapshot every `snapshot_s`; TB (report strategy
ON_RECEIVED, its default) publishes every value it reads. So "values read/s" is the comparable work;
"values published/s" is shown too. The simulated readings move every second (bench/sim_tcp_fleet.py):
with registers that never change, our agent published nothing after its first snapshot, and a run
printed "0 values published" and a CPU ratio anyway. No ratio is printed, and the exit status is 1,
when either side read or published nothing in the window: a ratio against no work means nothing.

    .venv/bin/python bench/edge_cpu.py [--devices 200] [--seconds 60] [--warmup 20]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from device_profiles.loader import get_profile  # noqa: E402
from device_profiles.model import DataType, Table  # noqa: E402
from device_profiles.points import ResolvedPoint, resolve_points  # noqa: E402
from edge_agent.planner import plan  # noqa: E402
from tests.fixtures.servers import make_mosquitto  # noqa: E402

TB_VERSION = "3.8.5"
TB_PYMODBUS = "3.9.2"  # the exact version thingsboard_gateway/connectors/modbus pins and would pip-install
PROFILE = "hengtong-ebc12"
QUOTED = "quoted in issue #3 (not this run): TB 3.8.5, 200 devices: 48 % CPU, 73 MiB RSS"


# ---------------------------------------------------------------- ThingsBoard gateway venv + config


def tb_venv(path: Path) -> Path:
    """The cached venv's python, installing thingsboard-gateway into it on first use."""
    py = path / "bin" / "python"
    probe = [str(py), "-c", "import thingsboard_gateway.version, pymodbus, serial_asyncio"]
    if py.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return py
    path.parent.mkdir(parents=True, exist_ok=True)
    print(f"installing thingsboard-gateway=={TB_VERSION} into {path} (once) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    pkgs = [f"thingsboard-gateway=={TB_VERSION}", f"pymodbus=={TB_PYMODBUS}", "pyserial", "pyserial-asyncio"]
    r = subprocess.run([str(py), "-m", "pip", "install", "-q", *pkgs], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"pip install {' '.join(pkgs)} failed:\n{r.stdout}\n{r.stderr}")
    return py


_TB_TYPE = {
    DataType.INT16: "16int",
    DataType.UINT16: "16uint",
    DataType.ENUM: "16uint",
    DataType.INT32: "32int",
    DataType.UINT32: "32uint",
    DataType.FLOAT32: "32float",
    DataType.STRING: "string",
}
_FC = {Table.COIL: 1, Table.DISCRETE_INPUT: 2, Table.HOLDING: 3, Table.INPUT: 4}


def tb_entry(p: ResolvedPoint) -> dict[str, Any]:
    """One TB timeseries entry reading exactly the registers (table, address, count) of point `p`."""
    e: dict[str, Any] = {"tag": p.id, "functionCode": _FC[p.table], "address": p.address, "objectsCount": p.count}
    t = p.spec.type
    if p.table.is_bit:
        e["type"] = "bits"
    elif t is DataType.BIT:
        e.update(type="bits", bit=p.spec.bit, bitTargetType="bool")
    elif t is DataType.BOOL:
        e["type"] = "16uint"  # a whole register, 0 / non-zero
    else:
        e["type"] = _TB_TYPE[t]
        if p.spec.scale != 1.0:
            e["multiplier"] = p.spec.scale  # TB has no offset; the registers read are the same
    return e


def tb_modbus_config(ports: list[int], points: tuple[ResolvedPoint, ...]) -> dict[str, Any]:
    ts = [tb_entry(p) for p in points]
    slaves = [
        {
            "host": "127.0.0.1",
            "port": port,
            "type": "tcp",
            "method": "socket",
            "unitId": 1,
            "deviceName": f"d{i}",
            "deviceType": PROFILE,
            "timeout": 0.5,
            "byteOrder": "BIG",
            "wordOrder": "LITTLE",
            "retries": 1,
            "retryOnEmpty": True,
            "retryOnInvalid": True,
            "pollPeriod": 1000,
            "connectAttemptTimeMs": 500,
            "connectAttemptCount": 5,
            "waitAfterFailedAttemptsMs": 5000,
            "attributes": [],
            "timeseries": ts,
            "attributeUpdates": [],
            "rpc": [],
        }
        for i, port in enumerate(ports)
    ]
    return {"master": {"slaves": slaves}}


def tb_gateway_config(mq_port: int) -> dict[str, Any]:
    return {
        "thingsboard": {
            "host": "127.0.0.1",
            "port": mq_port,
            "remoteShell": False,
            "remoteConfiguration": False,
            "latencyDebugMode": False,
            "statistics": {"enable": False, "statsSendPeriodInSeconds": 60, "customStatsSendPeriodInSeconds": 3600},
            "deviceFiltering": {"enable": False, "filterFile": "list.json"},
            "maxPayloadSizeBytes": 8196,
            "minPackSendDelayMS": 50,
            "minPackSizeToSend": 500,
            "checkConnectorsConfigurationInSeconds": 60,
            "handleDeviceRenaming": True,
            "security": {"type": "accessToken", "accessToken": "bench"},
            "qos": 1,
            "reportStrategy": {"type": "ON_RECEIVED"},
            "checkingDeviceActivity": {"checkDeviceInactivity": False},
        },
        "storage": {"type": "memory", "read_records_count": 100, "max_records_count": 100000},
        "grpc": {"enabled": False},
        "connectors": [{"type": "modbus", "name": "Modbus", "configuration": "modbus.json"}],
    }


def write_tb_config(d: Path, tb_py: Path, mq_port: int, ports: list[int], points: tuple[ResolvedPoint, ...]) -> None:
    """tb_gateway.json, modbus.json and logs.json (TB's own, at its INFO defaults) in `d`."""
    d.mkdir(parents=True)
    (d / "tb_gateway.json").write_text(json.dumps(tb_gateway_config(mq_port), indent=1))
    (d / "modbus.json").write_text(json.dumps(tb_modbus_config(ports, points), indent=1))
    pkg = subprocess.run(
        [str(tb_py), "-c", "import thingsboard_gateway, os; print(os.path.dirname(thingsboard_gateway.__file__))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (d / "logs.json").write_text((Path(pkg) / "config" / "logs.json").read_text())


# ---------------------------------------------------------------- measuring


class Counter:
    """Counts messages and values published under topic filters (paho subscriber thread)."""

    def __init__(self, port: int, topics: list[str], count_values: Any) -> None:
        import paho.mqtt.client as mqtt

        self.msgs = 0
        self.values = 0
        self.bad = 0
        self._lock = threading.Lock()
        self._count_values = count_values
        self._c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-counter-{os.getpid()}")
        self._c.on_message = self._on_message
        self._c.on_connect = lambda c, u, f, rc, p: c.subscribe([(t, 0) for t in topics])
        self._c.connect("127.0.0.1", port)
        self._c.loop_start()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        try:
            n = self._count_values(msg.payload)
        except Exception:  # count what we could not read; never die in the bench
            with self._lock:
                self.bad += 1
            return
        with self._lock:
            self.msgs += 1
            self.values += n

    def snapshot(self) -> tuple[int, int]:
        with self._lock:
            return self.msgs, self.values

    def stop(self) -> None:
        self._c.loop_stop()
        self._c.disconnect()


class SessionLimits:
    """Answers TB's `getSessionLimits` RPC as ThingsBoard would (no rate limits).

    TB gateway publishes nothing until it has its session limits (tb_client.is_connected() needs
    rate_limits_received); the reply normally comes from the ThingsBoard server, which cannot run
    here, so this stand-in gives the answer of a server with rate limits off.
    """

    def __init__(self, port: int) -> None:
        import paho.mqtt.client as mqtt

        self.answered = 0
        self._c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-tb-limits-{os.getpid()}")
        self._c.on_message = self._on_message
        self._c.on_connect = lambda c, u, f, rc, p: c.subscribe("v1/devices/me/rpc/request/+", qos=1)
        self._c.connect("127.0.0.1", port)
        self._c.loop_start()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        try:
            req = json.loads(msg.payload)
        except ValueError:
            return
        if req.get("method") == "getSessionLimits":
            rid = msg.topic.rsplit("/", 1)[1]
            body = {"maxPayloadSize": 65536, "maxInflightMessages": 100, "rateLimits": {}, "gatewayRateLimits": {}}
            client.publish(f"v1/devices/me/rpc/response/{rid}", json.dumps(body), qos=1)
            self.answered += 1

    def stop(self) -> None:
        self._c.loop_stop()
        self._c.disconnect()


# TB's updater POSTs to its vendor's update service at start and every hour; this bench sends
# traffic to loopback only, so the launcher turns that check into a no-op (it does no polling work).
TB_LAUNCHER = (
    "import thingsboard_gateway.tb_utility.tb_updater as u\n"
    "u.TBUpdater.check_for_new_version = lambda self: None\n"
    "from thingsboard_gateway.tb_gateway import main\n"
    "main()\n"
)


def _ours_values(payload: bytes) -> int:
    return len(json.loads(payload)["values"])


def _tb_values(payload: bytes) -> int:
    return sum(len(r.get("values", {})) for recs in json.loads(payload).values() for r in recs)


def _tree(p: psutil.Process) -> list[psutil.Process]:
    try:
        return [p, *p.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _cpu(procs: list[psutil.Process]) -> dict[int, float]:
    out = {}
    for q in procs:
        try:
            t = q.cpu_times()
            out[q.pid] = t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return out


def _hwm_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


@dataclass
class Result:
    name: str
    cpu: float
    peak_rss: float
    hwm_main: float
    msgs_s: float
    values_s: float
    read_s: float
    note: str
    sim_cpu: float = 0.0


SIM_PID: list[int] = []  # the simulator process, set by main()


def measure(
    proc: subprocess.Popen[bytes], counter: Counter, warmup: float, seconds: float
) -> tuple[float, float, float, float, float, float]:
    """CPU %, peak tree RSS MiB, main VmHWM MiB, messages/s, values/s, simulator CPU % over the
    window after warm-up (the simulator's share shows whether the 2 cores were saturated)."""
    p = psutil.Process(proc.pid)
    time.sleep(warmup)
    if proc.poll() is not None:
        raise RuntimeError(f"process exited with {proc.returncode} during warm-up")
    tree = _tree(p)
    sim = _tree(psutil.Process(SIM_PID[0])) if SIM_PID else []
    s0 = _cpu(sim)
    c0, t0, (m0, v0) = _cpu(tree), time.monotonic(), counter.snapshot()
    peak = 0.0
    while time.monotonic() - t0 < seconds:
        time.sleep(1.0)
        tree = _tree(p)
        rss = 0
        for q in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                rss += q.memory_info().rss
        peak = max(peak, rss / 2**20)
    c1, t1, (m1, v1) = _cpu(tree), time.monotonic(), counter.snapshot()
    s1 = _cpu(sim)
    dt = t1 - t0
    cpu = sum(v - c0.get(pid, 0.0) for pid, v in c1.items()) / dt * 100
    sim_cpu = sum(v - s0.get(pid, 0.0) for pid, v in s1.items()) / dt * 100
    hwm = max((_hwm_mib(q.pid) for q in tree), default=0.0)
    peak = max(peak, hwm)
    return cpu, peak, _hwm_mib(p.pid), (m1 - m0) / dt, (v1 - v0) / dt, sim_cpu


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    """Stop by PID (its own session: the whole group it started), SIGKILL after 20 s."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, 15)
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait(5)
    except ProcessLookupError:
        pass


# ---------------------------------------------------------------- the two runs


def run_ours(tmp: Path, mq_port: int, ports: list[int], warmup: float, seconds: float) -> Result:
    n = len(ports)
    cfg = {
        "site": "bench",
        "gateway": "gw1",
        "state_dir": str(tmp / "state"),
        "uplink": {"url": f"mqtt://127.0.0.1:{mq_port}"},
        "snapshot_s": 60,
        "health_s": 10,
        "buses": [
            {"name": f"t{i}", "transport": "modbus_tcp", "host": "127.0.0.1", "tcp_port": p, "timeout_s": 0.5}
            for i, p in enumerate(ports)
        ],
        "devices": [
            {
                "id": f"d{i}",
                "profile": PROFILE,
                "bus": f"t{i}",
                "address": 1,
                "poll": {"safety": 1, "routine": 1, "slow": 1},
            }
            for i in range(n)
        ],
    }
    (tmp / "agent.yaml").write_text(yaml.safe_dump(cfg))
    counter = Counter(mq_port, ["sw/v1/bench/gw1/+/telemetry", "sw/v1/bench/gw1/+/urgent"], _ours_values)
    agent = None
    try:
        with open(tmp / "agent.log", "wb") as log:
            agent = subprocess.Popen(
                [sys.executable, "-m", "edge_agent", "run", str(tmp / "agent.yaml"), "--log-level", "WARNING"],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=ROOT,
            )
            # warm-up, then sample status.json (ok transactions) around the window
            st0 = _status(tmp, warmup)
            cpu, peak, hwm, msgs_s, vals_s, sim_cpu = measure(agent, counter, 0.0, seconds)
            ok_s = 0.0
            time.sleep(10.5)  # status.json is written every health_s (10 s)
            st1 = json.loads((tmp / "state" / "status.json").read_text())
            ok = sum(d["ok"] for d in st1["devices"]) - sum(d["ok"] for d in st0["devices"])
            ok_s = ok / (st1["written"] - st0["written"])
            errs = sum(d["timeouts"] + d["exceptions"] + d["crc_errors"] for d in st1["devices"])
    finally:
        stop(agent)
        counter.stop()
    prof = get_profile(PROFILE)
    reads = plan(prof, frozenset(p.poll for p in resolve_points(prof)))
    per_read = sum(len(r.points) for r in reads) / len(reads)
    return Result(
        "shelterwatch edge_agent",
        cpu,
        peak,
        hwm,
        msgs_s,
        vals_s,
        ok_s * per_read,
        f"{ok_s:.0f} Modbus transactions/s ({len(reads)} per device cycle), errors {errs}",
        sim_cpu,
    )


def _status(tmp: Path, warmup: float) -> dict[str, Any]:
    time.sleep(warmup)
    return json.loads((tmp / "state" / "status.json").read_text())


def run_tb(tmp: Path, tb_py: Path, mq_port: int, ports: list[int], warmup: float, seconds: float) -> Result:
    points = resolve_points(get_profile(PROFILE))
    cfg_dir = tmp / "tb-config"
    write_tb_config(cfg_dir, tb_py, mq_port, ports, points)
    run_dir = tmp / "tb-run"
    run_dir.mkdir()
    counter = Counter(mq_port, ["v1/gateway/telemetry"], _tb_values)
    limits = SessionLimits(mq_port)
    gw = None
    try:
        with open(run_dir / "stdout.log", "wb") as log:
            gw = subprocess.Popen(
                [str(tb_py), "-c", TB_LAUNCHER],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=run_dir,
                env={**os.environ, "TB_GW_CONFIG_DIR": str(cfg_dir), "PYTHONUNBUFFERED": "1"},
            )
            cpu, peak, hwm, msgs_s, vals_s, sim_cpu = measure(gw, counter, warmup, seconds)
    finally:
        stop(gw)
        counter.stop()
        limits.stop()
        bad = counter.bad
    if vals_s == 0:
        for f in sorted(run_dir.rglob("*.log")):
            print(f"--- tail of {f}", file=sys.stderr)
            print("\n".join(f.read_text(errors="replace").splitlines()[-15:]), file=sys.stderr)
    return Result(
        f"ThingsBoard IoT Gateway {TB_VERSION}",
        cpu,
        peak,
        hwm,
        msgs_s,
        vals_s,
        vals_s,
        f"{len(points)} requests per device cycle (one per point), unreadable messages {bad}",
        sim_cpu,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--warmup", type=float, default=20.0)
    ap.add_argument("--tb-venv", type=Path, default=Path("/tmp/shelterwatch-bench/tb-venv"))
    a = ap.parse_args()
    tb_py = tb_venv(a.tb_venv)
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        (tmp / "mq").mkdir()
        (tmp / "ours").mkdir()
        (tmp / "tb").mkdir()
        mq = make_mosquitto(tmp / "mq").start()
        sim = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "sim_tcp_fleet.py"), str(a.devices), PROFILE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            assert sim.stdout is not None
            ports = json.loads(sim.stdout.readline())["ports"]
            SIM_PID.append(sim.pid)
            ours = run_ours(tmp / "ours", mq.port, ports, a.warmup, a.seconds)
            time.sleep(2)
            tb = run_tb(tmp / "tb", tb_py, mq.port, ports, a.warmup, a.seconds)
        finally:
            stop(sim)
            mq.stop()
    print(
        f"\n{a.devices} simulated Modbus TCP devices ({PROFILE}, one simulator process), poll 1 Hz, "
        f"{a.seconds:.0f} s window after {a.warmup:.0f} s warm-up, run one after the other; "
        f"host {os.cpu_count()} cores"
    )
    hdr = f"{'':28} {'CPU % 1 core':>12} {'peak RSS MiB':>12} {'values read/s':>13} {'values pub/s':>12} {'msgs/s':>8}"
    print(hdr)
    for r in (ours, tb):
        print(f"{r.name:28} {r.cpu:12.1f} {r.peak_rss:12.1f} {r.read_s:13.0f} {r.values_s:12.0f} {r.msgs_s:8.0f}")
        print(f"{'':28}   {r.note}; simulator CPU {r.sim_cpu:.0f} % meanwhile")
    asked = a.devices * len(resolve_points(get_profile(PROFILE)))
    for r in (ours, tb):
        if r.read_s < 0.9 * asked:
            print(
                f"NOTE: {r.name} delivered {r.read_s:.0f} of the {asked} values/s its config asks for "
                f"({100 * r.read_s / asked:.0f} %): it did not keep up with 1 Hz, so its CPU figure is for less work"
            )
    idle = [f"{r.name} read {r.read_s:.0f} and published {r.values_s:.0f} values/s"
            for r in (ours, tb) if r.read_s <= 0 or r.values_s <= 0 or r.cpu <= 0]
    if idle:
        print(f"NO RATIO: a side did no work in the window ({'; '.join(idle)}); see the logs above")
        sys.exit(1)
    ratio = ours.cpu / tb.cpu
    print(
        f"{'ratio ours / TB':28} {ratio:12.2f} {ours.peak_rss / tb.peak_rss if tb.peak_rss else 0:12.2f}"
        f"   target CPU <= 0.33: {'MET' if ratio <= 1 / 3 else 'NOT MET'}"
    )
    cpu_per_kv = [r.cpu / (r.read_s / 1000) if r.read_s else float("nan") for r in (ours, tb)]
    print(f"CPU % per 1000 values read/s: ours {cpu_per_kv[0]:.2f}, TB {cpu_per_kv[1]:.2f}")
    print(QUOTED)


if __name__ == "__main__":
    main()
