"""Sending pushes: apprise on a worker pool, retries, fallback to the next channel, rate gates.

- apprise sleeps up to `request_rate_per_sec` (5.5 s by default, NotifyBase) between two sends
  to the same plugin instance. An alarm must not wait for that, so every plugin instance we build
  gets `request_rate_per_sec = 0` (URLBase.throttle returns at once when it is <= 0); channel
  limits are enforced by our own `RateGate` instead, which groups rather than delays.
- Sends run on a thread pool: one slow SMTP server never holds up a webhook.
- A failed send is retried `retries` times, then the person's next channel is tried. Every
  attempt is written to the notify log.
- A job's `done` is told once how it ended (True: a channel took it; False: every one failed), so
  its intent in the outbox is settled (cloud/notify/outbox.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from cloud.notify.config import Channel

log = logging.getLogger(__name__)


class SendError(RuntimeError):
    pass


class Sender(Protocol):
    def send(self, url: str, title: str, body: str) -> None:
        """Deliver or raise SendError."""


class AppriseSender:
    """One cached apprise plugin per URL, with apprise's own throttle switched off."""

    def __init__(self) -> None:
        self._plugins: dict[str, object] = {}
        self._lock = threading.Lock()

    def warm(self, urls: list[str]) -> None:
        """Import apprise and build the plugins now: the first fire alarm must not pay for it
        (importing apprise and its plugins takes a few hundred ms)."""
        for u in urls:
            try:
                self._plugin(u)
            except SendError as e:
                log.error("%s", e)

    def _plugin(self, url: str) -> object:
        with self._lock:
            p = self._plugins.get(url)
            if p is None:
                import apprise

                p = apprise.Apprise.instantiate(url)
                if p is None:
                    raise SendError(f"apprise cannot use URL {redact(url)}")
                p.request_rate_per_sec = 0  # apprise throttle off (see module doc)
                self._plugins[url] = p
            return p

    def send(self, url: str, title: str, body: str) -> None:
        p = self._plugin(url)
        ok = p.notify(body=body, title=title)  # type: ignore[attr-defined]
        if not ok:
            raise SendError(f"apprise reported failure for {redact(url)}")


def redact(url: str) -> str:
    """Channel URLs hold tokens and passwords: logs keep the scheme and host only."""
    scheme, _, rest = url.partition("://")
    if scheme.lower() not in _HOST_SCHEMES:  # wecombot://KEY, tgram://TOKEN...: the host is the secret
        return f"{scheme}://***"
    host = rest.split("?", 1)[0].split("/", 1)[0].rsplit("@", 1)[-1]
    return f"{scheme}://{host}/…"


_HOST_SCHEMES = {"json", "jsons", "xml", "xmls", "form", "forms", "mailto", "mailtos", "ntfy", "ntfys"}


def _secret_parts(url: str) -> set[str]:
    """The pieces of a channel URL that may be secret: user and password, the host of schemes
    whose host is a token (wecombot://KEY), path segments (ntfy topics, webhook tokens) and query
    values. Query keys and the host of a host-addressed scheme are not."""
    scheme, _, rest = url.partition("://")
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    user, _, host = netloc.rpartition("@")
    parts = set(user.split(":")) | set(path.split("/"))
    parts |= {kv.partition("=")[2] for kv in query.split("&")}
    if scheme.lower() not in _HOST_SCHEMES:
        parts.add(host)
    return {x for x in parts if len(x) >= 4}


def scrub(text: str, urls: list[str]) -> str:
    """An error message may quote a channel URL or a piece of it (a token, a password, a topic):
    the URL becomes its redacted form and every secret piece `***`, as `redact` keeps only the
    scheme and, for host-addressed schemes, the host."""
    for url in sorted(urls, key=len, reverse=True):
        text = text.replace(url, redact(url))
        for part in sorted(_secret_parts(url), key=len, reverse=True):
            text = text.replace(part, "***")
    return text


class RateGate:
    """Per-target limit: at most `limit` sends in any 60 s, and sends closer than `group_s` are
    grouped. `offer(now)` → None: send now (recorded); otherwise the time when the grouped
    message may go (the caller queues and calls `taken(t)` when it sends)."""

    def __init__(self, limit_per_min: int, group_s: float = 1.0) -> None:
        self.limit = limit_per_min
        self.group_s = group_s
        self.sent: deque[float] = deque()

    def _trim(self, now: float) -> None:
        while self.sent and now - self.sent[0] >= 60.0:
            self.sent.popleft()

    def next_slot(self, now: float) -> float:
        self._trim(now)
        t = now
        if self.sent:
            t = max(t, self.sent[-1] + self.group_s)
        if len(self.sent) >= self.limit:
            t = max(t, self.sent[-self.limit] + 60.0)
        return t

    def offer(self, now: float) -> float | None:
        slot = self.next_slot(now)
        if slot <= now:
            self.sent.append(now)
            return None
        return slot

    def taken(self, now: float) -> None:
        self.sent.append(now)


@dataclass
class Job:
    alarm_id: int
    person: str
    channels: list[Channel]
    title: str
    body: str
    purpose: str  # alarm / reminder / resolution
    origin: float  # when the triggering message entered the engine (time.time())
    retries: int = 2
    retry_delay_s: float = 1.0
    channel_index: int = 0
    done: Callable[[bool], None] | None = None  # told once: sent (True) or every channel failed


