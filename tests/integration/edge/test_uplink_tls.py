"""The uplink over TLS with username/password against a real mosquitto (self-signed CA made here
with openssl), and a wrong password is refused without crashing anything."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from device_profiles import wire
from edge_agent.config import Tls
from edge_agent.config import Uplink as UplinkCfg
from edge_agent.outbox import New, Outbox
from edge_agent.uplink import Uplink
from tests.fixtures.servers import Mosquitto, free_port, need

pytestmark = pytest.mark.integration


def _certs(d: Path) -> None:
    def ossl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    ossl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-subj",
        "/CN=test-ca",
    )
    ossl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"
    )
    (d / "ext.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    ossl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    )


@pytest.fixture
def tls_broker(tmp_path: Path):  # type: ignore[no-untyped-def]
    d = tmp_path / "tls"
    d.mkdir()
    _certs(d)
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(d / "passwd"), "gw1", "s3cret"], check=True, capture_output=True
    )
    port = free_port()
    (d / "m.conf").write_text(
        f"user root\nlistener {port} 127.0.0.1\nallow_anonymous false\npassword_file {d}/passwd\n"
        f"cafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\n"
    )
    m = Mosquitto("mosquitto-tls", [need("mosquitto"), "-c", str(d / "m.conf")], port, d).start()
    yield m, d
    m.stop()


def _run(cfg: UplinkCfg, o: Outbox, seconds: float) -> Uplink:
    up = Uplink(cfg, "shelter-a", "gw1", o)
    up.start()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and (o.count or not up.connected):
        up.pump()
        time.sleep(0.02)
    return up


def test_tls_with_password_delivers_and_wrong_password_is_refused(tls_broker, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    m, d = tls_broker
    o = Outbox(tmp_path / "o.db")
    topic = wire.topic("shelter-a", "gw1", wire.Kind.TELEMETRY, "d1")
    o.put(New(topic, lambda seq: wire.encode(wire.Telemetry(ts=wire.now(), seq=seq, values={"x": 1})), "d1"))
    tls = Tls(ca_file=str(d / "ca.pem"))
    bad = _run(
        UplinkCfg(url=f"mqtts://127.0.0.1:{m.port}", username="gw1", password="wrong", tls=tls, client_id="bad"), o, 3
    )
    assert not bad.connected and o.count == 1  # refused: nothing lost
    bad.stop(graceful=False)
    good = _run(
        UplinkCfg(url=f"mqtts://127.0.0.1:{m.port}", username="gw1", password="s3cret", tls=tls, client_id="good"),
        o,
        10,
    )
    try:
        assert good.connected and o.count == 0, good.last_error
    finally:
        good.stop()
