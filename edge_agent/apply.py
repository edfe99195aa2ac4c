"""Remote configuration on the gateway: try a version from the cloud, keep it only if it works.

One version at a time, in the agent's event loop (docs/wire.md, "Remote configuration"):

1. Only a version newer than every version handled before is tried; an older one gets its
   earlier result again (a result lost with the link is re-sent, nothing is tried twice).
2. The same checks as `edge-agent check`, plus the remote rules (edge_agent/remote.py). A
   refusal changes nothing. The file the agent was started with must be writable (a change that
   cannot be kept across a restart is refused, not silently half-applied).
3. Only the buses whose settings or devices changed are rebuilt; every other bus keeps polling.
   Devices keep their runtime (report-by-exception state, interlock latches, counters, sequence
   numbers); the outbox is never touched. Queued interlock writes finish before a bus stops.
4. Devices must answer within `probe_s` (those whose settings changed or that are new, and those
   that answered before and sit on a rebuilt bus); otherwise the old buses come back.
5. A changed uplink is the dangerous case: the new connection must come up AND the cloud must
   confirm it heard the gateway over it within `confirm_s`. Until then the outbox is held (a
   broker the cloud does not read would acknowledge, and so delete, what the cloud never got);
   without the confirmation the old uplink comes back, and with it the old devices.
6. Only then is the file rewritten (atomically) and the version recorded. A crash before that
   leaves the old file: the agent starts on it and reports the trial as rolled back.

Every step is reported on `config-result` through the outbox (durable, never dropped), so a result
reaches the cloud even when the link was down at the time.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
import yaml

from device_profiles import wire
from device_profiles.located_yaml import ConfigError
from device_profiles.model import Profile
from edge_agent.config import AgentConfig
from edge_agent.config_state import ConfigState, sha256_file, write_atomic
from edge_agent.interlocks import Interlocks
from edge_agent.outbox import SAFETY, New
from edge_agent.remote import Plan, check_remote, digest, merge_secrets, plan_change, redacted_text

if TYPE_CHECKING:
    from edge_agent.agent import Agent, DeviceRuntime

log = logging.getLogger(__name__)
PROBE_MAX_S = 120.0
CONFIRM_MAX_S = 300.0


class Applier:
    def __init__(self, agent: Agent, config_path: Path) -> None:
        self.agent = agent
        self.path = Path(config_path)
        self.state_path = agent.state_dir / "config-state.json"
        self.state = ConfigState.load(self.state_path)
        loaded = yaml.safe_load(self.path.read_text(encoding="utf-8")) if self.path.exists() else None
        self.data: dict[str, Any] = loaded if isinstance(loaded, dict) else {}
        self.version = self.state.running_version(self.path)
        self.digest = digest(self.data)
        self._queued: wire.ConfigSet | None = None
        self._task: asyncio.Task[None] | None = None
        self._confirm: tuple[int, asyncio.Event] | None = None

    # ------------------------------------------------------------------ what runs

    def running(self) -> tuple[int, str]:
        return self.version, self.digest

    def announce(self) -> None:
        """Publish the running config (retained, without the password) on the current connection."""
        msg = wire.ConfigRunning(ts=wire.now(), version=self.version, digest=self.digest,
                                 config=redacted_text(self.data), agent=_agent_version())
        self.agent.uplink.publish_now(self._topic(wire.ConfigKind.RUNNING), wire.encode(msg), retain=True, qos=1)

    def recover(self) -> None:
        """At start: a trial the agent did not live to finish. If the commit had written the file,
        the new version is what runs; otherwise the old one does. Either way the cloud is told."""
        t = self.state.trial
        if not t:
            return
        v = int(t["version"])
        if t.get("file_sha") and sha256_file(self.path) == t["file_sha"]:
            self.state.commit(v, self.digest, t["file_sha"], str(t.get("by", "")))
            self.version = v
            r = self._result(v, "applied", "kept: the agent restarted after writing the new config")
        else:
            self.state.trial = None
            r = self._result(v, "rolled_back", "the agent stopped during the trial (crash, power loss or restart); "
                                               "it runs the previous config")
        self.state.remember(v, msgspec.json.decode(wire.encode(r)))
        self.state.save(self.state_path)
        self._emit(r)

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()

    # ------------------------------------------------------------------ inbound (agent loop thread)

    def inbound(self, topic: str, payload: bytes) -> None:
        try:
            site, gw, _kind, msg = wire.decode_config_message(topic, payload)
        except wire.WireError as e:
            log.warning("ignored config message on %s: %s", topic, e)
            return
        if (site, gw) != (self.agent.site, self.agent.gateway):
            return
        if isinstance(msg, wire.ConfigConfirm):
            if self._confirm is not None and self._confirm[0] == msg.version:
                self._confirm[1].set()
            return
        assert isinstance(msg, wire.ConfigSet)
        if self._queued is None or msg.version > self._queued.version:
            self._queued = msg  # the newest waits; an older one still waiting is superseded
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain(), name="config-apply")

    async def _drain(self) -> None:
        while self._queued is not None:
            msg, self._queued = self._queued, None
            try:
                await self.handle(msg)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # a bug here must not kill the agent: say so, keep running
                log.exception("config version %d failed", msg.version)
                self._emit(self._result(msg.version, "refused", f"the agent failed to handle it: {e!r}"))

    # ------------------------------------------------------------------ one version

    async def handle(self, msg: wire.ConfigSet) -> None:
        v = msg.version
        if v <= self.state.last_seen:
            prev = self.state.results.get(str(v))
            if prev is not None:
                again = msgspec.convert(prev, wire.ConfigResult, strict=False)
                self._emit(msgspec.structs.replace(again, ts=wire.now()))
            elif v == self.state.version:
                self._emit(self._result(v, "applied", "already running"))
            else:
                self._emit(self._result(v, "refused", f"version {self.state.last_seen} was handled already; only "
                                                      "a newer version is tried"))
            return
        t0 = time.monotonic()
        r = await self._try(msg)
        r = msgspec.structs.replace(r, detail=f"{r.detail} ({time.monotonic() - t0:.1f} s)".strip())
        self.state.remember(v, msgspec.json.decode(wire.encode(r)))
        self.state.trial = None
        self.state.save(self.state_path)
        self._emit(r)

    async def _try(self, msg: wire.ConfigSet) -> wire.ConfigResult:
        a = self.agent
        v = msg.version
        try:
            checked = check_remote(msg.config, f"config v{v}", a.site, a.gateway, a.cfg, self.path.parent)
        except ConfigError as e:
            probs = [wire.ConfigProblem(line=i.line, key=i.key, message=i.message) for i in e.issues]
            return self._result(v, "refused", f"{len(probs)} problem(s); nothing changed", problems=probs)
        if digest(checked.data) != msg.digest:
            return self._result(v, "refused", "the config does not match its digest (damaged on the way?)")
        why = _not_writable(self.path)
        if why:
            return self._result(v, "refused", f"cannot keep a new config: {why}; nothing changed")
        merged = merge_secrets(checked.data, a.cfg)
        new_cfg = AgentConfig.model_validate(merged)
        plan = plan_change(a.cfg, new_cfg, self.data, merged)
        text = (f"# Version {v} from the cloud (by {msg.by or 'unknown'}{': ' + msg.comment if msg.comment else ''}).\n"
                "# Written by edge-agent; edits made here run as a local config until the next version.\n"
                + yaml.safe_dump(merged, sort_keys=False, allow_unicode=True, width=110))
        new_sha = _sha(text.encode())
        self.state.begin(v, new_sha)
        self.state.trial = {**(self.state.trial or {}), "by": msg.by}
        self.state.save(self.state_path)
        if plan.same:
            self._commit(v, text, new_sha, merged, new_cfg, checked.profiles, msg)
            return self._result(v, "applied", "same content as the running config")
        self._emit(self._result(v, "applying", _describe(plan)))
        old_cfg, old_profiles, old_rts, old_uplink = a.cfg, a.profiles, dict(a.devices), a.uplink
        try:
            return await self._trial(msg, text, new_sha, merged, new_cfg, checked.profiles, plan)
        except Exception:
            # A bug half-way must not leave the gateway on half a config: the old one, as it was.
            # (Cancelled because the agent stops: nothing to undo, the file still holds the old
            # config and the trial is reported at the next start.)
            if a.uplink is not old_uplink:
                await asyncio.to_thread(a.uplink.stop, False)
                a.uplink = a.make_uplink(old_uplink.cfg)
                a.uplink.start()
            await switch(a, old_cfg, old_profiles, plan_change(new_cfg, old_cfg, merged, self.data), old_rts)
            raise

    async def _trial(self, msg: wire.ConfigSet, text: str, new_sha: str, merged: dict[str, Any],
                     new_cfg: AgentConfig, profiles: dict[str, Profile], plan: Plan) -> wire.ConfigResult:
        a = self.agent
        v = msg.version
        old_cfg, old_profiles, old_rts = a.cfg, a.profiles, dict(a.devices)
        stale = max(3 * old_cfg.health_s, 30.0)
        before = {d for d, rt in old_rts.items() if rt.stats.online(stale)}
        base = await switch(a, new_cfg, profiles, plan)
        judged = plan.judged(before)
        devices, missing = await self._probe(judged, base, min(msg.probe_s, PROBE_MAX_S))
        for d in set(a.devices) - judged:
            devices[d] = ("settings unchanged, answering" if d in before
                          else "not checked: was not answering before this change either, settings unchanged")
        if missing:
            await switch(a, old_cfg, old_profiles, plan_change(new_cfg, old_cfg, merged, self.data), old_rts)
            return self._result(v, "rolled_back", f"{', '.join(sorted(missing))} did not answer within "
                                                  f"{min(msg.probe_s, PROBE_MAX_S):.0f} s; the previous config runs "
                                                  "again", devices=devices)
        if plan.uplink_changed:
            why = await self._try_uplink(new_cfg, msg)
            if why:
                await switch(a, old_cfg, old_profiles, plan_change(new_cfg, old_cfg, merged, self.data), old_rts)
                return self._result(v, "rolled_back", f"{why}; the previous uplink and config run again",
                                    devices=devices)
        self._commit(v, text, new_sha, merged, new_cfg, profiles, msg)
        what = f"{len(judged)} device(s) answered" if judged else "no device had to prove itself"
        return self._result(v, "applied", what + (", uplink confirmed" if plan.uplink_changed else ""),
                            devices=devices)

    async def _probe(self, judged: set[str], base: dict[str, int],
                     probe_s: float) -> tuple[dict[str, str], list[str]]:
        a = self.agent
        deadline = time.monotonic() + probe_s
        while True:
            waiting = [d for d in judged if d in a.devices and a.devices[d].stats.ok <= base.get(d, 0)]
            if not waiting or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.1)
        out = {d: "ok" for d in judged if d not in waiting}
        for d in waiting:
            rt = a.devices[d]
            where = f"unit {rt.cfg.address} on bus {rt.bus}" if rt.cfg.address else f"bus {rt.bus}"
            out[d] = f"no answer ({where}): {rt.stats.last_error or 'nothing received'}"
        return out, waiting

    async def _try_uplink(self, new_cfg: AgentConfig, msg: wire.ConfigSet) -> str:
        """Empty when the new uplink connected and the cloud confirmed it; why not otherwise (the old
        uplink is running again by then)."""
        a = self.agent
        old = a.uplink
        window = min(msg.confirm_s, CONFIRM_MAX_S)
        await asyncio.to_thread(old.stop, False)
        trial = a.make_uplink(new_cfg.uplink)
        trial.hold = True
        a.uplink = trial
        ev = asyncio.Event()
        self._confirm = (msg.version, ev)
        told = 0
        deadline = time.monotonic() + window
        try:
            trial.start()
            while time.monotonic() < deadline and not ev.is_set():
                if trial.connected and trial.connects != told:
                    told = trial.connects
                    r = self._result(msg.version, "confirming", f"connected to {new_cfg.uplink.url}; waiting for "
                                                                f"the cloud to confirm (up to {window:.0f} s)")
                    trial.publish_now(self._topic(wire.ConfigKind.RESULT), wire.encode(r), qos=1)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ev.wait(), 0.1)
        finally:
            self._confirm = None
        if ev.is_set():
            trial.hold = False
            return ""
        if trial.connected:
            why = f"the new uplink {new_cfg.uplink.url} connected but the cloud did not confirm within {window:.0f} s"
        else:
            err = trial.last_error or "no connection"
            why = f"the new uplink {new_cfg.uplink.url} did not connect within {window:.0f} s ({err})"
        await asyncio.to_thread(trial.stop, False)
        back = a.make_uplink(old.cfg)
        a.uplink = back
        back.start()
        return why

    def _commit(self, v: int, text: str, sha: str, merged: dict[str, Any], cfg: AgentConfig,
                profiles: dict[str, Profile], msg: wire.ConfigSet) -> None:
        write_atomic(self.path, text.encode())
        self.data = merged
        self.version, self.digest = v, digest(merged)
        self.state.commit(v, self.digest, sha, msg.by)
        self.state.save(self.state_path)
        a = self.agent
        a.cfg, a.profiles = cfg, {**a.profiles, **profiles}
        a.outbox.set_limits(cfg.outbox.max_bytes, cfg.outbox.synchronous)
        a.uplink.republish_birth()
        self.announce()

    # ------------------------------------------------------------------ helpers

    def _topic(self, kind: wire.ConfigKind) -> str:
        return wire.config_topic(self.agent.site, self.agent.gateway, kind)

    def _result(self, version: int, status: str, detail: str, **kw: Any) -> wire.ConfigResult:
        return wire.ConfigResult(ts=wire.now(), version=version, status=status,  # type: ignore[arg-type]
                                 running=self.version, detail=detail[:2000], **kw)

    def _emit(self, r: wire.ConfigResult) -> None:
        payload = wire.encode(r)
        self.agent.emit([New(self._topic(wire.ConfigKind.RESULT), lambda _seq: payload, None, SAFETY)], urgent=True)
        log.info("config version %d: %s %s", r.version, r.status, r.detail)


async def switch(a: Agent, cfg: AgentConfig, profiles: dict[str, Profile], plan: Plan,
                 keep: dict[str, DeviceRuntime] | None = None) -> dict[str, int]:
    """Make `cfg` the running config: stop the buses `plan` names, carry every device's runtime
    over (`keep` first: the very objects of a config being restored), start the new buses.
    Returns each device's count of good answers at the switch (the probe waits for more)."""
    for name in plan.stop:
        await a.stop_bus(name)
    devices: dict[str, DeviceRuntime] = {}
    a.cfg = cfg
    for d in cfg.devices:
        if not d.enabled:
            continue
        prof = profiles.get(d.profile) or a.profiles[d.profile]
        old = a.devices.get(d.id) or (keep or {}).get(d.id)  # the freshest state first
        devices[d.id] = _carry(a, old, d, prof) if old is not None and old.profile.id == prof.id else a.runtime(d, prof)
    a.devices = devices
    a.profiles = {**a.profiles, **profiles}
    for name in sorted(plan.start):
        bus = a.make_bus(cfg.bus(name))
        if bus is not None:
            a.start_bus(name, bus)
    return {d: rt.stats.ok for d, rt in devices.items()}


