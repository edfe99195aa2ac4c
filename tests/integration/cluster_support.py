"""The whole cluster tier on real servers, for the chaos tests and bench/cluster.py.

`ClusterStack` runs: a 3-node NATS cluster (tests/fixtures/nats_cluster.py), `cloud serve` replicas as
subprocesses (each with its own data dir and web port, sharing one PostgreSQL database for the
registry, alarm state, web tables and partition leases, and one VictoriaMetrics), a webhook receiver
standing in for the volunteers' phones, a real edge agent (`edge_agent run`, its own outbox) polling
a simulated sprinkler monitor over a pseudo-terminal, and the fleet generator's load through the
nodes' MQTT listeners. Everything on loopback, stopped by PID.

VictoriaMetrics runs with `-dedup.minScrapeInterval=1ms`: one sample per series and millisecond, so a
reading delivered again after a crash overwrites itself, as it does in InfluxDB (docs/operations.md).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import create_engine, text

from cloud.broker_account import BrokerAccount
from cloud.cluster.partition import partition_of
from simulators.fleet import FleetConfig, FleetModel, FleetResult, publish_fleet
from tests.fixtures.servers import free_port
from tests.polling import wait_until

# The fleet's simulated clock starts here: readings from a few hours ago are inside `cloud serve`'s
# time policy (docs/wire.md), so they are stored as sent; at ~8 simulated s per real s a chaos run
# stays in the past. (tests.integration.ingest_support.SIM_START is a fixed day: only for ingesters
# that switch the policy's past side off.)
RECENT_START = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=6)

SECRET = "cluster-test-secret-cluster-test-secret-0123456789"
ALARM_GW, ALARM_DEV = "gw-alarm", "alarm-spk"
ALARM_CHG = "alarm-chg"  # bench/cluster.py: a charger on the same edge, for an alarm read from telemetry


class Replica:
    """`shelterwatch cloud serve` as a child process we start, kill -9 and start again."""

    def __init__(self, name: str, root: Path, broker: str, site_file: Path, alarm_file: Path, tsdb: str | None,
                 db_url: str, partitions: int, account: BrokerAccount | None = None) -> None:
        """`tsdb` None: each replica's own SQLite series file (tests that do not count readings).
        `account`: the cloud's broker account, handed over as production does (SHELTERWATCH_BROKER_USER
        and SHELTERWATCH_BROKER_PASSWORD_FILE, docs/operations.md); None: a broker without accounts."""
        self.name = name
        self.dir = root / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.env = {"SHELTERWATCH_SECRET": SECRET, "PYTHONUNBUFFERED": "1"}
        if account:
            pw = self.dir / "broker-password"
            pw.write_text(f"{account.password}\n")
            pw.chmod(0o600)
            self.env |= {"SHELTERWATCH_BROKER_USER": str(account.username),
                         "SHELTERWATCH_BROKER_PASSWORD_FILE": str(pw)}
        self.port = free_port()
        self.metrics_port = free_port()
        self.argv = [
            sys.executable, "-m", "shelterwatch.cli", "cloud", "serve", "--site", str(site_file),
            "--alarms", str(alarm_file), "--broker", broker, "--data-dir", str(self.dir),
            *(["--tsdb", tsdb] if tsdb else []),
            "--state-db", db_url, "--alarm-db", db_url, "--web-db", db_url, "--replica-id", name,
            "--partitions", str(partitions), "--port", str(self.port), "--metrics-port", str(self.metrics_port),
        ]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.dir / "serve.log"

    def start(self, wait: float = 120.0) -> Replica:
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen(self.argv, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
                                         env={**os.environ, **self.env})
        if wait:  # 0: return at once (the caller waits for what it needs, not for the web)
            wait_until(self._up, wait, f"replica {self.name} to serve\n{self.tail()}", every=0.2)
        return self

    def _up(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"replica {self.name} exited\n{self.tail()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/login", timeout=1):
                return True
        except OSError:
            return False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def metric(self, name: str) -> float:
        """One `shelterwatch_ingest_<name>` value from the replica's /metrics (0 when unreachable)."""
        return scrape(self.metrics_port, name)

    def kill(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


def scrape(port: int, name: str) -> float:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            body = r.read().decode()
    except OSError:
        return 0.0
    for line in body.splitlines():
        if line.startswith(f"shelterwatch_ingest_{name} "):
            return float(line.split()[1])
    return 0.0


def alarm_file_text(site: str, receiver_url: str) -> str:
    """One volunteer whose phone is the test's webhook; waterflow raised at once (no retard), no
    reminders within a test's time."""
    return yaml.safe_dump({
        "site": site, "name": "Cluster test estate", "name_zh": "集群测试", "public_url": "http://127.0.0.1",
        "people": [{"id": "vol", "name": "Volunteer", "role": "volunteer", "tier": 1,
                    "channels": [{"url": receiver_url}]}],
        "escalation": {"tiers": [{"tier": 1, "after": 0}], "repeat": 3600, "min_severity": "critical",
                       "retries": 2, "retry_delay": 0.2},
        "alarm_overrides": [{"rule": "waterflow", "for": 0}],
        "gateway_offline": {"silence": 3600, "severity": "minor"},
    }, sort_keys=False)


@dataclass
class Push:
    at: float
    title: str
    path: str = ""
    body: str = ""


@dataclass
class ClusterDb:
    """What the shared PostgreSQL says: lease owners, alarms and their pushes."""

    url: str
    engine: Any = None

    def __post_init__(self) -> None:
        self.engine = create_engine(self.url.replace("postgresql+psycopg", "postgresql+psycopg"))

    def owner(self, partition: int) -> str | None:
        with self.engine.connect() as c:
            r = c.execute(text("SELECT owner, expires, EXTRACT(EPOCH FROM clock_timestamp()) AS now "
                               "FROM partition_leases WHERE partition = :p"), {"p": partition}).first()
        return None if r is None or r.owner is None or r.expires <= float(r.now) else str(r.owner)

    def owners(self) -> dict[int, str | None]:
        with self.engine.connect() as c:
            rows = c.execute(text("SELECT partition, owner, expires, EXTRACT(EPOCH FROM clock_timestamp()) AS now "
                                  "FROM partition_leases")).all()
        return {r.partition: (r.owner if r.owner and r.expires > float(r.now) else None) for r in rows}

    def alarms(self, device: str, rule: str) -> list[dict[str, Any]]:
        with self.engine.connect() as c:
            rows = c.execute(text("SELECT id, active, raised_at, cleared_at FROM alarms "
                                  "WHERE device = :d AND rule = :r ORDER BY id"), {"d": device, "r": rule}).all()
        return [dict(r._mapping) for r in rows]

    def alarm_rows(self, ids: list[int]) -> list[dict[str, Any]]:
        """Whole rows and their audit trail (a failure's diagnostic)."""
        with self.engine.connect() as c:
            rows = [dict(r._mapping) for r in c.execute(text("SELECT * FROM alarms WHERE id = ANY(:i) ORDER BY id"),
                                                        {"i": ids})]
            for r in rows:
                r["audit"] = [dict(a._mapping) for a in c.execute(
                    text("SELECT * FROM alarm_audit WHERE alarm_id = :a ORDER BY id"), {"a": r["id"]})]
        return rows

    def pushes(self, alarm_id: int) -> int:
        with self.engine.connect() as c:
            return int(c.execute(text("SELECT count(*) FROM notify_log WHERE alarm_id = :a AND ok "
                                      "AND purpose = 'alarm'"), {"a": alarm_id}).scalar_one())


@dataclass
class FleetRun:
    """The fleet generator in a thread until `stop`; `result` once it returned."""

    cfg: FleetConfig
    model: FleetModel
    stop_ev: threading.Event = field(default_factory=threading.Event)
    result: FleetResult | None = None
    thread: threading.Thread | None = None
    error: BaseException | None = None

    def start(self) -> FleetRun:
        def run() -> None:
            try:
                self.result = publish_fleet(self.cfg, record=True, model=self.model, stop=self.stop_ev)
            except BaseException as e:  # seen by `running` and `stop`, not lost in a thread warning
                self.error = e
                raise

        self.thread = threading.Thread(target=run, name="fleet", daemon=True)
        self.thread.start()
        return self

    def running(self, received: Callable[[], float], at_least: int = 2000, timeout: float = 90.0) -> FleetRun:
        """Wait until the replicas have received `at_least` messages (`received()`): a scenario run
        without its load would pass for the wrong reason."""
        def going() -> bool:
            if self.error is not None:
                raise AssertionError(f"the fleet failed: {self.error!r}")
            return received() >= at_least

        wait_until(going, timeout, "the fleet's load to reach the replicas")
        return self

    def stop(self, timeout: float = 90.0) -> FleetResult:
        self.stop_ev.set()
        assert self.thread is not None
        self.thread.join(timeout)
        assert self.result is not None, f"the fleet did not finish: {self.error!r}"
        return self.result


def partition_owner_wait(db: ClusterDb, part: int, not_owner: str | None, timeout: float) -> tuple[str, float]:
    """Wait until `part` is held by a replica other than `not_owner`; (owner, seconds waited)."""
    t0 = time.monotonic()

    def held() -> str | None:
        o = db.owner(part)
        return o if o is not None and o != not_owner else None

    owner = wait_until(held, timeout, f"partition {part} taken over", every=0.05)
    assert owner is not None
    return owner, time.monotonic() - t0


def alarm_partition(site: str, partitions: int) -> int:
    return partition_of(site, ALARM_GW, partitions)


def edge_status(state_dir: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((state_dir / "status.json").read_text()))
    except (OSError, ValueError):
        return {}




class PushReceiver:
    """The volunteers' phones: an HTTP server recording what apprise `json://` posts (time, title).

    `hold=n`: the first n requests reach the phone (recorded in `held`) but get no answer until
    `release()`, then the connection drops unanswered: a push in flight when its sender is killed."""

    def __init__(self, hold: int = 0) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.port = free_port()
        self.got: list[Push] = []
        self.held: list[Push] = []
        self._hold = hold
        self._released = threading.Event()
        self._lock = threading.Lock()
        rec = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    doc = json.loads(raw)
                    title, body = str(doc.get("title", "")), str(doc.get("message", ""))  # apprise json://
                except (ValueError, AttributeError):
                    title = body = ""
                with rec._lock:
                    holding = len(rec.held) < rec._hold
                    (rec.held if holding else rec.got).append(Push(time.time(), title, self.path, body))
                if holding:
                    rec._released.wait(120)
                    self.close_connection = True  # no answer: the sender never learns it arrived
                    return
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a: Any) -> None:
                pass

        self.srv = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def release(self) -> None:
        self._released.set()

    @property
    def url(self) -> str:
        return self.url_for("vol")

    def url_for(self, person: str) -> str:
        return f"json://127.0.0.1:{self.port}/push/{person}"

    def alarms(self, name: str = "Sprinkler waterflow", device: str | None = None) -> list[Push]:
        """Alarm pushes (not resolutions, not reminders) named `name`, of `device` if given."""
        return [p for p in self.got if name in p.title and "RESOLVED" not in p.title and "REMINDER" not in p.title
                and (device is None or f"device {device}" in p.body)]

    def stop(self) -> None:
        self.release()
        self.srv.shutdown()
        self.srv.server_close()
