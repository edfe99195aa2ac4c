"""The cloud's side of remote configuration: accept, store, send, follow, confirm, roll out.

* `submit` validates a desired config (cloud/remote_config/validate.py: the checks of
  `edge-agent check` and the remote rules) BEFORE it is stored; refused configs are never sent.
* Accepted versions are published retained on `sw/v1/<site>/<gw>/config` (QoS 1), so a gateway
  that is offline gets the latest desired config when it reconnects; on every (re)connect of the
  cloud the desired configs not yet running are published again.
* Results (`config-result`), running configs (`config-running`) and births (`status`) update the
  store; a gateway's first running config is imported as version 1 (not desired, nothing sent).
* `confirming` from a gateway trying a new uplink is answered with `config-confirm`: the cloud
  heard it over that uplink, so it may keep it (edge_agent/apply.py).
* A rollout sends one change to many gateways one at a time and stops at the first one that is
  refused, rolled back or silent (`rollout_step`).

Chosen by the broker URL, like the ingester (one code path, two transports):

* `mqtt://…` (one broker): a paho connection of its own (a persistent session under `cloud serve`)
  subscribes to the answers and births and publishes the desired config retained; an answer is
  acknowledged only once recorded, or set aside as a dead letter after ~90 s of failing tries
  (cloud/remote_config/inbox.py), so none is lost to a store that is briefly away or to a crash.
* `nats://h1,h2,h3` (a NATS cluster with N `cloud serve` replicas over one database): a gateway's
  answers (`config-result`, `config-running`) are partitioned uplink like its births
  (cloud/cluster/partition.py), so they are read once, by the replica that owns the gateway's partition,
  through its durable safety consumer: the ingester hands them to `handle` (and births to `birth`) and
  acknowledges them only after `handle` returned, so an answer the owner did not live to record is
  delivered again to the survivor that takes the partition over. Only the owner (`owns`) answers
  `confirming` (and only once per version), imports a first running config, re-sends desired
  configs and steps a rollout whose current gateway it owns. The desired config is published by
  whichever replica accepted it, stored in the cluster's `$MQTT_msgs` stream under the `config` topic
  (cloud/api/command_link.py): the gateway's persistent session gets it at QoS 1 from whichever node it
  is on, also after being away. NATS's MQTT layer makes a message retained only when an MQTT client
  publishes it, so it is not retained there; instead the owner sends the desired config again when a
  gateway's birth shows it does not run it and has no answer for it (a gateway that never had a
  session, or was away longer than the stream keeps messages).
"""

from __future__ import annotations

import difflib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cloud.ingest.jetstream import is_nats_url
from cloud.remote_config.inbox import AckedInbox, SetAside
from cloud.remote_config.limits import GatewayLimits, LimitsSender
from cloud.remote_config.store import TERMINAL, ConfigStore, Rollout, State, Version
from cloud.remote_config.validate import Verdict, patched, validate
from device_profiles import wire
from device_profiles.located_yaml import Issue
from device_profiles.model import Profile
from edge_agent.remote import text_digest

log = logging.getLogger(__name__)


class ConfigRejected(ValueError):
    """Not accepted; nothing stored or sent. `status` is the HTTP status the API answers with."""

    def __init__(self, status: int, detail: str, problems: list[Issue] | None = None) -> None:
        self.status = status
        self.problems = problems or []
        super().__init__(detail)


@dataclass(frozen=True)
class GatewayConfig:
    """A gateway's config as the pages and the API show it."""

    site: str
    gateway: str
    desired: Version | None
    state: State | None
    drift: str  # in_sync, pending, applying, rolled_back, refused, drift, unmanaged, unknown
    drift_text: str
    running_label: str


