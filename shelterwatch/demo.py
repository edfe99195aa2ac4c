"""`shelterwatch demo`: the whole system on one machine, on embedded defaults.

Simulated shelters and a garage (simulators) → one edge agent process per gateway → MQTT (the
embedded amqtt broker, or any broker URL) → ingest (registry, SQLite time series) → alarm engine →
pushes to a local inbox → the web pages and API. Prints the URL and the demo logins.

`DemoStack` is also what the end-to-end browser tests start (with a real mosquitto), so the demo
and the tests run the same wiring. Demo users get random passwords printed at start: there are no
default passwords anywhere.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SITE = "demo-estate"
# simulator site → (gateway, {simulator device id: cloud device id}, zone per cloud device)
GATEWAYS: dict[str, tuple[str, dict[str, str], dict[str, str]]] = {
    "shelter-a": ("gw-shelter-a", {"chg1": "chg1", "chg2": "chg2", "spk1": "spk1"},
                  {"chg1": "a", "chg2": "a"}),
    "shelter-b": ("gw-shelter-b", {"chg1": "chg3", "spk1": "spk2", "bays1": "bays-b"},
                  {"chg3": "b", "bays-b": "b"}),
    "garage": ("gw-garage", {"park1": "hub1", "bays1": "rx1"}, {"hub1": "g1", "rx1": "g2"}),
}
DEMO_USERS = [("manager", "manager", "Wang (manager)"), ("volunteer", "volunteer", "Li (volunteer)"),
              ("installer", "installer", "Zhao (installer)"), ("resident", "resident", "Chen (resident)")]
FAST_POLL = {"safety": 0.5, "routine": 1.0, "slow": 5.0}


class Inbox:
    """A local webhook the demo's people are reached on (apprise `json://`): every push is kept
    and, in the demo, printed — the stand-in for WeCom / SMS, which need the internet."""

    def __init__(self, echo: bool = False) -> None:
        self.got: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        inbox = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                n = int(self.headers.get("content-length", 0))
                try:
                    body = json.loads(self.rfile.read(n) or b"{}")
                except ValueError:
                    body = {}
                rec = {"path": self.path, "at": time.time(), "title": body.get("title", ""),
                       "body": body.get("message", body.get("body", ""))}
                with inbox.lock:
                    inbox.got.append(rec)
                if echo:
                    print(f"[push to {self.path.strip('/')}] {rec['title']}", flush=True)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *a: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="inbox", daemon=True)

    def url(self, who: str) -> str:
        return f"json://127.0.0.1:{self.port}/{who}"

    def to(self, who: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.got if r["path"].strip("/") == who]

    def start(self) -> Inbox:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class DemoOptions:
    workdir: Path
    broker_url: str | None = None       # None: embedded amqtt on a free port
    web_port: int = 0                   # 0: a free port
    sims: tuple[str, ...] = ("shelter-a", "shelter-b", "garage")
    tier2_after_s: float = 120.0        # escalation to the manager when nobody acknowledges
    repeat_s: float = 300.0
    waterflow_retard_s: float = 5.0     # the profile's default retard is longer; demos are impatient
    fire_lane_for_s: float = 30.0
    poll_ms: int = 2000
    echo: bool = False
    safety_lane: bool = True            # ingest status/events/health on their own MQTT connection
    alarm_overrides: list[dict[str, Any]] = field(default_factory=list)  # more site alarm overrides (benches)
    users: list[tuple[str, str, str]] = field(default_factory=lambda: list(DEMO_USERS))


class DemoStack:
    def __init__(self, opts: DemoOptions) -> None:
        self.o = opts
        self.workdir = opts.workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.secret = secrets.token_urlsafe(32)
        self.passwords: dict[str, str] = {}
        self.sims: dict[str, Any] = {}
        self.agents: dict[str, subprocess.Popen[bytes]] = {}
        self.broker: Any = None
        self.inbox: Inbox | None = None
        self.cloud: Any = None  # cloud.serve.CloudService; the attributes below are its parts
        self.ingest: Any = None
        self.engine: Any = None
        self.store: Any = None
        self.dispatcher: Any = None
        self.commander: Any = None
        self.server: Any = None
        self.registry: Any = None
        self.app: Any = None
        self.web_port = opts.web_port
        self.broker_url = opts.broker_url

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    # ------------------------------------------------------------------------------- pieces
    def site_file(self) -> Any:
        from cloud.site_config import SiteFile

        gateways = []
        for sim_name, sim in self.sims.items():
            gw, ids, zones = GATEWAYS[sim_name]
            devs = []
            for sim_id, ep in sim.endpoints().items():
                if sim_id not in ids:
                    continue
                cid = ids[sim_id]
                labels = {"shelter": sim_name}
                if cid in zones:
                    labels["zone"] = zones[cid]
                if ep["transport"] == "serial_line":
                    labels["bays"] = "64"
                inst = {n: {"fire_lane": "true"} for n in ep.get("tags", {}).get("fire_lane", [])}
                devs.append({"id": cid, "profile": ep["profile"], "name": ep.get("labels", {}).get("name", ""),
                             "labels": labels, "instance_labels": inst})
            gateways.append({"id": gw, "name": sim.spec.description[:60], "location": sim_name, "devices": devs})
        return SiteFile.model_validate({"site": SITE, "name": "Demo Estate (Block 3-7)",
                                        "name_zh": "示范小区（3-7栋）", "gateways": gateways})

    def edge_config(self, sim_name: str) -> Path:
        from edge_agent.scan_config import render
        from simulators.edge_config import edge_config

        sim = self.sims[sim_name]
        gw, ids, _ = GATEWAYS[sim_name]
        assert self.broker_url
        doc, _notes = edge_config(SITE, sim.endpoints(), gw, self.broker_url.rstrip("/"),
                                  str(self.workdir / f"edge-{gw}"), ids,
                                  {"snapshot_s": 30, "health_s": 5})
        doc["uplink"].update(client_id=f"edge-{gw}", reconnect_min_s=0.5, reconnect_max_s=5)
        for d in doc["devices"]:
            d["poll"] = FAST_POLL
        path = self.workdir / f"edge-{gw}.yaml"
        path.write_text(render(doc, "shelterwatch demo", []))
        return path

    def alarm_config(self) -> Any:
        from cloud.alarms.config import AlarmSiteConfig

        assert self.inbox is not None
        return AlarmSiteConfig.model_validate({
            "site": SITE, "name": "Demo Estate", "name_zh": "示范小区", "public_url": self.url,
            "people": [
                {"id": "volunteer", "name": "Li", "tier": 1, "channels": [{"url": self.inbox.url("volunteer")}]},
                {"id": "manager", "name": "Wang", "role": "manager", "tier": 2,
                 "channels": [{"url": self.inbox.url("manager")}]},
            ],
            "escalation": {"tiers": [{"tier": 1, "after": 0}, {"tier": 2, "after": self.o.tier2_after_s}],
                           "repeat": self.o.repeat_s},
            "alarm_overrides": [{"rule": "waterflow", "for": self.o.waterflow_retard_s},
                                {"rule": "fire_lane_blocked", "for": self.o.fire_lane_for_s},
                                *self.o.alarm_overrides],
        })

    # ----------------------------------------------------------------------------- lifecycle
    def start(self) -> DemoStack:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        from cloud.serve import CloudService, ServeConfig
        from simulators.site import SimSite

        w = self.workdir
        if self.broker_url is None:
            from cloud.broker import EmbeddedBroker

            self.broker = EmbeddedBroker().start()
            self.broker_url = self.broker.url
        self.web_port = self.web_port or _free_port()
        for name in self.o.sims:
            self.sims[name] = SimSite.from_file(name).start()
        self.inbox = Inbox(echo=self.o.echo).start()

        # The cloud side is exactly `shelterwatch cloud serve` (CloudService), fed the site built
        # from the simulators and the demo's alarm config instead of files.
        self.cloud = CloudService(ServeConfig(
            broker=self.broker_url, sites=[self.site_file()], alarm_sites=[self.alarm_config()], secret=self.secret,
            data_dir=w, port=self.web_port, mqtt_client="gmqtt",
            mqtt_version="3.1.1" if self.broker is not None else "auto",  # amqtt speaks 3.1.1 only
            client_id="sw-ingest-demo", engine_tick_s=0.1, housekeeping_interval=0.5, directory_refresh=2.0,
            poll_ms=self.o.poll_ms, safety_lane=self.o.safety_lane)).start()
        cloud = self.cloud
        self.registry, self.store, self.dispatcher = cloud.registry, cloud.store, cloud.dispatcher
        self.engine, self.ingest, self.commander = cloud.engine, cloud.ingest, cloud.commander
        self.app, self.server = cloud.app, cloud.server
        for user, role, display in self.o.users:
            pw = secrets.token_urlsafe(9)
            self.app.state.auth.add_user(user, pw, role, [SITE], display_name=display, check_strength=False)
            self.passwords[user] = pw

        for name in self.sims:
            cfg = self.edge_config(name)
            logf = open(w / f"{cfg.stem}.log", "ab")  # noqa: SIM115 - owned by the child
            self.agents[name] = subprocess.Popen([sys.executable, "-m", "edge_agent", "run", str(cfg),
                                                  "--parent-pid", str(os.getpid())],
                                                 stdout=logf, stderr=subprocess.STDOUT, start_new_session=True,
                                                 env={**os.environ, "PYTHONUNBUFFERED": "1"})
            logf.close()
        _wait_port(self.web_port)

    def wait_live(self, timeout: float = 60.0) -> None:
        """Until every gateway is online and every device has sent values."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            gws = self.registry.gateways(SITE)
            devs = self.registry.devices(SITE)
            if gws and all(g.online for g in gws) and all(d.last_ts for d in devs):
                return
            time.sleep(0.25)
        raise TimeoutError(f"demo not live after {timeout}s; edge logs in {self.workdir}")

    def sim_device(self, cloud_id: str) -> Any:
        for name, (_, ids, _) in GATEWAYS.items():
            for sim_id, cid in ids.items():
                if cid == cloud_id and name in self.sims:
                    return self.sims[name].device(sim_id)
        raise KeyError(cloud_id)

    def stop(self) -> None:
        """Stop everything we started, newest first; each step runs even if an earlier one failed."""
        steps: list[Any] = []
        # The cloud side stops before the gateways, so shutting the demo down pages nobody.
        if self.cloud is not None:
            steps.append(self.cloud.stop)
        if self.inbox is not None:
            steps.append(self.inbox.stop)
        steps.append(lambda: _stop_procs(list(self.agents.values())))
        steps += [s.stop for s in self.sims.values()]
        if self.broker is not None:
            steps.append(self.broker.stop)
        for step in steps:
            try:
                step()
            except Exception:
                log.exception("demo stop step failed")

    def __enter__(self) -> DemoStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_port(port: int, timeout: float = 20.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port}")


