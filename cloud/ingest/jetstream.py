"""The ingester's side of a NATS cluster: durable consumers per partition and lane (nats-py).

Chosen by the broker URL (`nats://h1:4222,h2:4222,h3:4222`); the pipeline behind it is the one the
MQTT clients feed (`cloud/ingest/mqtt.py`). What differs:

- **Where messages come from.** Edges publish MQTT to any node; the NATS MQTT layer stores each
  QoS 1 message in its replicated stream `$MQTT_msgs` *before* it acknowledges it to the edge, under
  the partitioned subject of `cloud.cluster.partition` (the nodes' subject mappings). This client reads
  that stream through durable pull consumers, one per (partition, lane): `sw-p003-safety` (status,
  events, device health; remote configuration's answers, cloud/remote_config/service.py) and
  `sw-p003-bulk` (telemetry, gateway health, command results). It creates
  the stream (the server would create the same one on the first MQTT connection, and uses ours when it
  exists) and the consumers if they are missing. The stream keeps messages by age and size (limits
  retention, cloud/cluster/stream.py), not only while a consumer is interested: with nats-server's
  interest retention a message stored while the stream leader had no consumer covering its subject
  (a whole-cluster restart, a leader change) was acknowledged to the edge and deleted unread.
- **Acknowledgement.** A message is acknowledged only behind the ingester's durability point
  (`durable.after`, cloud/ingest/durability.py: storage holds it, in the store or its disk spool, and
  the alarm engine has processed it), each one by itself (AckExplicit): with AckAll the new owner's
  first ack would also acknowledge what the dead owner had received and never handled.
- **Ownership.** Only the partitions in `owned` are consumed (all of them when no lease manager is
  wired in: one replica). `set_partitions()` moves consumption as leases move. What a dead owner had
  received but not acknowledged comes again after the consumers' ack wait (`ACK_WAIT_S`), which is
  no longer than a lease (cloud/cluster/leases.py): by the time a survivor has claimed the partition,
  it is delivered again at once, in order of its first delivery.
- **No consumer resets.** `$JS.API.CONSUMER.RESET` (NATS 2.14+) would have such messages again at
  once, but it restarts the consumer's delivery numbering at 1 while its replicas keep the old one: in
  the chaos test (issue 13), a reset made while the nodes came back from a restart, followed by the
  loss of the consumer's leader, left the new leader continuing the old numbering past messages
  delivered after the reset and never acknowledged. They were never delivered again and the ack floor
  passed them: acknowledged readings missing from the store (111 in one run, 4 in another).
- **Gateway health** travels at QoS 0 (best effort): NATS does not store it, so the owner of a
  partition also holds a plain subscription for it.

Pull loop: each (partition, lane) keeps pull requests outstanding with idle heartbeats and handles
messages as they arrive (nats-py's `fetch` would hold a message back until its batch is full or the
request expires). One asyncio loop in one thread runs every consumer, so the handlers are never called
concurrently, as with the MQTT clients.

**One NATS connection per lane**, as the MQTT ingester has one MQTT connection per lane. On a shared
connection a safety message queues in the socket behind every bulk message delivered before it, and
nats-py reads a socket 32 KiB per turn of the loop: with a telemetry backlog in flight (a survivor
that just took over eight partitions, 500-message pulls on each) the waterflow event of a taken-over
gateway reached the handler 2.0-2.4 s after the server sent it, first delivery, while the handler
itself took 10 ms (traced in bench/cluster.py's takeover at 2,000 msg/s). On its own connection it is
read on the loop's next turn. Each lane pulls and acknowledges on its own connection; the bulk one also
sets up the stream and consumers and holds the gateway-health subscriptions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

from cloud.broker_account import BrokerAccount
from cloud.cluster import partition as P
from cloud.cluster import stream as S
from cloud.ingest.durability import Durable
from cloud.ingest.mqtt import MAIN, SAFETY, BaseIngestClient

log = logging.getLogger(__name__)

LANE_OF = {P.SAFETY: SAFETY, P.BULK: MAIN}
# How long a delivered message may stay unacknowledged before the cluster delivers it again: at most a
# partition lease's time to live (6 s), so a dead owner's unacknowledged messages are due again by the
# time a survivor takes its partitions over. Acknowledgements wait for the durability point, normally
# well under a second (storage writes or spools within its linger); one that takes longer only has its
# message delivered twice, and the replay check drops the copy.
ACK_WAIT_S = 6.0


def _meta(msg: Any, field: str) -> int | None:
    """A count from a message's JetStream metadata (its ack subject), if known: `num_pending` (how many
    the consumer still had for us behind it), `num_delivered` (this delivery's number)."""
    try:
        return int(getattr(msg.metadata, field))
    except Exception:
        return None


def parse_servers(url: str) -> list[str]:
    """`nats://h1:4222,h2:4222` or `nats://h1:4222,nats://h2:4222` → one URL per node."""
    if not url.startswith(("nats://", "tls://")):
        raise ValueError(f"not a NATS URL: {url!r}")
    scheme = url.split("://", 1)[0]
    out = []
    for part in url.split(","):
        part = part.strip()
        if part:
            out.append(part if "://" in part else f"{scheme}://{part}")
    return out


def is_nats_url(url: str) -> bool:
    return url.startswith(("nats://", "tls://"))


class _Puller:
    """Pull requests kept outstanding on one durable consumer; messages handled as they arrive."""

    BATCH = 500
    EXPIRES_S = 30.0
    HEARTBEAT_S = 2.0
    RETRY_S = 0.25  # after an error status (no leader yet, leadership change)
    YIELD_EVERY = 32  # bulk messages handled between two turns given to the other lanes (`_on_msg`)

    def __init__(self, owner: JetStreamIngestClient, part: int, lane: str) -> None:
        self.owner = owner
        self.part, self.lane = part, lane
        self.consumer = P.consumer_name(part, lane)
        self.handler = owner.handlers[LANE_OF[lane]]
        self.outstanding = 0
        self.last_seen = time.monotonic()
        self.to_ack: list[str] = []  # reply subjects of handled messages, not yet behind an `after`
        self.acking = 0  # `after` calls whose acks have not gone out yet
        self.stopped = False
        self.sub: Any = None
        self.task: asyncio.Task[None] | None = None
        self.wake = asyncio.Event()
        self.handled = 0
        self.last_status = ""
        self.pause_until = 0.0
        # Set once what the consumer held when we started has been handled (a message saying nothing is
        # pending behind it, an empty answer or an idle heartbeat): `_apply`'s safety head start.
        self.caught_up = asyncio.Event()

    async def start(self) -> None:
        nc = self.owner.conn(self.lane)
        self.inbox = nc.new_inbox()
        self.sub = await nc.subscribe(self.inbox, cb=self._on_msg, pending_msgs_limit=200_000)
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        self.stopped = True
        self.wake.set()
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(BaseException):
                await self.task
        if self.sub is not None:
            with contextlib.suppress(Exception):
                await self.sub.unsubscribe()

    def reset_flow(self) -> None:
        """Forget what we think is outstanding: the next loop turn asks again."""
        self.outstanding = 0
        self.wake.set()

    async def _run(self) -> None:
        nc = self.owner.conn(self.lane)
        subject = f"$JS.API.CONSUMER.MSG.NEXT.{P.MQTT_STREAM}.{self.consumer}"
        req = json.dumps({"batch": self.BATCH, "expires": int(self.EXPIRES_S * 1e9),
                          "idle_heartbeat": int(self.HEARTBEAT_S * 1e9)}).encode()
        while not self.stopped:
            try:
                if time.monotonic() - self.last_seen > 3 * self.HEARTBEAT_S:
                    self.outstanding = 0  # no heartbeat: our requests died with a node or a leader
                    self.last_seen = time.monotonic()
                pause = self.pause_until - time.monotonic()
                if pause > 0:
                    await asyncio.sleep(pause)
                if self.outstanding <= self.BATCH // 2 and nc.is_connected:
                    await nc.publish(subject, req, reply=self.inbox)
                    self.outstanding += self.BATCH
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), self.HEARTBEAT_S)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # disconnected: nats-py reconnects; ask again then
                log.debug("pull %s: %s", self.consumer, e)
                self.outstanding = 0
                await asyncio.sleep(0.2)

    async def _on_msg(self, msg: Any) -> None:
        self.last_seen = time.monotonic()
        status = msg.headers.get("Status") if msg.headers else None
        if status:
            if status == "100":
                self.caught_up.set()  # idle: nothing was there to deliver
                return  # idle heartbeat (or flow control)
            if status in ("404", "408"):
                self.caught_up.set()  # request done: what it still had to give is no longer coming
                try:
                    left = int(msg.headers.get("Nats-Pending-Messages", self.BATCH))
                except ValueError:
                    left = self.BATCH
                self.outstanding = max(0, self.outstanding - left)
            else:  # 409 leadership change, 503 no leader yet…: ask again, after a pause
                if status != self.last_status:
                    log.info("consumer %s: %s %s", self.consumer, status, msg.headers.get("Description", ""))
                self.outstanding = 0
                self.pause_until = time.monotonic() + self.RETRY_S
            self.last_status = status
            self.wake.set()
            return
        self.last_status = ""
        self.outstanding -= 1
        if self.outstanding <= self.BATCH // 2:
            self.wake.set()
        if self.stopped or not self.owner.holds(self.part):
            return  # not ours any more: never acknowledged, the next owner gets it
        up = P.parse_subject(msg.subject)
        topic = up.topic if up is not None else msg.subject.replace(".", "/")
        self.owner.lane_received[LANE_OF[self.lane]] += 1
        self.handled += 1
        try:
            self.handler(topic, msg.data, time.time())
            self.to_ack.append(msg.reply)
        except Exception as e:
            delivered = _meta(msg, "num_delivered")
            if self.owner.on_failure(topic, msg.data, delivered, e):
                self.to_ack.append(msg.reply)  # set aside (`on_failure`): acknowledged, not delivered again
            else:  # not handled (a store unreachable): never acknowledged, delivered again
                log.exception("%s: handling %s failed (delivery %s); it comes again after the ack wait",
                              self.consumer, topic, delivered)
        if not self.caught_up.is_set() and self.lane == P.SAFETY and _meta(msg, "num_pending") == 0:
            self.caught_up.set()
        if self.lane == P.BULK and self.handled % self.YIELD_EVERY == 0:
            # nats-py hands a subscription's queued messages to us back to back, without giving the loop
            # away: a telemetry backlog (a takeover's first pulls) would hold the safety lanes' events
            # until the whole batch is through (up to ~1 s under load). Let them in every few messages.
            await asyncio.sleep(0)


