"""InfluxDB v2 write API through influxdb-client (InfluxDB 2.x, 3.x, 1.8+; VictoriaMetrics).

Batches are handed over as prepared line protocol with the synchronous write API: measured here
that reaches 130-175 k points/s where `Point` objects cap near 30-37 k. Retries are ours (the
spool), not the client's, so that order and on-disk keeping are under one control.
"""

from __future__ import annotations

from typing import Any

from cloud.tsdb.base import SinkError
from cloud.tsdb.lineproto import TsPoint, lines


class Influx2Sink:
    name = "influx2"

    def __init__(self, url: str, org: str, bucket: str, token: str = "", timeout_ms: int = 10_000) -> None:
        from influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS

        self.url, self.org, self.bucket = url, org, bucket
        self._client = InfluxDBClient(
            url=url, token=token or "none", org=org, timeout=timeout_ms, retries=0, enable_gzip=False
        )
        self._write = self._client.write_api(write_options=SYNCHRONOUS)

    def write(self, points: list[TsPoint]) -> None:
        if not points:
            return
        body = lines(points)
        self.write_body(body)

    def write_body(self, body: bytes) -> None:
        from influxdb_client import WritePrecision
        from influxdb_client.rest import ApiException

        try:
            precision: Any = WritePrecision.MS  # the client's stubs type the constant as str
            self._write.write(bucket=self.bucket, org=self.org, record=body, write_precision=precision)
        except ApiException as e:
            status = int(getattr(e, "status", 0) or 0)
            # 4xx other than 408/429 is the store refusing the data: retrying cannot help.
            retry = not (400 <= status < 500 and status not in (408, 429))
            raise SinkError(f"influx2 write: HTTP {status} {str(e.body)[:300]}", retry=retry) from None
        except Exception as e:  # connection refused, timeout, DNS: the store is away
            raise SinkError(f"influx2 write: {type(e).__name__}: {e}") from None

    def close(self) -> None:
        self._client.close()