def _stop_procs(procs: list[subprocess.Popen[bytes]], grace_s: float = 15.0) -> None:
    """SIGTERM to all at once, then one shared grace period (not one each), then SIGKILL."""
    running = [p for p in procs if p.poll() is None]
    for p in running:
        p.terminate()
    deadline = time.monotonic() + grace_s
    for p in running:
        try:
            p.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def summary_line(stack: DemoStack, elapsed: float) -> str:
    """One line of what the system is doing: traffic, storage, gateways, alarms, parking, and a
    few decoded readings, so a newcomer sees data flowing without opening a page."""
    from cloud.api.estate import RegistrySource, parking_zones

    assert stack.ingest is not None and stack.registry is not None and stack.store is not None
    st = stack.ingest.stats()
    gws = stack.registry.gateways(SITE)
    active = stack.store.list_alarms(site=SITE, active=True)
    by_sev: dict[str, int] = {}
    for a in active:
        by_sev[a.severity] = by_sev.get(a.severity, 0) + 1
    devices = RegistrySource(stack.registry).devices(SITE)
    zones = parking_zones(devices)
    free, total = sum(z.free for z in zones), sum(z.total for z in zones)
    values = {d.id: d.last_values for d in devices}
    chg1, spk1 = values.get("chg1", {}), values.get("spk1", {})
    reading = (f"chg1 port 3 {chg1.get('port.3.connector_temp', '?')} °C {chg1.get('port.3.current', '?')} A "
               f"{chg1.get('port.3.state', '?')} | spk1 {spk1.get('pipe_pressure', '?')} bar")
    alarms = ", ".join(f"{n} {sev}" for sev, n in sorted(by_sev.items())) or "none"
    return (f"[t+{elapsed:4.0f}s] messages {st['received']} stored {st['written']} | gateways online "
            f"{sum(g.online for g in gws)}/{len(gws)} | active alarms: {alarms} | free bays {free}/{total} | {reading}")


