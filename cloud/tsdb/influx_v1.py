"""InfluxDB 1.x: line protocol POSTed to /write (1.x before 1.8 has no /api/v2/write).

Uses urllib3 (already installed with influxdb-client) for a pooled keep-alive connection.
"""

from __future__ import annotations

import base64
import urllib.parse

from cloud.tsdb.base import SinkError
from cloud.tsdb.lineproto import TsPoint, lines


class Influx1Sink:
    name = "influx1"

    def __init__(
        self,
        url: str,
        db: str,
        user: str | None = None,
        password: str | None = None,
        rp: str | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        import urllib3

        self.url, self.db = url.rstrip("/"), db
        params = {"db": db, "precision": "ms"}
        if rp:
            params["rp"] = rp
        self._write_url = f"{self.url}/write?{urllib.parse.urlencode(params)}"
        self._headers = {"Content-Type": "text/plain; charset=utf-8"}
        if user:
            token = base64.b64encode(f"{user}:{password or ''}".encode()).decode()
            self._headers["Authorization"] = f"Basic {token}"
        self._pool = urllib3.PoolManager(timeout=urllib3.Timeout(total=timeout_s), retries=False)

    def write(self, points: list[TsPoint]) -> None:
        if points:
            self.write_body(lines(points))

    def write_body(self, body: bytes) -> None:
        try:
            r = self._pool.request("POST", self._write_url, body=body, headers=self._headers)
        except Exception as e:
            raise SinkError(f"influx1 write: {type(e).__name__}: {e}") from None
        if r.status >= 300:
            retry = not (400 <= r.status < 500 and r.status not in (408, 429))
            raise SinkError(f"influx1 write: HTTP {r.status} {r.data[:300]!r}", retry=retry)

    def close(self) -> None:
        self._pool.clear()