def drift_of(desired: Version | None, st: State | None, local_match: Version | None = None) -> tuple[str, str, str]:
    """(drift, what it means, how to name what runs). Pure."""
    if st is None or st.running_version is None:
        running = "unknown"
    elif st.running_version:
        running = f"v{st.running_version}"
    else:
        running = "local" + (f" (same as v{local_match.version})" if local_match else "")
    if st is None or (st.running_version is None and not st.last_status):
        return ("unknown" if desired else "unmanaged"), "the gateway has not reported its config yet", running
    if desired is None:
        return "unmanaged", "no desired config: the gateway runs its own", running
    if st.running_digest and st.running_digest == desired.digest:
        return "in_sync", f"runs the desired config (v{desired.version})", running
    if st.last_version == desired.version:
        if st.last_status in ("applying", "confirming"):
            return "applying", f"v{desired.version}: {st.last_status} ({st.last_detail})", running
        if st.last_status in ("rolled_back", "refused"):
            return st.last_status, f"v{desired.version} {st.last_status.replace('_', ' ')}: {st.last_detail}", running
    if (st.last_version or 0) < desired.version:
        if st.sent != desired.version:
            return "pending", f"v{desired.version} accepted, not sent yet (no broker connection): sent on reconnect", \
                running
        return "pending", f"v{desired.version} sent; waiting for the gateway", running
    return "drift", f"runs {running}, desired v{desired.version}", running