def play_scenario(stack: DemoStack, name: str) -> Any:
    """Play a shipped scenario against the running simulators (its `site:` names which one)."""
    from simulators.scenario import ScenarioPlayer, find_scenario, load_scenario

    scenario = load_scenario(find_scenario(name))
    return ScenarioPlayer(stack.sims[scenario.site], scenario).start()


def demo(
    workdir: Path | None = None,
    port: int = 8000,
    broker: str | None = None,
    scenario: str = "demo-runaway",
    duration: float = 0.0,
    every: float = 10.0,
) -> None:
    """Run the demo estate on embedded defaults until Ctrl-C; prints the URL and this run's logins.

    Every run starts from empty databases in a fresh folder (default: a new temp folder), so the
    demo never meets users or passwords from an earlier run. About a minute in, the scenario makes
    something go wrong (default: a charging port overheats; the edge cuts it, the alarm is pushed).
    `--scenario none` plays nothing; `--duration S` stops by itself after S seconds.
    """
    import tempfile

    workdir = workdir or Path(tempfile.mkdtemp(prefix="shelterwatch-demo-"))
    opts = DemoOptions(workdir=workdir, web_port=port, broker_url=broker, echo=True)
    stack = DemoStack(opts)
    print("starting the demo estate (simulators, edge agents, broker, ingest, alarms, web)…", flush=True)
    stack.start()
    try:
        stack.wait_live(90)
    except TimeoutError as e:
        print(f"warning: {e}", flush=True)
    print(f"\nshelterwatch demo: {stack.url}\n  parking (public): {stack.url}/parking\n"
          f"  API docs: {stack.url}/docs\n\nDemo logins (this run only):", flush=True)
    for user, role, _ in opts.users:
        print(f"  {user:<10} {stack.passwords[user]:<14} ({role})", flush=True)
    print(f"\nData and logs: {workdir}\nPushes to the demo's people are printed as they arrive "
          f"(a local webhook stands in for WeCom / SMS).", flush=True)
    player = None
    if scenario != "none":
        player = play_scenario(stack, scenario)
        print(f"Scenario {scenario!r}: {player.scenario.description}", flush=True)
    print("Ctrl-C to stop.\n", flush=True)
    t0 = next_line = time.monotonic()
    try:
        while not duration or time.monotonic() - t0 < duration:
            if time.monotonic() >= next_line:
                next_line += every
                try:
                    print(summary_line(stack, time.monotonic() - t0), flush=True)
                except Exception:  # a summary must never stop the demo
                    log.exception("summary failed")
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        print("stopping…", flush=True)
        if player is not None:
            player.stop()
        stack.stop()
        print("stopped.", flush=True)
