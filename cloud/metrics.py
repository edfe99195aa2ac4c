"""Prometheus metrics of the ingester, read from its stats at scrape time.

The hot path only bumps plain integers; a custom collector turns them into metrics when
/metrics is scraped, so metrics cost nothing per message.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector


def _by_reason(name: str, doc: str, counts: dict[str, int]) -> CounterMetricFamily:
    fam = CounterMetricFamily(name, doc, labels=["reason"])
    for reason, n in sorted(counts.items()):
        fam.add_metric([reason], n)
    return fam


class IngestCollector(Collector):
    def __init__(self, stats: Callable[[], dict[str, Any]]) -> None:
        self.stats = stats

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        s = self.stats()
        p = "shelterwatch_ingest_"
        yield CounterMetricFamily(p + "received", "MQTT messages received", value=s["received"])
        yield CounterMetricFamily(
            p + "accepted", "messages accepted (valid, registered, new)", value=s["accepted"]
        )
        yield CounterMetricFamily(
            p + "duplicates", "replayed messages dropped by sequence number", value=s["duplicates"]
        )
        yield _by_reason(p + "dead_letters", "messages refused, by reason", s["dead_letters"])
        yield CounterMetricFamily(
            p + "points_stored", "points the time-series store accepted", value=s["written"]
        )
        yield CounterMetricFamily(
            p + "store_retries", "failed store writes (retried later)", value=s["retries"]
        )
        yield CounterMetricFamily(
            p + "points_rejected", "points the store refused as bad data", value=s["rejected"]
        )
        yield GaugeMetricFamily(
            p + "points_pending", "points not yet stored (memory + disk spool)", value=s["pending"]
        )
        yield GaugeMetricFamily(p + "spool_batches", "batches waiting on disk", value=s["spool_batches"])
        yield GaugeMetricFamily(
            p + "safety_queue_depth", "messages waiting for the alarm engine", value=s["safety_queue"]
        )
        yield GaugeMetricFamily(
            p + "store_lag_seconds", "arrival to stored, last batch", value=s["store_lag"]
        )
        yield GaugeMetricFamily(
            p + "store_behind_seconds",
            "how long the oldest point not yet in the store has waited (memory or disk spool); 0 = up to date",
            value=s.get("store_behind", 0.0),
        )
        yield GaugeMetricFamily(
            p + "acks_waiting", "broker acknowledgements held until their messages are durable",
            value=s.get("acks_waiting", 0),
        )
        yield GaugeMetricFamily(
            p + "ack_wait_seconds", "how long the oldest held acknowledgement has waited",
            value=s.get("ack_wait", 0.0),
        )
        yield GaugeMetricFamily(
            p + "edge_lag_seconds", "edge timestamp to arrival, last telemetry", value=s["edge_lag"]
        )
        yield GaugeMetricFamily(
            p + "sequence_gaps", "open gaps in devices' sequences (may still backfill)", value=s["seq_gaps"]
        )
        yield GaugeMetricFamily(
            p + "sequence_missing", "sequence numbers in those gaps", value=s["missing_seqs"]
        )
        yield CounterMetricFamily(
            p + "sequence_lost", "missing numbers given up (gap bound reached)", value=s["seq_lost"]
        )
        yield CounterMetricFamily(
            p + "rebased", "messages whose ts was outside the time policy (stored at receive time)",
            value=s["rebased"],
        )
        yield _by_reason(p + "points_refused", "reported values dropped, by reason", s["points_refused"])
        yield GaugeMetricFamily(
            p + "connected", "1 when every lane is connected to the broker", value=1 if s["connected"] else 0
        )
        up = set(s.get("connected_lanes", []))
        lane_up = GaugeMetricFamily(p + "lane_connected", "1 when this MQTT lane is subscribed", labels=["lane"])
        lane_rx = CounterMetricFamily(p + "lane_received", "MQTT messages received, by lane", labels=["lane"])
        for lane, n in sorted(s.get("lane_received", {}).items()):
            lane_up.add_metric([lane], 1 if lane in up else 0)
            lane_rx.add_metric([lane], n)
        yield lane_up
        yield lane_rx


def make_registry(stats: Callable[[], dict[str, Any]]) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(IngestCollector(stats))
    return reg


def serve(registry: CollectorRegistry, port: int, addr: str = "127.0.0.1") -> Any:
    """Serve /metrics; returns the HTTP server (call .shutdown() to stop)."""
    from prometheus_client import start_http_server

    server, _thread = start_http_server(port, addr=addr, registry=registry)
    return server
