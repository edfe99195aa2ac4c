"""The edge agent: buses → decode → interlocks and report-by-exception → outbox → MQTT.

Everything device-facing and the outbox run in one asyncio thread; paho's network loop runs in its
own thread and hands commands over with `call_soon_threadsafe`. Interlocks are decided and written
here, before anything goes near the network, so they work with the uplink down.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from device_profiles import wire
from device_profiles.lineproto import LineRecord
from device_profiles.model import PollClass, Profile, TransportKind
from device_profiles.points import CommandError, resolve_command
from edge_agent import commands
from edge_agent.budget import budget
from edge_agent.charge_watch import EdgeChargeWatch
from edge_agent.config import AgentConfig, Bus, Device
from edge_agent.config import Uplink as UplinkConfig
from edge_agent.drivers.base import ModbusDriver, TransactionError
from edge_agent.drivers.serial_line import LineReader
from edge_agent.health import BusStats, DeviceStats
from edge_agent.interlocks import Action, Interlocks
from edge_agent.outbox import ROUTINE, SAFETY, New, Outbox, Row
from edge_agent.report import Reporter, StateChange, point_info
from edge_agent.scheduler import BusScheduler, Slave
from edge_agent.uplink import Uplink
from edge_agent.urgency import Limits

log = logging.getLogger(__name__)
Value = bool | int | float | str


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"shelterwatch-edge {version('shelterwatch')}"
    except PackageNotFoundError:
        return "shelterwatch-edge (not installed)"


VERSION = _version()


@dataclass
class DeviceRuntime:
    cfg: Device
    profile: Profile
    reporter: Reporter
    interlocks: Interlocks
    stats: DeviceStats
    bus: str
    failed_once: set[tuple[str, int | None]] = field(default_factory=set)
    charge: EdgeChargeWatch | None = None
    overrides: tuple[wire.LimitOverride, ...] = ()  # the site's limits for this device (wire `limits`)
    limits: Limits = field(init=False)  # which readings cross an alarm limit (edge_agent/urgency.py)

    def __post_init__(self) -> None:
        self.limits = Limits.for_profile(self.profile, self.reporter.event_points, self.overrides)


def _telemetry(ts: Any, values: dict[str, Value], snapshot: bool, epoch: str, seq: int) -> bytes:
    return wire.encode(wire.Telemetry(ts=ts, seq=seq, values=values, snapshot=snapshot, epoch=epoch))


def _health(st: DeviceStats, stale: float, epoch: str, seq: int) -> bytes:
    return wire.encode(st.message(seq, stale, epoch))


def _encoded(payload: bytes, seq: int) -> bytes:
    return payload


class LineBus:
    """A serial line-protocol receiver treated like a bus: it pushes, we do not poll."""

    def __init__(self, bus: Bus, rt: DeviceRuntime, on_values: Any) -> None:
        self.name = bus.name
        self.bus, self.rt, self.on_values = bus, rt, on_values
        self.stats = BusStats(bus.name)
        assert bus.serial_port is not None
        self.reader = LineReader(bus.serial_port, bus.baud, rt.profile, self._record, bus.parity, bus.stop_bits)
        self._stop = False

    def _record(self, rec: LineRecord) -> None:
        st = self.rt.stats
        st.ok += 1
        st.polls += 1
        st.last_ok = time.time()
        st.cycles += 1
        st.cycle_times.append(time.monotonic())
        self.stats.transactions += 1
        self.on_values(self.rt.cfg.id, rec.values, PollClass.ROUTINE)

    async def run(self) -> None:
        while not self._stop:
            if not self.reader.is_open:
                try:
                    self.reader.open()
                except Exception as e:  # port missing or busy: keep trying, count it
                    self.rt.stats.count_failure("io", str(e))
            self.rt.stats.line_errors = dict(self.reader.errors)
            self.rt.stats.crc_errors = self.reader.errors.get("checksum", 0)
            await asyncio.sleep(0.5)
        self.reader.close()

    def stop(self) -> None:
        self._stop = True


def make_driver(bus: Bus) -> ModbusDriver:
    if bus.transport is TransportKind.MODBUS_TCP:
        from edge_agent.drivers.modbus_tcp import TcpDriver

        assert bus.host is not None
        return TcpDriver(bus.host, bus.tcp_port, bus.timeout_s)
    from edge_agent.drivers.modbus_rtu import RtuDriver

    assert bus.serial_port is not None
    return RtuDriver(bus.serial_port, bus.baud, bus.parity, bus.stop_bits, bus.timeout_s)


class Agent:
    def __init__(self, cfg: AgentConfig, profiles: dict[str, Profile], config_path: Path | None = None) -> None:
        self.cfg = cfg
        self.profiles = profiles
        self.site, self.gateway = cfg.site, cfg.gateway
        self.state_dir = Path(cfg.state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.outbox = Outbox(
            cfg.outbox.path or self.state_dir / "outbox.db", cfg.outbox.max_bytes, cfg.outbox.synchronous
        )
        self.started = time.monotonic()
        self._limits: wire.Limits | None = None  # the cloud's latest `limits` (its site's overrides)
        self.devices: dict[str, DeviceRuntime] = {
            d.id: self.runtime(d, profiles[d.profile]) for d in cfg.devices if d.enabled
        }
        self.buses: dict[str, BusScheduler | LineBus] = {}
        self.budget_warnings: list[str] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self._kick = asyncio.Event()
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._bus_tasks: dict[str, asyncio.Task[None]] = {}
        self.interlock_actions = 0
        self._pending: list[New] = []
        from edge_agent.apply import Applier  # remote configuration: needs the file it may rewrite

        self.remote = Applier(self, config_path) if config_path is not None else None
        self.uplink = self.make_uplink(cfg.uplink)

    # ------------------------------------------------------------------ wiring

    def runtime(self, d: Device, prof: Profile) -> DeviceRuntime:
        ovr = {k: (v.value, v.enabled) for k, v in d.interlocks.items()}
        return DeviceRuntime(
            d, prof, Reporter(point_info(prof), self.cfg.snapshot_s), Interlocks.for_profile(prof, ovr),
            DeviceStats(d.id), d.bus, charge=EdgeChargeWatch.for_device(prof, d.charge_analytics),
            overrides=tuple(self._limits.devices.get(d.id, ())) if self._limits is not None else (),
        )

    def make_uplink(self, uplink: UplinkConfig) -> Uplink:
        return Uplink(uplink, self.site, self.gateway, self.outbox, self._command_from_paho, self._birth)

    def _build_buses(self) -> None:
        for bus in self.cfg.buses:
            b = self.make_bus(bus)
            if b is not None:
                self.buses[bus.name] = b

    def make_bus(self, bus: Bus) -> BusScheduler | LineBus | None:
        """The scheduler (or line reader) of one bus of the current config, or None without devices."""
        rts = [rt for rt in self.devices.values() if rt.bus == bus.name]
        if not rts:
            return None
        if bus.transport is TransportKind.SERIAL_LINE:
            return LineBus(bus, rts[0], self.on_values)
        slaves = []
        for rt in rts:
            periods = {c: rt.cfg.poll.of(c) for c in PollClass}
            s = Slave(rt.cfg.id, rt.cfg.address, rt.profile, periods)
            s.stats = rt.stats
            slaves.append(s)
        sched = BusScheduler(bus.name, make_driver(bus), slaves, self.on_values, bus.retries, bus.gap_ms / 1000)
        if bus.transport is TransportKind.MODBUS_RTU:
            loads = {
                s.id: [(r.table, r.count, s.periods[c]) for c, reads in s.plans.items() for r in reads]
                for s in slaves
            }
            b = budget(bus.name, bus.baud, loads, bus.gap_ms / 1000)
            sched.stats.budget_ok = b.fits
            self.budget_warnings = [w for w in self.budget_warnings if not w.startswith(f"bus {bus.name}:")]
            if (w := b.warning()) is not None:
                self.budget_warnings.append(w)
                log.warning(w)
        return sched

    def start_bus(self, name: str, bus: BusScheduler | LineBus) -> None:
        self.buses[name] = bus
        self._bus_tasks[name] = asyncio.create_task(bus.run(), name=f"bus-{name}")

    async def stop_bus(self, name: str, timeout: float = 10.0) -> None:
        """Stop one bus: queued writes (interlocks, commands) finish first, then its port closes.
        It stays the bus of its devices until then, so a write asked for meanwhile (an interlock
        tripping on its last poll) is still carried out."""
        bus = self.buses.get(name)
        task = self._bus_tasks.pop(name, None)
        if bus is not None:
            bus.stop()
        if task is not None:
            try:
                await asyncio.wait_for(task, timeout)
            except (TimeoutError, asyncio.CancelledError):
                task.cancel()
            except Exception:
                log.exception("bus %s stopped with an error", name)
        if self.buses.get(name) is bus:
            self.buses.pop(name, None)

    def _birth(self) -> wire.Status:
        devs = [
            wire.DeviceInfo(id=rt.cfg.id, profile=rt.profile.id, labels=dict(rt.cfg.labels))
            for rt in self.devices.values()
        ]
        version, digest = self.remote.running() if self.remote is not None else (0, "")
        return wire.Status(ts=wire.now(), state="online", agent=VERSION, devices=devs, config_version=version,
                           config_digest=digest)

    def topic(self, kind: wire.Kind, device: str | None = None) -> str:
        return wire.topic(self.site, self.gateway, kind, device)

    # ------------------------------------------------------------------ data path

    def emit(self, items: list[New], urgent: bool = False) -> None:
        """Queue for the outbox. Routine telemetry is committed in batches (every pump tick, 20 ms),
        which turns hundreds of SQLite commits a second into fifty; events, command results and
        anything else `urgent` are committed at once. Either way nothing is offered to the uplink
        before its commit."""
        self._pending.extend(items)
        if urgent or any(i.priority == SAFETY for i in items) or len(self._pending) >= 500:
            self.flush()

    def flush(self) -> list[Row]:
        """Commit, then offer for sending: nothing leaves before it is on disk."""
        if not self._pending:
            return []
        items, self._pending = self._pending, []
        rows = self.outbox.put_many(items)
        if self.outbox.bytes > self.outbox.max_bytes:
            self.outbox.enforce_budget(protect=set(self.uplink._inflight_rows))
        self.uplink.offer(rows)
        self._kick.set()
        return rows

    def on_values(self, device: str, values: dict[str, Value], cls: PollClass) -> None:
        rt = self.devices[device]
        now = time.monotonic()
        for act in rt.interlocks.evaluate(values, now):
            self._start_interlock(rt, act)
        out = rt.reporter.update(values, now)
        items: list[New] = []
        ts = wire.now()
        if out.values:
            vals, snap = out.values, out.snapshot
            # A reading across an alarm limit goes on the safety lane, committed and sent at once.
            urgent = rt.limits.crossed(vals)
            items.append(
                New(
                    self.topic(wire.Kind.URGENT if urgent else wire.Kind.TELEMETRY, device),
                    partial(_telemetry, ts, vals, snap, self.outbox.epoch),
                    device,
                    SAFETY if urgent else ROUTINE,
                )
            )
        for ch in out.events:
            items.append(self._state_event(device, ch, ts))
        if rt.charge is not None:
            for f in rt.charge.observe(values, time.time()):
                items.append(self._charge_event(device, rt.charge, f, ts))
                stop = rt.charge.stop(f)
                if stop is not None:
                    self._start_interlock(rt, stop)
        self.emit(items)

    def _charge_event(self, device: str, watch: EdgeChargeWatch, f: Any, ts: Any) -> New:
        return New(
            self.topic(wire.Kind.EVENT, device), lambda seq: wire.encode(watch.event(f, ts, seq)), device, SAFETY
        )

    def _state_event(self, device: str, ch: StateChange, ts: Any) -> New:
        def build(seq: int) -> bytes:
            return wire.encode(
                wire.Event(
                    ts=ts,
                    seq=seq,
                    id=wire.new_id(),
                    kind="state",
                    severity=ch.severity,  # type: ignore[arg-type]
                    point=ch.point,
                    value=ch.value,
                    previous=ch.previous,
                    text=ch.text,
                    epoch=self.outbox.epoch,
                )
            )

        return New(self.topic(wire.Kind.EVENT, device), build, device, SAFETY)

    def _start_interlock(self, rt: DeviceRuntime, act: Action) -> None:
        try:
            w = resolve_command(rt.profile, act.command, act.index, act.value)
        except CommandError as e:  # a profile mistake: say so loudly, keep running
            rt.interlocks.result(act, False, time.monotonic())
            log.error("interlock %s on %s cannot act: %s", act.rule, rt.cfg.id, e)
            return
        sched = self.buses.get(rt.bus)
        if not isinstance(sched, BusScheduler):
            # no scheduler for this bus at this instant: not pending, so the next poll acts again
            rt.interlocks.result(act, False, time.monotonic())
            return
        fut = sched.submit_write(rt.cfg.id, w.table, w.address, w.value)
        fut.add_done_callback(lambda f: self._interlock_done(rt, act, f))

    def _interlock_done(self, rt: DeviceRuntime, act: Action, fut: asyncio.Future[None]) -> None:
        ok = not fut.cancelled() and fut.exception() is None
        rt.interlocks.result(act, ok, time.monotonic())
        if not ok and act.slot in rt.failed_once:
            return  # the failure was reported once; it is retried on every poll
        if ok:
            rt.failed_once.discard(act.slot)
            self.interlock_actions += 1
        else:
            rt.failed_once.add(act.slot)
        where = f"{act.point.rsplit('.', 1)[0]}" if act.index is not None else rt.cfg.id
        verb = "switched off" if act.value in (False, 0, None) else f"set to {act.value}"
        err = "" if ok else f" FAILED: {fut.exception()}"
        text = (
            f"{act.command} on {where} {verb}{err}: {act.point} = {act.reading} (cut-off {act.threshold}; {act.reason})"
        )
        data: dict[str, Value] = {
            "rule": act.rule,
            "command": act.command,
            "ok": ok,
            "reading": act.reading,
            "threshold": act.threshold,
            "trip": act.trip,  # the cloud raises one alarm per trip (docs/alarms.md)
        }
        if act.index is not None:
            data["index"] = act.index
        ts = wire.now()
        dev = rt.cfg.id
        self.emit(
            [
                New(
                    self.topic(wire.Kind.EVENT, dev),
                    lambda seq: wire.encode(
                        wire.Event(
                            ts=ts,
                            seq=seq,
                            id=wire.new_id(),
                            kind="interlock",
                            severity="critical",
                            point=act.point,
                            value=act.reading,
                            text=text,
                            data=data,
                            epoch=self.outbox.epoch,
                        )
                    ),
                    dev,
                    SAFETY,
                )
            ]
        )

    # ------------------------------------------------------------------ commands

    def _command_from_paho(self, topic: str, payload: bytes) -> None:
        if self.loop is None:
            return
        if topic.endswith(("/config", "/config-confirm")):
            if self.remote is not None:
                self.loop.call_soon_threadsafe(self.remote.inbound, topic, payload)
            return
        if topic.endswith("/" + wire.ConfigKind.LIMITS.value):
            self.loop.call_soon_threadsafe(self._limits_in, topic, payload)
            return
        self.loop.call_soon_threadsafe(self._command, topic, payload)

    def _limits_in(self, topic: str, payload: bytes) -> None:
        """The site's overrides of alarm limits (docs/wire.md `limits`; edge_agent/urgency.py): each
        device's limits are made again with them. On the agent's loop, like the readings they judge."""
        try:
            site, gw, kind, msg = wire.decode_config_message(topic, payload)
        except wire.WireError as e:
            log.warning("ignored limits on %s: %s", topic, e)
            return
        if (site, gw, kind) != (self.site, self.gateway, wire.ConfigKind.LIMITS) or not isinstance(msg, wire.Limits):
            return
        if self._limits is not None and msg.ts < self._limits.ts:
            log.info("ignored limits of %s: older than those applied (%s)", msg.ts, self._limits.ts)
            return
        self._limits = msg
        for dev, rt in self.devices.items():
            rt.overrides = tuple(msg.devices.get(dev, ()))
            rt.limits = Limits.for_profile(rt.profile, rt.reporter.event_points, rt.overrides)
        unknown = sorted(set(msg.devices) - set(self.devices))
        log.info("alarm limits from the cloud: %d override(s) for %d device(s)%s",
                 sum(len(v) for v in msg.devices.values()), len(msg.devices),
                 f"; not here: {', '.join(unknown)}" if unknown else "")

    def _command(self, topic: str, payload: bytes) -> None:
        profs = {k: rt.profile for k, rt in self.devices.items()}
        p = commands.prepare(topic, payload, self.site, self.gateway, profs, wire.now())
        if p.refusal is not None or p.write is None:
            log.warning("command refused: %s", p.refusal)
            if p.device and p.cmd_id and p.device in self.devices:
                self._cmd_result(p.device, p.cmd_id, p.status if p.status != "ok" else "refused", p.refusal or "")
            return
        assert p.device is not None and p.cmd_id is not None and p.command is not None
        rt = self.devices[p.device]
        sched = self.buses.get(rt.bus)
        if not isinstance(sched, BusScheduler):
            self._cmd_result(p.device, p.cmd_id, "refused", "device is not on a Modbus bus")
            return
        w = p.write
        fut = sched.submit_write(p.device, w.table, w.address, w.value)
        cmd = p.command

        def done(f: asyncio.Future[None]) -> None:
            err = f.exception() if not f.cancelled() else TransactionError("io", "cancelled")
            status = "done" if err is None else "failed"
            detail = f"wrote {w.value} to {w.table.value} {w.address}" if err is None else str(err)
            assert p.device is not None and p.cmd_id is not None
            self._cmd_result(p.device, p.cmd_id, status, detail, cmd)

        fut.add_done_callback(done)

    def _cmd_result(self, device: str, cmd_id: str, status: str, detail: str, cmd: wire.Command | None = None) -> None:
        ts = wire.now()
        items = [
            New(
                self.topic(wire.Kind.CMD_RESULT, device),
                lambda seq: wire.encode(
                    wire.CommandResult(
                        ts=ts,
                        id=cmd_id,
                        status=status,  # type: ignore[arg-type]
                        detail=detail,
                    )
                ),
                None,
                SAFETY,
            )
        ]
        if cmd is not None:
            text = (
                f"command {cmd.command}"
                + (f" {cmd.index}" if cmd.index is not None else "")
                + f" = {cmd.value} by {cmd.by or 'cloud'}: {status} ({detail})"
            )
            data: dict[str, Value] = {"command": cmd.command, "status": status, "cmd_id": cmd_id}
            items.append(
                New(
                    self.topic(wire.Kind.EVENT, device),
                    lambda seq: wire.encode(
                        wire.Event(
                            ts=ts,
                            seq=seq,
                            id=wire.new_id(),
                            kind="command",
                            severity="info",
                            text=text,
                            data=data,
                            epoch=self.outbox.epoch,
                        )
                    ),
                    device,
                    SAFETY,
                )
            )
        self.emit(items)

    # ------------------------------------------------------------------ health and status

    def health_items(self) -> list[New]:
        stale = max(3 * self.cfg.health_s, 30.0)
        items = []
        for dev, rt in self.devices.items():
            st = rt.stats
            items.append(
                New(
                    self.topic(wire.Kind.HEALTH, dev),
                    partial(_health, st, stale, self.outbox.epoch),
                    dev,
                    ROUTINE,
                )
            )
        return items

    def gateway_health(self) -> wire.GatewayHealth:
        oldest = self.outbox.oldest_created()
        skew = self.uplink.clock.skew()
        return wire.GatewayHealth(
            ts=wire.now(),
            uptime_s=round(time.monotonic() - self.started, 1),
            buses=[b.stats.message() for b in self.buses.values()],
            outbox_pending=self.outbox.count,
            outbox_bytes=self.outbox.bytes,
            outbox_dropped=self.outbox.dropped(),
            backlog_oldest=wire.at(oldest) if oldest else None,
            clock_skew_s=None if skew is None else round(skew, 3),
        )

    def status(self, gh: wire.GatewayHealth | None = None) -> dict[str, Any]:
        gh = gh or self.gateway_health()
        return {
            "site": self.site,
            "gateway": self.gateway,
            "pid": os.getpid(),
            "written": time.time(),
            "uplink": {
                "connected": self.uplink.connected,
                "url": self.cfg.uplink.url,
                "server": "{}:{}".format(*self.uplink.server),
                "sent": self.uplink.sent,
                "acked": self.uplink.acks,
                "last_error": self.uplink.last_error,
            },
            "outbox": {"pending": gh.outbox_pending, "bytes": gh.outbox_bytes, "dropped": gh.outbox_dropped},
            "buses": [
                {"name": b.name, "utilisation": b.utilisation, "transactions": b.transactions, "budget_ok": b.budget_ok}
                for b in gh.buses
            ],
            "epoch": self.outbox.epoch,
            "clock_skew_s": gh.clock_skew_s,
            "config": dict(zip(("version", "digest"), self.remote.running() if self.remote else (0, ""), strict=True)),
            "budget_warnings": self.budget_warnings,
            "interlock_actions": self.interlock_actions,
            "devices": [
                {
                    "id": d,
                    "bus": rt.bus,
                    "profile": rt.profile.id,
                    "breaker": rt.stats.breaker,
                    "polls": rt.stats.polls,
                    "ok": rt.stats.ok,
                    "timeouts": rt.stats.timeouts,
                    "crc_errors": rt.stats.crc_errors,
                    "exceptions": rt.stats.exceptions,
                    "retries": rt.stats.retries,
                    "last_ok": rt.stats.last_ok,
                    "poll_rate_hz": rt.stats.poll_rate(),
                    "last_error": rt.stats.last_error,
                    "seq": self.outbox.seq(d),
                }
                for d, rt in self.devices.items()
            ],
        }

    def write_status(self, gh: wire.GatewayHealth | None = None) -> None:
        path = self.state_dir / "status.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.status(gh), default=str, indent=1))
        os.replace(tmp, path)

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.health_s)
            gh = self.gateway_health()
            # Gateway health is durable like the rest (outbox, QoS 1); it carries no seq.
            gh_item = New(self.topic(wire.Kind.GATEWAY_HEALTH), partial(_encoded, wire.encode(gh)), None, ROUTINE)
            self.emit([*self.health_items(), gh_item])
            self.write_status(gh)

    async def _pump_loop(self) -> None:
        announced: tuple[int, int] = (0, 0)  # (which uplink, its connection count)
        while True:
            self.flush()
            self.uplink.pump()
            now = (id(self.uplink), self.uplink.connects)
            if self.remote is not None and self.uplink.connected and now != announced:
                announced = now
                self.remote.announce()  # the running config, once per connection (retained)
            self._kick.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), 0.02)

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._build_buses()
        if self.remote is not None:
            self.remote.recover()  # a trial cut short by a crash or restart is reported, not forgotten
        self.uplink.start()
        for n, b in list(self.buses.items()):
            self.start_bus(n, b)
        self._tasks = [asyncio.create_task(self._pump_loop(), name="pump")]
        self._tasks.append(asyncio.create_task(self._health_loop(), name="health"))
        self.write_status()
        try:
            await self._stopping.wait()
        finally:
            for b in self.buses.values():
                b.stop()
            if self.remote is not None:
                self.remote.cancel()
            tasks = [*self._tasks, *self._bus_tasks.values()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.flush()
            self.uplink.wait_idle(2.0)
            self.write_status()
            self.uplink.stop()
            self.outbox.close()

    def stop(self) -> None:
        self._stopping.set()


async def _stop_with_parent(agent: Agent, parent_pid: int, every_s: float = 1.0) -> None:
    """Stop the agent (cleanly) once the process that started it is gone. An agent run by another
    program (the demo) in its own session gets no signal when that program is killed: left alone it
    keeps reopening serial paths (pseudo-terminals are reused by the next program) and its broker."""
    while os.getppid() == parent_pid:
        await asyncio.sleep(every_s)
    log.warning("the process that started this agent (pid %d) is gone: stopping", parent_pid)
    agent.stop()


def run_agent(cfg: AgentConfig, profiles: dict[str, Profile], config_path: Path | None = None,
              parent_pid: int | None = None) -> None:
    """Run until SIGTERM / SIGINT, or until process `parent_pid` is no longer this one's parent. With
    `config_path` the cloud may change the config remotely (the file is rewritten when a new version
    is kept; docs/wire.md, "Remote configuration")."""

    async def main() -> None:
        agent = Agent(cfg, profiles, config_path)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, agent.stop)
        watch = asyncio.create_task(_stop_with_parent(agent, parent_pid)) if parent_pid is not None else None
        try:
            await agent.run()
        finally:
            if watch is not None:
                watch.cancel()

    asyncio.run(main())