class JetStreamIngestClient(BaseIngestClient):
    """Same interface as the MQTT ingest clients (`start`, `stop`, `connected`, lanes, `durable`);
    `protocol` is 0 (not MQTT). Without `durable` a message is acknowledged once the handler returned."""

    SAFETY_HEAD_START_S = 1.0  # `_head_start`'s bound: telemetry of new partitions waits no longer

    def __init__(
        self,
        url: str,
        handler: Callable[[str, bytes, float], object],
        client_id: str,
        *,
        safety_handler: Callable[[str, bytes, float], object] | None = None,
        partitions: int = P.DEFAULT_PARTITIONS,
        owned: Iterable[int] | None = None,
        account: BrokerAccount | None = None,
        durable: Durable | None = None,
        ack_interval: float = 0.02,
        replicas: int = 3,
        max_age_s: float = S.MAX_AGE_S,
        max_bytes: int = S.MAX_BYTES,
    ) -> None:
        super().__init__(url, handler, client_id, "nats", None, "+", lanes=True, safety_handler=safety_handler,
                         durable=durable)
        self.servers = parse_servers(url)
        self.account = account  # the cloud's own user on the nodes (cloud/broker_account.py), if they ask for one
        self.partitions = partitions
        self.ack_interval = ack_interval
        self.replicas = replicas
        self.max_age_s, self.max_bytes = max_age_s, max_bytes  # the stream's limits (cloud/cluster/stream.py)
        self._want: frozenset[int] = frozenset(range(partitions) if owned is None else owned)
        self._held: frozenset[int] = frozenset()
        self.nc: Any = None  # the bulk lane's connection (and the stream's set-up, gateway health)
        self.nc_safety: Any = None  # the safety lane's own connection (module docstring)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pullers: dict[tuple[int, str], _Puller] = {}
        self._draining: list[_Puller] = []  # stopped; their last acks still to send
        # The lease fence (cloud/cluster/leases.py): once it says no, nothing more is handled.
        self.valid: Callable[[], bool] = lambda: True
        # Run (in a worker thread) between new partitions' safety head start and their first telemetry
        # pull: the state only telemetry needs is loaded there (cloud/cluster/replica.py).
        self.before_bulk: Callable[[frozenset[int]], None] | None = None
        self._gw_health: dict[int, Any] = {}
        self._changed: asyncio.Event | None = None
        self._stopping = False
        self._ready = threading.Event()
        self.last_error = ""
        # Asked when a handler raised on a message delivered `n` times (JetStream's count; None: unknown):
        # True if it was set aside instead (the ingest service's dead letters, cloud/ingest/poison.py), then
        # it is acknowledged like a handled one; False leaves it unacknowledged, delivered again.
        self.on_failure: Callable[[str, bytes, int | None, Exception], bool] = lambda *_: False

    def conn(self, lane: str) -> Any:
        """The NATS connection a partition lane (P.SAFETY / P.BULK) pulls and acknowledges on."""
        return self.nc_safety if lane == P.SAFETY and self.nc_safety is not None else self.nc

    # ------------------------------------------------------------------ ownership
    def holds(self, part: int) -> bool:
        return part in self._held and self.valid()

    def held(self) -> frozenset[int]:
        return self._held

    def set_partitions(self, parts: Iterable[int], wait: float = 0.0) -> None:
        """Consume exactly these partitions from now on (thread-safe); waits until done if `wait`."""
        self._want = frozenset(parts)
        if self._loop is not None and self._changed is not None:
            self._loop.call_soon_threadsafe(self._changed.set)
        if wait:
            deadline = time.monotonic() + wait
            while self._held != self._want and time.monotonic() < deadline:
                time.sleep(0.01)

    def drained(self, parts: Iterable[int]) -> bool:
        """These partitions are no longer read, and everything handled on them has been acknowledged
        (a clean hand-over: only then may another replica take them)."""
        want = set(parts)
        if want & self._held:
            return False  # still read: the loop has not stopped their pullers yet
        return all(
            not p.to_ack and not p.acking
            for p in [*self._pullers.values(), *self._draining]
            if p.part in want
        )

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="ingest-nats", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._main(), self._loop)

    async def _main(self) -> None:
        import nats

        self._changed = asyncio.Event()

        def callbacks(lane: str) -> dict[str, Any]:
            """A connection's callbacks: its lane goes down and up with it."""

            async def disconnected() -> None:
                self._lane_down(lane)

            async def reconnected() -> None:
                nc = self.nc_safety if lane == SAFETY else self.nc
                log.info("NATS ingest (%s lane) reconnected to %s", lane, nc.connected_url.netloc if nc else "?")
                # deliveries in flight to us while away are lost to us: they come again after the ack wait
                for p in self._pullers.values():
                    if LANE_OF[p.lane] == lane:
                        p.reset_flow()
                self._lane_up(lane)

            return {"disconnected_cb": disconnected, "reconnected_cb": reconnected}

        async def error(e: Exception) -> None:
            self.last_error = str(e)
            if not self._stopping:
                log.debug("NATS ingest: %s", e)

        async def connect(lane: str) -> Any:
            return await nats.connect(
                servers=self.servers, name=self.lane_client_id(lane), connect_timeout=2, ping_interval=2,
                max_outstanding_pings=3, reconnect_time_wait=0.5, max_reconnect_attempts=-1,
                error_cb=error, user=self.account.username if self.account else None,
                password=self.account.password if self.account else None, **callbacks(lane),
            )

        delay = 0.2
        while not self._stopping:
            try:
                self.nc = await connect(MAIN)
                self.nc_safety = await connect(SAFETY)
                await self._ensure()
                break
            except Exception as e:
                self.last_error = str(e)
                log.warning("cannot set up NATS ingest on %s: %s; retrying", self.url, e)
                for nc in (self.nc, self.nc_safety):
                    if nc is not None:
                        with contextlib.suppress(Exception):
                            await nc.close()
                self.nc = self.nc_safety = None
                await asyncio.sleep(delay)
                delay = min(5.0, delay * 2)
        if self._stopping:
            return
        for lane in self.lanes:
            self._lane_up(lane)
        self._ready.set()
        asyncio.get_running_loop().create_task(self._acker())
        while not self._stopping:
            try:
                await self._apply()
            except Exception:
                log.exception("NATS ingest: moving partitions failed; retrying")
                await asyncio.sleep(0.5)
                continue
            self._changed.clear()
            if self._held != self._want:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), 1.0)

    async def _ensure(self) -> None:
        """The MQTT layer's stream and our consumers, created if missing (idempotent). The stream keeps
        messages by age and size (limits retention, cloud/cluster/stream.py): one nats-server created
        with interest retention is moved to that."""
        from nats.js.api import AckPolicy, ConsumerConfig

        js = self.nc.jetstream(timeout=10)
        api = f"$JS.API.STREAM.%s.{P.MQTT_STREAM}"
        info = await self._api(api % "INFO", {})
        if "error" in info:
            if info["error"].get("err_code") != 10059:  # stream not found
                raise RuntimeError(f"stream info of {P.MQTT_STREAM}: {info['error']}")
            cfg = {"name": P.MQTT_STREAM, "subjects": [P.MQTT_STREAM_PREFIX + ">"], "storage": "file",
                   "num_replicas": self.replicas, "allow_msg_ttl": True, **S.wanted(self.max_age_s, self.max_bytes)}
            created = await self._api(api % "CREATE", cfg)
            if "error" in created and created["error"].get("err_code") != 10058:  # lost a creation race: fine
                raise RuntimeError(f"cannot create {P.MQTT_STREAM}: {created['error']}")
            info = await self._api(api % "INFO", {})
        new = S.update(info.get("config", {}), self.max_age_s, self.max_bytes)
        if new is not None:
            r = await self._api(api % "UPDATE", new)
            if "error" in r:
                raise RuntimeError(f"cannot move {P.MQTT_STREAM} to limits retention: {r['error']}")
            log.warning("stream %s moved from %s retention to limits (max_age %ss, max_bytes %s)", P.MQTT_STREAM,
                        info.get("config", {}).get("retention"), self.max_age_s, self.max_bytes)
        existing: dict[str, ConsumerConfig | None] = {
            ci.name: ci.config for ci in await js.consumers_info(P.MQTT_STREAM)}
        for part in range(self.partitions):
            for lane in (P.SAFETY, P.BULK):
                name = P.consumer_name(part, lane)
                ccfg = existing.get(name)
                if ccfg is None:
                    ccfg = ConsumerConfig(
                        durable_name=name, filter_subjects=P.lane_filters(part, lane), ack_policy=AckPolicy.EXPLICIT,
                        ack_wait=ACK_WAIT_S, max_ack_pending=20_000, max_waiting=64, num_replicas=self.replicas,
                        description="shelterwatch uplink partition (cloud/ingest/jetstream.py)")
                elif ccfg.ack_wait != ACK_WAIT_S or set(ccfg.filter_subjects or ()) != set(P.lane_filters(part, lane)):
                    # made by an earlier version (ack wait 30 s; no config answers in the safety lane): an
                    # update keeps its state (delivered and acknowledged positions)
                    ccfg.ack_wait = ACK_WAIT_S
                    ccfg.filter_subjects = P.lane_filters(part, lane)
                    ccfg.filter_subject = None
                else:
                    continue
                await js.add_consumer(P.MQTT_STREAM, ccfg)

    async def _api(self, subject: str, body: dict[str, Any]) -> dict[str, Any]:
        """One JetStream API request, raw JSON both ways (the stream config round-trips exactly)."""
        r = await self.nc.request(subject, json.dumps(body).encode(), timeout=10)
        return dict(json.loads(r.data or b"{}"))

    async def _apply(self) -> None:
        want, held = self._want, self._held
        for part in sorted(held - want):  # stop first: never two owners' worth of pulls from us
            stopping = [p for lane in (P.SAFETY, P.BULK) if (p := self._pullers.pop((part, lane), None)) is not None]
            for p in stopping:
                p.stopped = True  # handles nothing more from here on
                self._draining.append(p)  # `drained` waits for its last acks
            self._held = self._held - {part}
            for p in stopping:
                await p.stop()
            sub = self._gw_health.pop(part, None)
            if sub is not None:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
        new = sorted(want - held)
        if not new:
            return
        # Every partition's safety lane first: a takeover's alarms do not wait behind its telemetry backlog.
        self._held = self._held | frozenset(new)
        safety = []
        for part in new:
            p = _Puller(self, part, P.SAFETY)
            await p.start()
            self._pullers[(part, P.SAFETY)] = p
            safety.append(p)
        await self._head_start(safety)
        if self.before_bulk is not None:
            try:
                await asyncio.get_running_loop().run_in_executor(None, self.before_bulk, frozenset(new))
            except Exception:  # what it loads starts afresh; the telemetry is read regardless
                log.exception("preparing partitions %s for their telemetry failed", new)
        for part in new:
            p = _Puller(self, part, P.BULK)
            await p.start()
            self._pullers[(part, P.BULK)] = p
        for part in new:
            self._gw_health[part] = await self.nc.subscribe(
                P.gateway_health_subject(part), cb=self._on_gateway_health)
        log.info("partitions %s read from now on", new)

    async def _head_start(self, safety: list[_Puller]) -> None:
        """Wait (at most SAFETY_HEAD_START_S) until the new safety lanes have handled what their
        consumers held, before the same partitions' telemetry backlog is pulled.

        Taking a dead replica's partitions over, the survivor pulls ~6 s of their telemetry at once; in
        the same loop (and over the same cores) that backlog delayed the events of the outage by up to
        1.7 s even on their own connection (bench/cluster.py at 2,000 msg/s). Safety lanes hold few
        messages, so the head start costs one round trip; the telemetry waits in the stream, durable."""
        if not safety:
            return
        # asked on the safety connection: the bulk one may be reading a telemetry backlog
        js = self.conn(P.SAFETY).jetstream(timeout=self.SAFETY_HEAD_START_S)

        async def ready(p: _Puller) -> None:
            with contextlib.suppress(Exception):  # no answer: the puller's own signals decide
                ci = await js.consumer_info(P.MQTT_STREAM, p.consumer)
                if not ci.num_pending and not ci.num_ack_pending:
                    p.caught_up.set()
            await p.caught_up.wait()

        # One deadline for the questions and the wait together: asked one after the other they could
        # hold the telemetry back twice as long (seen 1.5-2 s on bench/cluster.py's takeovers).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(ready(p) for p in safety)), self.SAFETY_HEAD_START_S)

    async def _on_gateway_health(self, msg: Any) -> None:
        if msg.headers and msg.headers.get(P.MQTT_QOS_HEADER, "0") != "0":
            return  # QoS 1: stored, and read through the bulk consumer
        up = P.parse_subject(msg.subject)
        if up is None or up.partition not in self._held:
            return
        self.lane_received[MAIN] += 1
        self.handlers[MAIN](up.topic, msg.data, time.time())

    async def _acker(self) -> None:
        """Acknowledge what each partition lane handled once it is durable (every `ack_interval`)."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.ack_interval)
            self._draining = [p for p in self._draining if p.to_ack or p.acking]
            for p in [*self._pullers.values(), *self._draining]:
                if not p.to_ack:
                    continue
                replies, p.to_ack = p.to_ack, []
                p.acking += 1
                if self.durable is None:
                    await self._ack(p, replies)
                else:  # on the handlers' thread, after their calls: the durability point's contract
                    self.durable.after(partial(self._ack_from, loop, p, replies))

    def _ack_from(self, loop: asyncio.AbstractEventLoop, p: _Puller, replies: list[str]) -> None:
        """The durability point's callback (any thread): hand the acks to our loop."""
        loop.call_soon_threadsafe(self._ack_soon, p, replies)

    def _ack_soon(self, p: _Puller, replies: list[str]) -> None:
        asyncio.get_running_loop().create_task(self._ack(p, replies))

    async def _ack(self, p: _Puller, replies: list[str]) -> None:
        # Acknowledged even when the partition has moved on meanwhile: it is durable, so the next owner
        # need not have it again.
        try:
            nc = self.conn(p.lane)
            for r in replies:
                await nc.publish(r, b"+ACK")
        except Exception as e:  # not acknowledged: delivered again, and dedupe drops it
            log.debug("ack on %s failed: %s", p.consumer, e)
        finally:
            p.acking -= 1

    def publish_plain(self, topic: str, payload: bytes) -> bool:
        """A plain NATS publish of an MQTT topic (any thread): the nodes hand it to MQTT subscribers at
        QoS 0. False when not connected (nothing sent)."""
        loop, nc = self._loop, self.nc
        if loop is None or nc is None or not nc.is_connected:
            return False
        subject = topic.replace("/", ".")
        loop.call_soon_threadsafe(lambda: loop.create_task(nc.publish(subject, payload)))
        return True

    def wait_connected(self, timeout: float = 10.0) -> bool:
        return self._ready.wait(timeout) and self.connected.wait(timeout)

    def stop(self) -> None:
        self._stopping = True
        loop = self._loop
        if loop is None:
            return

        async def close() -> None:
            # handle nothing new, then the last acks: what is durable should not come again
            for p in self._pullers.values():
                p.stopped = True
            deadline = time.monotonic() + 5
            left = [*self._pullers.values(), *self._draining]
            while any(p.to_ack or p.acking for p in left) and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            conns = [nc for nc in (self.nc_safety, self.nc) if nc is not None]
            for nc in conns:
                with contextlib.suppress(Exception):
                    await nc.flush(2)
            for p in list(self._pullers.values()):
                await p.stop()
            for nc in conns:
                with contextlib.suppress(Exception):
                    await nc.drain()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(close(), loop).result(15)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread:
            self._thread.join(5)
        self._loop = None
