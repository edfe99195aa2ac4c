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
from edge_agent.config import AgentConfig, Bus, Device
from edge_agent.drivers.base import ModbusDriver, TransactionError
from edge_agent.drivers.serial_line import LineReader
from edge_agent.health import BusStats, DeviceStats
from edge_agent.interlocks import Action, Interlocks
from edge_agent.outbox import ROUTINE, SAFETY, New, Outbox, Row
from edge_agent.report import Reporter, StateChange, point_info
from edge_agent.scheduler import BusScheduler, Slave
from edge_agent.uplink import Uplink

log = logging.getLogger(__name__)
Value = bool | int | float | str
VERSION = "edge_agent 0.1"


@dataclass
class DeviceRuntime:
    cfg: Device
    profile: Profile
    reporter: Reporter
    interlocks: Interlocks
    stats: DeviceStats
    bus: str
    failed_once: set[tuple[str, int | None]] = field(default_factory=set)


def _telemetry(ts: Any, values: dict[str, Value], snapshot: bool, seq: int) -> bytes:
    return wire.encode(wire.Telemetry(ts=ts, seq=seq, values=values, snapshot=snapshot))


def _health(st: DeviceStats, stale: float, seq: int) -> bytes:
    return wire.encode(st.message(seq, stale))


class LineBus:
    """A serial line-protocol receiver treated like a bus: it pushes, we do not poll."""

    def __init__(self, bus: Bus, rt: DeviceRuntime, on_values: Any) -> None:
        self.name = bus.name
        self.bus, self.rt, self.on_values = bus, rt, on_values
        self.stats = BusStats(bus.name)
        assert bus.port is not None
        self.reader = LineReader(bus.port, bus.baud, rt.profile, self._record, bus.parity, bus.stop_bits)
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

    assert bus.port is not None
    return RtuDriver(bus.port, bus.baud, bus.parity, bus.stop_bits, bus.timeout_s)


class Agent:
    def __init__(self, cfg: AgentConfig, profiles: dict[str, Profile]) -> None:
        self.cfg = cfg
        self.site, self.gateway = cfg.site, cfg.gateway
        self.state_dir = Path(cfg.state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.outbox = Outbox(
            cfg.outbox.path or self.state_dir / "outbox.db", cfg.outbox.max_bytes, cfg.outbox.synchronous
        )
        self.started = time.monotonic()
        self.devices: dict[str, DeviceRuntime] = {}
        for d in cfg.devices:
            if not d.enabled:
                continue
            prof = profiles[d.profile]
            ovr = {k: (v.value, v.enabled) for k, v in d.interlocks.items()}
            self.devices[d.id] = DeviceRuntime(
                d,
                prof,
                Reporter(point_info(prof), cfg.snapshot_s),
                Interlocks.for_profile(prof, ovr),
                DeviceStats(d.id),
                d.bus,
            )
        self.buses: dict[str, BusScheduler | LineBus] = {}
        self.budget_warnings: list[str] = []
        self.uplink = Uplink(cfg.uplink, cfg.site, cfg.gateway, self.outbox, self._command_from_paho, self._birth)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._kick = asyncio.Event()
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self.interlock_actions = 0
        self._pending: list[New] = []

    # ------------------------------------------------------------------ wiring

    def _build_buses(self) -> None:
        for bus in self.cfg.buses:
            rts = [rt for rt in self.devices.values() if rt.bus == bus.name]
            if not rts:
                continue
            if bus.transport is TransportKind.SERIAL_LINE:
                self.buses[bus.name] = LineBus(bus, rts[0], self.on_values)
                continue
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
                if (w := b.warning()) is not None:
                    self.budget_warnings.append(w)
                    log.warning(w)
            self.buses[bus.name] = sched

    def _birth(self) -> wire.Status:
        devs = [
            wire.DeviceInfo(id=rt.cfg.id, profile=rt.profile.id, labels=dict(rt.cfg.labels))
            for rt in self.devices.values()
        ]
        return wire.Status(ts=wire.now(), state="online", agent=VERSION, devices=devs)

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
            items.append(
                New(
                    self.topic(wire.Kind.TELEMETRY, device),
                    partial(_telemetry, ts, vals, snap),
                    device,
                    ROUTINE,
                )
            )
        for ch in out.events:
            items.append(self._state_event(device, ch, ts))
        self.emit(items)

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
                        )
                    ),
                    dev,
                    SAFETY,
                )
            ]
        )

    # ------------------------------------------------------------------ commands

    def _command_from_paho(self, topic: str, payload: bytes) -> None:
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self._command, topic, payload)

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
                            ts=ts, seq=seq, id=wire.new_id(), kind="command", severity="info", text=text, data=data
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
                    partial(_health, st, stale),
                    dev,
                    ROUTINE,
                )
            )
        return items

    def gateway_health(self) -> wire.GatewayHealth:
        oldest = self.outbox.oldest_created()
        from datetime import UTC, datetime

        return wire.GatewayHealth(
            ts=wire.now(),
            uptime_s=round(time.monotonic() - self.started, 1),
            buses=[b.stats.message() for b in self.buses.values()],
            outbox_pending=self.outbox.count,
            outbox_bytes=self.outbox.bytes,
            outbox_dropped=self.outbox.dropped(),
            backlog_oldest=datetime.fromtimestamp(oldest, UTC) if oldest else None,
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
            self.emit(self.health_items())
            self.uplink.publish_now(self.topic(wire.Kind.GATEWAY_HEALTH), wire.encode(gh))
            self.write_status(gh)

    async def _pump_loop(self) -> None:
        while True:
            self.flush()
            self.uplink.pump()
            self._kick.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), 0.02)

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._build_buses()
        self.uplink.start()
        self._tasks = [asyncio.create_task(b.run(), name=f"bus-{n}") for n, b in self.buses.items()]
        self._tasks.append(asyncio.create_task(self._pump_loop(), name="pump"))
        self._tasks.append(asyncio.create_task(self._health_loop(), name="health"))
        self.write_status()
        try:
            await self._stopping.wait()
        finally:
            for b in self.buses.values():
                b.stop()
            for t in self._tasks:
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self.flush()
            self.uplink.wait_idle(2.0)
            self.write_status()
            self.uplink.stop()
            self.outbox.close()

    def stop(self) -> None:
        self._stopping.set()


def run_agent(cfg: AgentConfig, profiles: dict[str, Profile]) -> None:
    """Run until SIGTERM / SIGINT."""

    async def main() -> None:
        agent = Agent(cfg, profiles)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, agent.stop)
        await agent.run()

    asyncio.run(main())
