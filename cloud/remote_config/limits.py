"""Sends each gateway the site's overrides of its devices' alarm limits (`limits`, docs/wire.md) and
sends them again when they change, after the cloud reconnects, or (on a cluster, where nothing is
retained) after the gateway's birth. Driven by the remote-config service's loop, over its connection.

Why here: the message rides the same downlink as a desired config (retained on one broker; stored in
the cluster's stream for the gateway's session), and on a cluster only the owner of the gateway's
partition sends it, like everything else about that gateway.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import msgspec

from device_profiles import wire

log = logging.getLogger(__name__)

GatewayLimits = dict[str, list[wire.LimitOverride]]  # device id → overrides
Publish = Callable[[str, wire.Limits], bool]  # (topic, message) → sent?


class LimitsSender:
    def __init__(self, compute: Callable[[], dict[tuple[str, str], GatewayLimits]], publish: Publish,
                 owns: Callable[[str, str], bool]) -> None:
        self.compute = compute  # every registered gateway's overrides (cloud/alarms/edge_limits.py)
        self.publish = publish
        self.owns = owns
        self._sent: dict[tuple[str, str], bytes] = {}  # what each gateway was last sent (its devices, encoded)
        self._lock = threading.Lock()

    def forget(self, site: str | None = None, gateway: str | None = None) -> None:
        """Send again at the next tick: one gateway's (a birth on a cluster) or all (a new connection)."""
        with self._lock:
            if site is None:
                self._sent.clear()
            else:
                self._sent.pop((site, gateway or ""), None)

    def tick(self) -> int:
        """Send what changed or was forgotten; returns how many were sent."""
        n = 0
        for (site, gw), devices in sorted(self.compute().items()):
            if not self.owns(site, gw):
                continue
            body = msgspec.json.encode(devices)
            with self._lock:
                if self._sent.get((site, gw)) == body:
                    continue
            if self.publish(wire.config_topic(site, gw, wire.ConfigKind.LIMITS), wire.Limits(ts=wire.now(),
                                                                                               devices=devices)):
                with self._lock:
                    self._sent[(site, gw)] = body
                n += 1
                log.info("%s/%s: alarm limits sent (%d override(s))", site, gw, sum(map(len, devices.values())))
        return n
