"""A slave that answers after the edge gave up must not have its answer decoded as the answer to the
next request (real RTU bytes on a pseudo-terminal; the slave's `delay_s` fault makes it late).

Seen under load in the e2e bench and the demo: a coil read's late answer (main relay on, bit 0 = 1)
taken as the smoke detector's discrete input, so the edge cut the cabinet's power and the cloud
pushed "Smoke in charger cabinet" for a smoke nobody saw. RTU frames carry no transaction id, and
pymodbus checks only the slave id.
"""

from __future__ import annotations

import asyncio

import pytest

from device_profiles.loader import get_profile
from device_profiles.model import Table
from edge_agent.drivers.base import TransactionError
from edge_agent.drivers.modbus_rtu import RtuDriver
from tests.fixtures.modbus_slave import RtuBus, SimDevice


def test_a_late_answer_is_not_taken_for_the_next_request(rtu_bus: type[RtuBus]) -> None:
    cp = SimDevice(get_profile("voltpile-cp10"), 3)
    cp.set(main_relay=True, smoke=False)
    bus = rtu_bus([cp])

    async def run() -> list[int]:
        drv = RtuDriver(bus.port, 9600, timeout_s=0.3)
        try:
            for _ in range(20):  # until the slave answers (the pseudo-terminal may take a moment)
                try:
                    assert await drv.read(3, Table.DISCRETE_INPUT, 0, 1) == [0]  # smoke: no
                    break
                except TransactionError:
                    await asyncio.sleep(0.2)
            else:
                raise AssertionError("the slave never answered")
            cp.faults.delay_s = 0.45  # the slave now answers after the edge's timeout
            with pytest.raises(TransactionError) as e:
                await drv.read(3, Table.COIL, 0, 1)  # main relay: the answer (1) comes too late
            assert e.value.kind == "timeout"
            cp.faults.delay_s = 0.0
            # The next request must get its own answer, not the late coil answer (1)
            return await drv.read(3, Table.DISCRETE_INPUT, 0, 1)
        finally:
            await drv.close()

    assert asyncio.run(run()) == [0]