def _settle(job: Job, ok: bool) -> None:
    if job.done is None:
        return
    try:
        job.done(ok)
    except Exception:  # the outbox is bookkeeping: it must never stop the other sends
        log.exception("alarm %s: recording how the push to %s ended failed", job.alarm_id, job.person)


@dataclass
class _Pending:
    jobs: list[Job] = field(default_factory=list)
    timer: threading.Timer | None = None


AttemptLog = Callable[[int, float, str, str, str, int, bool, str], None]


class Dispatcher:
    def __init__(self, sender: Sender, log_attempt: AttemptLog, workers: int = 8) -> None:
        self.sender = sender
        self.log_attempt = log_attempt
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="notify")
        self._gates: dict[str, RateGate] = {}
        self._pending: dict[str, _Pending] = {}
        self._lock = threading.Lock()
        self.dispatch_latency: deque[float] = deque(maxlen=100_000)  # origin → first send of an alarm starts
        self.delivered_latency: deque[float] = deque(maxlen=100_000)  # origin → send returned ok

    def submit(self, job: Job) -> None:
        self._route(job)

    def warm(self, urls: list[str]) -> None:
        warm = getattr(self.sender, "warm", None)
        if warm is not None:
            warm(urls)

    def close(self) -> None:
        """Send what is still grouped (nothing is dropped at shutdown), then wait for the pool."""
        with self._lock:
            urls = [u for u, p in self._pending.items() if p.jobs]
            for p in self._pending.values():
                if p.timer:
                    p.timer.cancel()
        for u in urls:
            self._flush(u)
        self.pool.shutdown(wait=True, cancel_futures=False)

    def _route(self, job: Job) -> None:
        if job.channel_index >= len(job.channels):
            log.error("alarm %s: every channel of %s failed", job.alarm_id, job.person)
            _settle(job, False)
            return
        ch = job.channels[job.channel_index]
        limit = ch.effective_limit
        if limit is None:
            self.pool.submit(self._run, job)
            return
        with self._lock:
            gate = self._gates.setdefault(ch.url, RateGate(limit))
            pend = self._pending.setdefault(ch.url, _Pending())
            now = time.time()
            slot = None if pend.jobs else gate.offer(now)
            if slot is None and not pend.jobs:
                self.pool.submit(self._run, job)
                return
            pend.jobs.append(job)
            if pend.timer is None:
                at = slot if slot is not None else gate.next_slot(now)
                pend.timer = threading.Timer(max(0.0, at - now), self._flush, args=(ch.url,))
                pend.timer.daemon = True
                pend.timer.start()

    def _flush(self, url: str) -> None:
        with self._lock:
            pend = self._pending[url]
            jobs, pend.jobs, pend.timer = pend.jobs, [], None
            self._gates[url].taken(time.time())
        if not jobs:
            return
        if len(jobs) == 1:
            self.pool.submit(self._run, jobs[0])
            return
        title = f"{len(jobs)} 条报警 alarms: " + "; ".join(j.title for j in jobs[:3])
        body = "\n\n".join(f"— {j.title}\n{j.body}" for j in jobs)
        self.pool.submit(self._run_group, url, jobs, title, body)

    def _attempts(self, job: Job, url: str, title: str, body: str, alarm_ids: list[int]) -> bool:
        first = True
        for attempt in range(1, job.retries + 2):
            t = time.time()
            if first and job.purpose == "alarm":
                self.dispatch_latency.append(t - job.origin)
                first = False
            try:
                self.sender.send(url, title, body)
            except Exception as e:
                for aid in alarm_ids:
                    self.log_attempt(aid, t, job.person, redact(url), job.purpose, attempt, False,
                                     scrub(str(e), [url]))
                if attempt <= job.retries:
                    time.sleep(job.retry_delay_s)
                continue
            done = time.time()
            for aid in alarm_ids:
                self.log_attempt(aid, t, job.person, redact(url), job.purpose, attempt, True, "")
                if job.purpose == "alarm":
                    self.delivered_latency.append(done - job.origin)
            return True
        return False

    def _run(self, job: Job) -> None:
        url = job.channels[job.channel_index].url
        try:
            ok = self._attempts(job, url, job.title, job.body, [job.alarm_id])
        except Exception:  # the attempt log failed (database away): nothing else will tell the job's end
            log.exception("alarm %s: the push to %s could not be recorded", job.alarm_id, job.person)
            _settle(job, False)
            return
        if ok:
            _settle(job, True)
        else:
            job.channel_index += 1
            self._route(job)

    def _run_group(self, url: str, jobs: list[Job], title: str, body: str) -> None:
        try:
            ok = self._attempts(jobs[0], url, title, body, [j.alarm_id for j in jobs])
        except Exception:
            log.exception("alarms %s: the grouped push could not be recorded", [j.alarm_id for j in jobs])
            for j in jobs:
                _settle(j, False)
            return
        for j in jobs:
            if ok:
                _settle(j, True)
            else:
                j.channel_index += 1
                self._route(j)