class ConfigService:
    def __init__(self, store: ConfigStore, mqtt_url: str | None, catalog: dict[str, Profile],
                 gateways: Callable[[str], list[str]], username: str | None = None, password: str | None = None,
                 rollout_tick_s: float = 0.5, owns: Callable[[str, str], bool] | None = None,
                 name: str = "", client_id: str | None = None, set_aside: SetAside | None = None,
                 limits: Callable[[], dict[tuple[str, str], GatewayLimits]] | None = None) -> None:
        self.store = store
        self.url = mqtt_url
        # On a NATS cluster: answers come through the owner's ingester (`handle`, `birth`), desired configs
        # go out through the stream, not retained (module doc).
        self.clustered = mqtt_url is not None and is_nats_url(mqtt_url)
        # Is this replica the one that answers for a gateway (cloud/cluster/replica.py `owns`)? Always
        # with one broker and one `cloud serve`.
        self.owns: Callable[[str, str], bool] = owns or (lambda site, gateway: True)
        self.resend_s = 2.0  # how often the owner looks for desired configs not sent yet (cluster)
        self.name = name  # the replica's id on a cluster: in the history and the rollout steps it moved
        self.who = f"cloud {name}".strip()
        self.catalog = catalog
        self.gateways = gateways  # site → registered gateway ids
        self.username, self.password = username, password
        self.rollout_tick_s = rollout_tick_s
        self._client: Any = None
        # One broker: the answers are acknowledged once recorded (cloud/remote_config/inbox.py), on a
        # persistent session when `client_id` is given (`cloud serve`: `<its client id>-config`), so what
        # the gateways sent while the cloud was away or that it did not live to record comes again.
        self.client_id = client_id
        self.inbox = AckedInbox(self._inbound, set_aside, name="config-answers")
        # The site's overrides of alarm limits, sent to each gateway over this service's downlink
        # (cloud/remote_config/limits.py); None: not sent.
        self.limits = LimitsSender(limits, lambda topic, msg: self._publish(topic, msg, retain=True), self.owns) \
            if limits is not None else None
        self.limits_s = 2.0  # how often the loop looks for limits to send
        self._stop = threading.Event()
        self._republish_due = False  # the last connection's re-send failed: the rollouts thread tries again
        self._thread: threading.Thread | None = None
        self.changed = threading.Condition()  # notified on every result (tests, rollouts)

    # ------------------------------------------------------------------ life cycle
    def start(self, wait_s: float = 10.0) -> ConfigService:
        if self.url is not None and self.clustered:
            from cloud.api.command_link import NatsLink

            self._client = NatsLink(self.url, self.username, self.password)
            self._client.start(None, "sw-config", timeout=wait_s)
        elif self.url is not None:
            from cloud.paho_client import start_client

            subs = [(t, 1) for t in (*wire.config_subscriptions(), f"{wire.PREFIX}/+/+/status")]
            self.inbox.start()
            self._client = start_client(self.url, "sw-config", subs, self.inbox.on_message, self.username,
                                        self.password, on_connected=self._republish, wait_s=wait_s,
                                        client_id=self.client_id, manual_ack=True, on_session=self.inbox.session)
        self._thread = threading.Thread(target=self._rollouts, name="config-rollouts", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._client is not None:
            if self.clustered:
                self._client.stop()
            else:
                self.inbox.stop()  # before the disconnect: what it holds is not acknowledged, it comes again
                self._client.disconnect()
                self._client.loop_stop()
            self._client = None

    @property
    def connected(self) -> bool:
        if self._client is None:
            return False
        return bool(self._client.connected() if self.clustered else self._client.is_connected())

    # ------------------------------------------------------------------ inbound
    def _inbound(self, topic: str, payload: bytes) -> None:
        """One message from one broker (cloud/remote_config/inbox.py calls it in arrival order): a birth or
        an answer. Raises when an answer was not recorded: it is not acknowledged and is tried again."""
        if topic.endswith("/status"):
            try:
                t = wire.parse_topic(topic)
                st = wire.decode(t.kind, payload)
            except wire.WireError as e:
                log.warning("ignored %s: %s", topic, e)
                return
            if isinstance(st, wire.Status):
                self.birth(t.site, t.gateway, st)
            return
        self.handle(topic, payload)

    def handle(self, topic: str, payload: bytes) -> None:
        """A gateway's `config-result` or `config-running`. A malformed one or one of an unregistered
        gateway is logged and dropped; an exception means it was not recorded (the ingester then does not
        acknowledge it: it comes again)."""
        try:
            site, gw, _kind, payload_ = wire.decode_config_message(topic, payload)
        except wire.WireError as e:
            log.warning("ignored %s: %s", topic, e)
            return
        if not self._known(site, gw):
            log.warning("config message from unregistered gateway %s/%s ignored", site, gw)
            return
        if isinstance(payload_, wire.ConfigResult):
            self._result(site, gw, payload_)
        elif isinstance(payload_, wire.ConfigRunning):
            self._running(site, gw, payload_)

    def birth(self, site: str, gw: str, st: wire.Status) -> None:
        """A gateway's birth names the config it runs. On a cluster (no retained desired config) the
        owner sends the desired config again if the gateway neither runs it nor answered it."""
        if st.state != "online" or not self._known(site, gw):
            return
        if self.clustered and self.limits is not None:  # nothing is retained on a cluster: send them again
            self.limits.forget(site, gw)
        try:
            self.store.record_running(site, gw, st.config_version, st.config_digest, None, st.agent)
            if self.clustered:
                cur = self.store.state(site, gw)
                if cur is not None and cur.desired is not None and st.config_version != cur.desired \
                        and not (cur.last_version == cur.desired and cur.last_status in (*TERMINAL, "applying",
                                                                                          "confirming")):
                    sent = self.publish(site, gw)
                    log.info("%s/%s: its birth says it runs version %d, not the desired %d: %s", site, gw,
                             st.config_version, cur.desired, "sent again" if sent else "could not send it now")
        except Exception:  # a birth is not worth failing the ingester's message for: the next one comes
            log.exception("%s/%s: recording its birth for remote configuration failed", site, gw)
        with self.changed:
            self.changed.notify_all()

    def _known(self, site: str, gateway: str) -> bool:
        return gateway in self.gateways(site)

    def _result(self, site: str, gw: str, r: wire.ConfigResult) -> None:
        if r.status == "confirming" and not self.store.has_event(site, gw, r.version, "confirmed"):
            # once per version: the same `confirming` delivered again (to a survivor, after its owner died
            # having answered it) is not answered twice
            ok = self._publish(wire.config_topic(site, gw, wire.ConfigKind.CONFIRM),
                               wire.ConfigConfirm(ts=wire.now(), version=r.version), retain=False)
            if not ok and self.clustered:
                raise RuntimeError(f"{site}/{gw}: cannot send config-confirm of version {r.version} now")
            self.store.add_event(site, gw, r.version, self.who, "confirmed",
                                 "heard the gateway over its new uplink: confirmed")
        problems = [{"line": p.line, "key": p.key, "message": p.message} for p in r.problems]
        self.store.record_result(site, gw, r.version, r.status, r.running, r.detail, dict(r.devices), problems,
                                 r.ts.timestamp())
        with self.changed:
            self.changed.notify_all()

    def _running(self, site: str, gw: str, r: wire.ConfigRunning) -> None:
        if text_digest(r.config) != r.digest:
            log.warning("%s/%s: running config does not match its digest; ignored", site, gw)
            return
        self.store.record_running(site, gw, r.version, r.digest, r.config, r.agent)
        if not self.store.versions(site, gw):
            self.store.create_version(site, gw, r.config, r.digest, f"gateway {gw}", "import",
                                      comment="the config the gateway was running, as it reported it", desire=False)
        with self.changed:
            self.changed.notify_all()

    # ------------------------------------------------------------------ outbound
    def _publish(self, topic: str, msg: Any, retain: bool) -> bool:
        if not self.connected:
            return False
        if self.clustered:  # stored in the cluster's stream, QoS 1 to the gateway's session (module doc)
            err = self._client.publish(topic, wire.encode(msg))
            if err:
                log.warning("%s: %s", topic, err)
            return not err
        info = self._client.publish(topic, wire.encode(msg), qos=1, retain=retain)
        return bool(info.rc == 0)

    def publish(self, site: str, gw: str) -> bool:
        """Send the desired config (retained with one broker; stored in the stream on a cluster); False
        when the broker is not reachable now (it is sent on the next connection, or by the owner's
        next look on a cluster)."""
        st = self.store.state(site, gw)
        if st is None or st.desired is None:
            return False
        v = self.store.version(site, gw, st.desired)
        assert v is not None
        msg = wire.ConfigSet(ts=wire.now(), version=v.version, config=v.text, digest=v.digest, by=v.created_by,
                             comment=v.comment, probe_s=v.probe_s, confirm_s=v.confirm_s)
        ok = self._publish(wire.config_topic(site, gw, wire.ConfigKind.DESIRED), msg, retain=True)
        if ok:
            self.store.mark_sent(site, gw, v.version, "stored in the cluster" if self.clustered else "retained")
        return ok

    def _republish(self) -> None:
        """At each connection: what the broker may have lost is sent again. If the store fails (SQLite
        briefly locked, the database away) the rollouts thread tries again at its next tick; a thread
        dying on the error left the desired configs unsent until the next reconnect."""
        self._republish_due = False
        if self.limits is not None:
            self.limits.forget()  # a new connection: the broker may have lost what was retained
        try:
            for st in self.store.states():
                if st.desired is not None and not (st.last_version == st.desired and st.last_status in TERMINAL):
                    self.publish(st.site, st.gateway)
        except Exception:
            self._republish_due = True
            log.exception("sending the desired configs again after a connection failed; tried again shortly")

    # ------------------------------------------------------------------ API
    def base_text(self, site: str, gw: str) -> str:
        """What an edit starts from: the desired config, else the running one, else nothing."""
        st = self.store.state(site, gw)
        if st is not None and st.desired is not None:
            v = self.store.version(site, gw, st.desired)
            if v is not None:
                return v.text
        if st is not None and st.running_text:
            return st.running_text
        vs = self.store.versions(site, gw)
        return vs[0].text if vs else ""

    def check(self, site: str, gw: str, text: str) -> Verdict:
        st = self.store.state(site, gw)
        return validate(site, gw, text, st.running_text if st else "", self.catalog, name="config")

    def submit(self, site: str, gw: str, text: str, by: str, comment: str = "", probe_s: float = 20.0,
               confirm_s: float = 30.0, source: str = "edit", parent: int | None = None) -> Version:
        if gw not in self.gateways(site):
            raise ConfigRejected(404, f"no gateway {gw!r} on site {site}")
        verdict = self.check(site, gw, text)
        if not verdict.ok:
            listed = "; ".join(str(i) for i in verdict.problems)
            self.store.add_event(site, gw, None, by, "rejected", f"{len(verdict.problems)} problem(s): {listed}"[:1500])
            raise ConfigRejected(422, "the config does not pass the checks; nothing was stored or sent",
                                 verdict.problems)
        v = self.store.create_version(site, gw, text, verdict.digest, by, source, comment, parent, probe_s, confirm_s)
        self.publish(site, gw)
        return v

    def rollback(self, site: str, gw: str, to_version: int, by: str, comment: str = "") -> Version:
        """A new version with the text of `to_version` (so the history only grows)."""
        old = self.store.version(site, gw, to_version)
        if old is None:
            raise ConfigRejected(404, f"no version {to_version} of {site}/{gw}")
        note = comment or f"roll back to version {to_version}"
        return self.submit(site, gw, old.text, by, note, old.probe_s, old.confirm_s, "rollback", to_version)

    def view(self, site: str, gw: str) -> GatewayConfig:
        st = self.store.state(site, gw)
        desired = self.store.version(site, gw, st.desired) if st and st.desired else None
        local = self.store.by_digest(site, gw, st.running_digest) if st and st.running_digest else None
        drift, text, running = drift_of(desired, st, local)
        return GatewayConfig(site, gw, desired, st, drift, text, running)

    def text_of(self, site: str, gw: str, which: str) -> str:
        """A version's text ("3"), the desired one ("desired") or what runs ("running")."""
        if which == "running":
            st = self.store.state(site, gw)
            if st is None or not st.running_text:
                raise ConfigRejected(404, "the gateway has not reported its running config")
            return st.running_text
        if which == "desired":
            st = self.store.state(site, gw)
            which = str(st.desired) if st and st.desired else ""
        if not (which.isascii() and which.isdigit()):  # "²" is a digit to isdigit(), not to int()
            raise ConfigRejected(404, f"no version {which!r}")
        v = self.store.version(site, gw, int(which))
        if v is None:
            raise ConfigRejected(404, f"no version {which}")
        return v.text

    def diff(self, site: str, gw: str, a: str, b: str) -> str:
        ta, tb = self.text_of(site, gw, a), self.text_of(site, gw, b)
        name = {"running": "running"}.get
        return "".join(difflib.unified_diff(ta.splitlines(keepends=True), tb.splitlines(keepends=True),
                                            f"{gw} {name(a) or 'v' + a}", f"{gw} {name(b) or 'v' + b}"))

    # ------------------------------------------------------------------ rollouts
    def start_rollout(self, site: str, gateways: list[str], patch: str, by: str, comment: str = "",
                      step_timeout_s: float = 300.0, probe_s: float = 20.0, confirm_s: float = 30.0) -> Rollout:
        """Check the patched config of EVERY gateway first; start only if all pass."""
        if not gateways:
            raise ConfigRejected(422, "choose at least one gateway")
        known = set(self.gateways(site))
        problems: list[Issue] = []
        for gw in gateways:
            if gw not in known:
                raise ConfigRejected(404, f"no gateway {gw!r} on site {site}")
            base = self.base_text(site, gw)
            if not base:
                problems.append(Issue(gw, 0, "", "no config known yet (the gateway has not reported one)"))
                continue
            try:
                text = patched(base, patch)
            except ValueError as e:
                raise ConfigRejected(422, str(e)) from None
            verdict = self.check(site, gw, text)
            problems += [Issue(gw, i.line, i.key, i.message) for i in verdict.problems]
        if problems:
            raise ConfigRejected(422, "the change does not pass the checks on every gateway; nothing was started",
                                 problems)
        r = self.store.create_rollout(site, list(dict.fromkeys(gateways)), patch, by, comment, step_timeout_s,
                                      probe_s, confirm_s)
        for gw in gateways:
            self.store.add_event(site, gw, None, by, "rollout", f"rollout {r.id} started: {comment}")
        return r

    def _rollouts(self) -> None:
        last_resend = time.monotonic()
        last_limits = last_resend - self.limits_s  # the first look at the first tick
        while not self._stop.wait(self.rollout_tick_s):
            if self._republish_due:
                self._republish()
            if self.limits is not None and time.monotonic() - last_limits >= self.limits_s:
                last_limits = time.monotonic()
                try:
                    self.limits.tick()
                except Exception:
                    log.exception("sending alarm limits failed")
            try:
                for r in self.store.rollouts(state="running"):
                    if self.steps(r):
                        self.rollout_step(r)
                if self.clustered and time.monotonic() - last_resend >= self.resend_s:
                    last_resend = time.monotonic()
                    self._send_unsent()
            except Exception:
                log.exception("rollout step failed")

    @staticmethod
    def current_gateway(r: Rollout) -> str:
        """The gateway a rollout waits for: its first step not finished (the last one when all are)."""
        return next((s["gateway"] for s in r.steps if s["state"] in ("pending", "sent")), r.steps[-1]["gateway"])

    def steps(self, r: Rollout) -> bool:
        """Does this replica step `r` now? The owner of its current gateway does (it also reads that
        gateway's answers): one replica at a time, and the survivor of a takeover carries on."""
        return not r.steps or self.owns(r.site, self.current_gateway(r))

    def _send_unsent(self) -> None:
        """Desired configs of this replica's gateways accepted while the cluster could not be reached."""
        for st in self.store.states():
            if st.desired is not None and st.sent != st.desired and self.owns(st.site, st.gateway):
                self.publish(st.site, st.gateway)

    def _submitted_for(self, r: Rollout, gw: str, comment: str) -> Version | None:
        """The version this step already made, if a replica made it and died before saving the step."""
        st = self.store.state(r.site, gw)
        v = self.store.version(r.site, gw, st.desired) if st is not None and st.desired else None
        if v is not None and v.source == "rollout" and v.comment == comment[:500] and v.created_at >= r.created_at:
            return v
        return None

    def rollout_step(self, r: Rollout) -> None:
        """Advance one rollout by at most one step (persisted, so a restart carries on)."""
        steps = [dict(s) for s in r.steps]
        i = next((k for k, s in enumerate(steps) if s["state"] in ("pending", "sent")), None)
        if i is None:
            self.store.save_rollout(r.id, "done", f"all {len(steps)} gateway(s) applied the change", steps)
            return
        step, gw = steps[i], steps[i]["gateway"]
        if step["state"] == "pending":
            comment = f"rollout {r.id}: {r.comment}".strip(": ")
            try:
                v = self._submitted_for(r, gw, comment)
                if v is None:
                    text = patched(self.base_text(r.site, gw), r.patch)
                    v = self.submit(r.site, gw, text, r.created_by, comment, r.probe_s, r.confirm_s,
                                    source="rollout")
            except ConfigRejected as e:
                detail = str(e) + "".join(f"; {p}" for p in e.problems)
                self._stop_rollout(r, steps, i, "refused", f"{gw}: {detail}")
                return
            step.update(state="sent", version=v.version, at=time.time(), detail="sent", by=self.name)
            self.store.save_rollout(r.id, "running", f"{gw}: version {v.version} sent", steps)
            return
        st = self.store.state(r.site, gw)
        if st is not None and st.last_version == step["version"] and st.last_status in TERMINAL:
            if st.last_status == "applied":
                step.update(state="applied", detail=st.last_detail, by=self.name)
                self.store.save_rollout(r.id, "running", f"{gw}: applied", steps)
            else:
                self._stop_rollout(r, steps, i, st.last_status, f"{gw} {st.last_status}: {st.last_detail}")
        elif time.time() - float(step["at"] or 0) > r.step_timeout_s:
            self._stop_rollout(r, steps, i, "timeout", f"{gw}: no result within {r.step_timeout_s:.0f} s (offline?)")

    def _stop_rollout(self, r: Rollout, steps: list[dict[str, Any]], i: int, state: str, detail: str) -> None:
        steps[i].update(state=state, detail=detail, by=self.name)
        for s in steps[i + 1:]:
            s.update(state="skipped", detail="not started: the rollout stopped before")
        self.store.save_rollout(r.id, "stopped", f"stopped at {detail}", steps)
        for s in steps[i + 1:]:
            self.store.add_event(r.site, s["gateway"], None, "cloud", "rollout",
                                 f"rollout {r.id} stopped before this gateway: {detail}")

    def wait(self, cond: Callable[[], Any], timeout: float) -> Any:
        """Until `cond()` is truthy (re-checked on every result) or the timeout."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                v = cond()
                if v or time.monotonic() >= deadline:
                    return v
                self.changed.wait(min(0.5, max(0.0, deadline - time.monotonic())))
