"""What every time-series sink offers, and how a sink URL selects one.

URLs:
  sqlite:///path/to/ts.db                     embedded default
  influx2://host:8086?org=O&bucket=B&token=T  InfluxDB 2.x/3.x, 1.8+ (v2 compat), VictoriaMetrics
  influx2s://…                                the same over HTTPS
  influx1://host:8086/DB?user=U&password=P    InfluxDB 1.x /write (1.6+), InfluxQL readback
"""

from __future__ import annotations

import urllib.parse
from typing import Protocol

from cloud.tsdb.lineproto import TsPoint


class SinkError(Exception):
    """A write failed. `retry` False means the store refused the data itself (retrying cannot help)."""

    def __init__(self, msg: str, retry: bool = True) -> None:
        super().__init__(msg)
        self.retry = retry


class Sink(Protocol):
    name: str

    def write(self, points: list[TsPoint]) -> None:
        """Write one batch or raise SinkError. Must be idempotent for a repeated batch."""

    def close(self) -> None: ...


def open_sink(url: str) -> Sink:
    u = urllib.parse.urlsplit(url)
    q = dict(urllib.parse.parse_qsl(u.query))
    if u.scheme == "sqlite":
        from cloud.tsdb.sqlite import SqliteSink

        return SqliteSink(u.path if u.netloc == "" else f"{u.netloc}{u.path}")
    if u.scheme in ("influx2", "influx2s"):
        from cloud.tsdb.influx import Influx2Sink

        http = "https" if u.scheme == "influx2s" else "http"
        return Influx2Sink(
            f"{http}://{u.netloc}",
            org=q.get("org", "shelterwatch"),
            bucket=q.get("bucket", "shelterwatch"),
            token=q.get("token", ""),
        )
    if u.scheme in ("influx1", "influx1s"):
        from cloud.tsdb.influx_v1 import Influx1Sink

        http = "https" if u.scheme == "influx1s" else "http"
        host = u.hostname or "127.0.0.1"
        port = f":{u.port}" if u.port else ""
        return Influx1Sink(
            f"{http}://{host}{port}",
            db=u.path.strip("/") or "shelterwatch",
            user=u.username or q.get("user"),
            password=u.password or q.get("password"),
            rp=q.get("rp"),
        )
    raise ValueError(
        f"unknown time-series URL {url!r}: use sqlite:///path, influx2://host:port?bucket=…, "
        "or influx1://host:port/db"
    )
