"""A third-party Modbus master (mbpoll, libmodbus) reads every Modbus emulator over a pseudo-terminal
and over TCP, and the raw registers decode through the profile to what the physical model holds."""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

import pytest

from device_profiles.codec import decode
from device_profiles.loader import catalog
from device_profiles.model import DataType, Table
from simulators.site import BusSpec, DeviceSpec, SimSite, SiteSpec

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODBUS = sorted(p.id for p in catalog().values() if p.is_modbus)
TYPE = {Table.COIL: "0", Table.DISCRETE_INPUT: "1", Table.INPUT: "3:hex", Table.HOLDING: "4:hex"}
LINE = re.compile(r"^\[(\d+)\]:\s+(\S+)", re.M)


def every_profile_site() -> SiteSpec:
    devices = []
    for unit, pid in enumerate(MODBUS, start=1):
        devices.append(DeviceSpec(id=f"rtu-{pid}", profile=pid, bus="rs485", unit=unit))
        devices.append(DeviceSpec(id=f"tcp-{pid}", profile=pid, bus="lan", unit=unit))
    return SiteSpec(
        site="every",
        seed=5,
        buses=[BusSpec(id="rs485", kind="rtu", baud=19200, parity="E"), BusSpec(id="lan", kind="tcp")],
        devices=devices,
    )


def mbpoll(ep: dict[str, Any], table: Table, address: int, count: int) -> list[int]:
    exe = shutil.which("mbpoll")
    if not exe:
        pytest.fail("mbpoll is not installed: run scripts/setup.sh --test")
    args = [
        exe,
        "-0",
        "-1",
        "-o",
        "2",
        "-a",
        str(ep["unit"]),
        "-t",
        TYPE[table],
        "-r",
        str(address),
        "-c",
        str(count),
    ]
    if ep["transport"] == "modbus_rtu":
        parity = {"N": "none", "E": "even", "O": "odd"}[ep["parity"]]
        args += ["-m", "rtu", "-b", str(ep["baud"]), "-P", parity, "-s", str(ep["stop_bits"]), ep["serial_port"]]
    else:
        args += ["-m", "tcp", "-p", str(ep["tcp_port"]), ep["host"]]
    r = subprocess.run(args, capture_output=True, text=True, timeout=20)
    found = {int(a): int(v, 0) for a, v in LINE.findall(r.stdout)}
    assert len(found) == count, f"{args}\n{r.stdout}\n{r.stderr}"
    return [found[a] for a in range(address, address + count)]


def read_all(dev: Any, ep: dict[str, Any]) -> dict[Table, dict[int, int]]:
    """Every mapped address of every table, in chunks mbpoll accepts."""
    image: dict[Table, dict[int, int]] = {}
    for table, (lo, hi) in dev._window.items():
        image[table] = {}
        for start in range(lo, hi, 100):
            n = min(100, hi - start)
            image[table].update(zip(range(start, start + n), mbpoll(ep, table, start, n), strict=True))
    return image


@pytest.fixture(scope="module")
def site() -> Any:
    s = SimSite(every_profile_site())
    s.pause()  # frozen physics: what the model holds does not move while mbpoll reads
    s.start()
    for _ in range(3):  # some history first: charging currents, temperatures off ambient
        for d in s.devices.values():
            d.step(30.0)
    yield s
    s.stop()


@pytest.mark.parametrize("transport", ["rtu", "tcp"])
@pytest.mark.parametrize("profile_id", MODBUS)
def test_mbpoll_reads_decode_to_the_model(site: SimSite, profile_id: str, transport: str) -> None:
    dev = site.device(f"{transport}-{profile_id}")
    ep = site.endpoints()[f"{transport}-{profile_id}"]
    image = read_all(dev, ep)
    want = dev.values()
    for p in dev.points:
        regs = [image[p.table][a] for a in range(p.address, p.end)]
        got = decode(p, regs)
        w = want[p.id]
        if isinstance(w, float):
            tol = 1e-3 if p.spec.type is DataType.FLOAT32 else abs(p.spec.scale) / 2 + 1e-9
            assert got == pytest.approx(w, rel=1e-6, abs=tol), p.id
        else:
            assert got == w, p.id


