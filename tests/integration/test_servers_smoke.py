"""The server fixtures themselves: each real server starts, answers, and stops by PID."""

from __future__ import annotations

import subprocess
import urllib.request

import pytest

pytestmark = pytest.mark.integration


def test_mosquitto_round_trip(mosquitto):
    sub = subprocess.Popen(["mosquitto_sub", "-p", str(mosquitto.port), "-h", "127.0.0.1", "-t", "t/1", "-C", "1",
                            "-W", "10"], stdout=subprocess.PIPE)
    import time

    time.sleep(0.3)
    subprocess.run(["mosquitto_pub", "-p", str(mosquitto.port), "-h", "127.0.0.1", "-t", "t/1", "-m", "hi", "-q", "1"],
                   check=True)
    out, _ = sub.communicate(timeout=15)
    assert out.strip() == b"hi"
    pid = mosquitto.pid
    mosquitto.stop()
    assert mosquitto.proc is not None and mosquitto.proc.poll() is not None, f"mosquitto {pid} still running"


def test_victoriametrics_accepts_influx_line_protocol(victoriametrics):
    req = urllib.request.Request(f"{victoriametrics.url}/api/v2/write", data=b"probe,site=a v=1.5 1700000000000000000",
                                 method="POST")
    urllib.request.urlopen(req, timeout=10).read()
    rows = victoriametrics.export('{__name__="probe_v"}')
    assert rows and rows[0]["values"] == [1.5]


def test_influxdb1_influxql(influxdb1):
    req = urllib.request.Request(f"{influxdb1.url}/write?db=shelterwatch&precision=s",
                                 data=b"probe,site=a v=2.5 1700000000", method="POST")
    urllib.request.urlopen(req, timeout=10).read()
    res = influxdb1.query('SELECT "v" FROM "probe"')
    assert res["results"][0]["series"][0]["values"] == [[1700000000000, 2.5]]