def _carry(a: Agent, old: DeviceRuntime, d: Any, prof: Profile) -> DeviceRuntime:
    """The same device under its new settings: its reporter, counters and interlock latches go on."""
    from dataclasses import replace

    il = old.interlocks
    if d.interlocks != old.cfg.interlocks:
        fresh = Interlocks.for_profile(prof, {k: (o.value, o.enabled) for k, o in d.interlocks.items()})
        keys = {r.key for r in fresh.rules}
        fresh.done = {slot: t for slot, t in il.done.items() if slot[0] in keys}
        fresh.trips = {slot: t for slot, t in il.trips.items() if slot[0] in keys}  # the same episodes go on
        il = fresh
    old.reporter.snapshot_s = a.cfg.snapshot_s
    return replace(old, cfg=d, bus=d.bus, interlocks=il)


def _describe(plan: Plan) -> str:
    parts = []
    if plan.start or plan.stop:
        parts.append(f"rebuilding bus(es) {', '.join(sorted(plan.start | plan.stop))}")
    if plan.comm_changed:
        parts.append(f"new or changed devices {', '.join(sorted(plan.comm_changed))} must answer")
    if plan.uplink_changed:
        parts.append("the uplink changes: the cloud must confirm the new connection")
    return "; ".join(parts) or "settings only"


def _not_writable(path: Path) -> str:
    if not path.exists():
        return f"{path} does not exist"
    if not os.access(path, os.W_OK):
        return f"{path} is not writable by the agent"
    if not os.access(path.parent, os.W_OK):
        return f"{path.parent} is not writable (the file is replaced atomically)"
    return ""


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _agent_version() -> str:
    from edge_agent.agent import VERSION

    return VERSION