def test_mbpoll_sees_physics_values(site: SimSite) -> None:
    """Spot checks straight against model attributes (not via the emulator's own value table)."""
    chg = site.device("rtu-voltpile-cp10")
    ep = site.endpoints()["rtu-voltpile-cp10"]
    chg.model.plug(4, soc=0.3)
    port = chg.model.ports[4]
    regs = mbpoll(ep, Table.INPUT, 100 + 3 * 8, 7)
    assert regs[0] == 1  # charging
    assert regs[2] / 100 == pytest.approx(port.current, abs=0.005)
    assert regs[6] / 10 == pytest.approx(port.connector_temp, abs=0.05)
    spk = site.device("tcp-aquaguard-rm4")
    spk.model.waterflow = True
    status = mbpoll(site.endpoints()["tcp-aquaguard-rm4"], Table.HOLDING, 10, 1)[0]
    assert status & 0x0100, "aquaguard stores registers byte-swapped: bit 0 travels in the high byte"
    spk.model.waterflow = False


def test_mbpoll_write_switches_a_port_off(site: SimSite) -> None:
    ep = site.endpoints()["rtu-voltpile-cp10"]
    chg = site.device("rtu-voltpile-cp10")
    chg.model.plug(6, soc=0.3)
    assert chg.model.ports[6].current > 0
    exe = shutil.which("mbpoll") or "mbpoll"
    r = subprocess.run(
        [
            exe,
            "-0",
            "-1",
            "-m",
            "rtu",
            "-b",
            "19200",
            "-P",
            "even",
            "-a",
            str(ep["unit"]),
            "-t",
            "0",
            "-r",
            str(16 + 5),
            ep["serial_port"],
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert "Written 1 references" in r.stdout, r.stdout + r.stderr
    assert chg.model.ports[6].current == 0 and not chg.model.ports[6].enabled


@pytest.mark.parametrize("transport", ["rtu", "tcp"])
@pytest.mark.parametrize("profile_id", MODBUS)
def test_mbpoll_reads_the_identify_registers(site: SimSite, profile_id: str, transport: str) -> None:
    """What a third-party master reads at a profile's `identify:` registers is what the profile
    declares, and the scan's matcher recognises the model from mbpoll's answers."""
    from device_profiles.identify import Answer, match, read_key

    prof = catalog()[profile_id]
    assert prof.identify is not None
    ep = site.endpoints()[f"{transport}-{profile_id}"]
    answers = {}
    for r in prof.identify.reads:
        table, address, count = read_key(r)
        if r.exception is not None:
            exe = shutil.which("mbpoll") or "mbpoll"
            args = [exe, "-0", "-1", "-o", "2", "-a", str(ep["unit"]), "-t", TYPE[table], "-r", str(address), "-c", "1"]
            if transport == "rtu":
                args += ["-m", "rtu", "-b", "19200", "-P", "even", ep["serial_port"]]
            else:
                args += ["-m", "tcp", "-p", str(ep["tcp_port"]), ep["host"]]
            out = subprocess.run(args, capture_output=True, text=True, timeout=20)
            assert "Illegal data address" in out.stdout + out.stderr, out.stdout + out.stderr
            answers[(table, address, count)] = Answer(exception=2)
            continue
        answers[(table, address, count)] = Answer(registers=tuple(mbpoll(ep, table, address, count)))
    m = match(prof, answers)
    assert m.fits, m.reasons
    for r in prof.identify.reads:
        if r.expect is not None:
            assert m.values[r.key] == r.expect
    if m.firmware is not None:
        assert m.firmware_ok, (m.firmware, prof.firmware)
