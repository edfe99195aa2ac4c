"""Web/API cost per request, against a reference served by the same uvicorn in the same run.

The app runs on uvicorn (one process, as deployed for one estate) with a registry of 8 devices
carrying realistic last values (34 charger ports, 48 + 64 bays) and a running alarm engine with
20 alarms. Each endpoint is hit for `--seconds` by `--clients` concurrent keep-alive clients.

Reference: `GET /static/app.css` — the same server, middleware and connection handling, no auth,
no database, no template: what an answer costs at the floor. The ratio says what our work adds.
Also: one login (argon2id verify + session row) — deliberately slow, which is what makes guessing
passwords expensive.

Run:  .venv/bin/python bench/web_api.py [--seconds 4] [--clients 4]
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx


def build(tmp: Path) -> tuple[Any, dict[str, str]]:
    from cloud.safety import SafetyMessage
    from device_profiles import wire
    from tests.fixtures.web import make_web_env, password_of, two_estates

    env = make_web_env(tmp, sites=two_estates())
    values: dict[tuple[str, str], tuple[dict[str, Any], float]] = {}
    now = time.time()
    chg: dict[str, Any] = {"main_relay": True, "smoke": False, "ambient_temp": 22.5}
    for n in range(1, 11):
        chg.update({f"port.{n}.state": "charging" if n % 2 else "idle", f"port.{n}.power": 180.0 * (n % 2),
                    f"port.{n}.connector_temp": 30.5, f"port.{n}.energy": 1.5 + n, f"port.{n}.enabled": True})
    values[("estate-a", "chg1")] = (chg, now)
    values[("estate-a", "hub1")] = ({f"bay.{n}.occupied": n % 3 == 0 for n in range(1, 49)}
                                    | {f"bay.{n}.battery": 3.1 for n in range(1, 49)}, now)
    values[("estate-a", "spk1")] = ({"waterflow": False, "pipe_pressure": 5.1}, now)
    env.registry.save_last_values(values)
    for i in range(20):
        msg = wire.Telemetry(ts=wire.now(), seq=i + 1, values={"port.1.connector_temp": 80.0 + i})
        env.engine.put(SafetyMessage("estate-a", "gw-a1", "chg1", wire.Kind.TELEMETRY, msg, time.time()))
    env.engine.drain(5)
    return env, {"password": password_of("mgr-a"), "token": env.tokens["mgr-a"]}


def _client(url: str, until: float, headers: dict[str, str] | None, cookies: dict[str, str] | None,
            out: Any) -> None:
    """One load client in its own process (spawned), so clients do not share the server's GIL."""
    lat: list[float] = []
    bad = 0
    with httpx.Client(headers=headers, cookies=cookies, timeout=30) as c:
        while time.time() < until:
            t = time.perf_counter()
            r = c.get(url)
            lat.append(time.perf_counter() - t)
            bad += r.status_code != 200
    out.put((lat, bad))


def hammer(url: str, seconds: float, clients: int, headers: dict[str, str] | None = None,
           cookies: dict[str, str] | None = None) -> tuple[float, float, float, int]:
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    start = time.time() + 1.5  # let the spawned clients import first
    until = start + seconds
    procs = [ctx.Process(target=_client_at, args=(url, start, until, headers, cookies, q)) for _ in range(clients)]
    for p in procs:
        p.start()
    results = [q.get(timeout=seconds + 60) for _ in procs]
    for p in procs:
        p.join(10)
    lat = sorted(x for r in results for x in r[0])
    errors = sum(r[1] for r in results)
    return len(lat) / seconds, statistics.median(lat) * 1000, lat[int(len(lat) * 0.99) - 1] * 1000, errors


def _client_at(url: str, start: float, until: float, headers: dict[str, str] | None,
               cookies: dict[str, str] | None, out: Any) -> None:
    time.sleep(max(0.0, start - time.time()))
    _client(url, until, headers, cookies, out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--clients", type=int, default=4)
    args = ap.parse_args()
    from tests.fixtures.web import serve

    with tempfile.TemporaryDirectory() as d:
        env, creds = build(Path(d))
        with serve(env.app) as base, httpx.Client(base_url=base) as c:
            page = c.get("/login").text
            tok = re.search(r'name="login_csrf" value="([^"]+)"', page)
            assert tok
            t = time.perf_counter()
            r = c.post("/login", data={"username": "mgr-a", "password": creds["password"],
                                       "login_csrf": tok.group(1)}, follow_redirects=False)
            login_ms = (time.perf_counter() - t) * 1000
            assert r.status_code == 303
            cookie = {"sw_session": c.cookies["sw_session"]}
            bearer = {"Authorization": f"Bearer {creds['token']}"}
            cases = [
                ("reference: GET /static/app.css", f"{base}/static/app.css", None, None),
                ("GET /api/v1/sites/estate-a/parking (public)", f"{base}/api/v1/sites/estate-a/parking", None, None),
                ("GET /api/v1/sites/estate-a/ports (token)", f"{base}/api/v1/sites/estate-a/ports", bearer, None),
                ("GET /api/v1/alarms (token)", f"{base}/api/v1/alarms", bearer, None),
                ("GET /frag/alarms (session, HTML)", f"{base}/frag/alarms", None, cookie),
                ("GET /frag/estate (session, HTML)", f"{base}/frag/estate", None, cookie),
            ]
            print(f"{args.clients} client processes, {args.seconds:.0f} s each, server: one uvicorn worker\n")
            print(f"{'endpoint':<46} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'vs ref':>7} {'errors':>6}")
            ref = None
            for name, url, h, ck in cases:
                rps, p50, p99, err = hammer(url, args.seconds, args.clients, h, ck)
                ref = ref or rps
                print(f"{name:<46} {rps:8.0f} {p50:8.1f} {p99:8.1f} {rps / ref:7.2f} {err:6d}")
            print(f"\none login (argon2id verify + session): {login_ms:.0f} ms")
        env.close()


if __name__ == "__main__":
    main()
