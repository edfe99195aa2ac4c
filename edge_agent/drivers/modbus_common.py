"""Shared pymodbus plumbing for RTU and TCP: one call per transaction, no pymodbus retries (the
scheduler retries and counts), every outcome classified into TransactionError kinds."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from pymodbus.client.base import ModbusBaseClient
from pymodbus.exceptions import ModbusException, ModbusIOException

from device_profiles.model import Table
from edge_agent.drivers.base import FailKind, TransactionError

# pymodbus logs every timeout with a hex dump at ERROR; we count and report them in health instead
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
logging.getLogger("pymodbus.logging").setLevel(logging.CRITICAL)


class PymodbusDriver:
    name = "modbus"
    # RTU frames carry no transaction id: an answer that comes after its request timed out is taken
    # by pymodbus as the answer to the next request to the same slave (it checks the slave id, not
    # the function or the length). Seen under load: a coil read's answer (main relay on) taken as
    # the smoke detector's discrete input, and the edge cut a cabinet's power for a smoke nobody
    # saw. So after a failed transaction the next *different* request to that slave waits until a
    # late answer would have come (it then arrives with no request pending and is dropped; other
    # slaves and a retry of the same request are not held up: a late answer to the same request is
    # its answer), and an answer of the wrong function or length is refused, not decoded.
    settle_after_failure = False

    def __init__(self, client: ModbusBaseClient, timeout_s: float) -> None:
        self.client = client
        self.timeout_s = timeout_s
        self._rx_bytes = 0  # bytes received during the current transaction (via trace_packet)
        # slave → (until when a late answer may still come, the request it would answer)
        self._late: dict[int, tuple[float, tuple[int, int, int]]] = {}

    def _trace(self, sending: bool, data: bytes) -> bytes:
        if not sending:
            self._rx_bytes += len(data)
        return data

    async def connect(self) -> None:
        if not self.client.connected:
            ok = await self.client.connect()
            if not ok:
                raise TransactionError("io", f"cannot open {self.name}")

    async def _settle(self, unit: int, req: tuple[int, int, int]) -> None:
        late = self._late.get(unit)
        if late is None or late[1] == req:
            return
        if (wait := late[0] - time.monotonic()) > 0:
            await asyncio.sleep(wait)
        self._late.pop(unit, None)

    async def _call(self, coro: Any, fc: int, count: int | None, unit: int, address: int) -> Any:
        """One transaction; the answer must be of function `fc` and carry `count` registers or bits
        (an answer to another request is refused)."""
        req = (fc, address, count or 1)
        await self._settle(unit, req)
        self._rx_bytes = 0
        try:
            try:
                resp = await coro  # pymodbus enforces `timeout`; no extra wait_for task per transaction
            except (TimeoutError, ModbusIOException) as e:
                kind: FailKind = "crc" if self._rx_bytes else "timeout"
                raise TransactionError(kind, str(e) or "no answer") from None
            except ModbusException as e:
                text = str(e)
                if "CRC" in text.upper() or self._rx_bytes:
                    raise TransactionError("crc", text) from None
                raise TransactionError("io", text) from None
            except (OSError, ConnectionError) as e:
                raise TransactionError("io", str(e)) from None
            if resp.isError():
                code = getattr(resp, "exception_code", None)
                if getattr(resp, "function_code", fc) & 0x7F != fc:
                    raise TransactionError("crc", f"exception answer to function {resp.function_code & 0x7F}")
                raise TransactionError("exception", f"exception code {code}", code)
            got_fc = getattr(resp, "function_code", fc)
            if got_fc != fc:
                raise TransactionError("crc", f"answer to function {got_fc}, not {fc} (a late answer)")
            if count is not None:
                n = len(resp.registers) if fc in (3, 4) else len(resp.bits)
                if n < count:
                    raise TransactionError("crc", f"answer with {n} values, not {count} (a late answer)")
        except TransactionError as e:
            if self.settle_after_failure and e.kind in ("timeout", "crc"):
                self._late[unit] = (time.monotonic() + self.timeout_s, req)
            raise
        if unit in self._late:  # a retry answered, maybe with the late answer: its own may follow
            self._late[unit] = (time.monotonic() + self.timeout_s, req)
        return resp

    async def read(self, unit: int, table: Table, address: int, count: int) -> list[int]:
        await self.connect()
        c, a = self.client, address
        if table is Table.HOLDING:
            r = await self._call(c.read_holding_registers(a, count=count, device_id=unit), 3, count, unit, a)
            return list(r.registers[:count])
        if table is Table.INPUT:
            r = await self._call(c.read_input_registers(a, count=count, device_id=unit), 4, count, unit, a)
            return list(r.registers[:count])
        if table is Table.COIL:
            r = await self._call(c.read_coils(a, count=count, device_id=unit), 1, count, unit, a)
        else:
            r = await self._call(c.read_discrete_inputs(a, count=count, device_id=unit), 2, count, unit, a)
        return [1 if b else 0 for b in r.bits[:count]]

    async def write(self, unit: int, table: Table, address: int, value: bool | int) -> None:
        await self.connect()
        c = self.client
        if table is Table.COIL:
            await self._call(c.write_coil(address, bool(value), device_id=unit), 5, None, unit, address)
        elif table is Table.HOLDING:
            await self._call(c.write_register(address, int(value), device_id=unit), 6, None, unit, address)
        else:
            raise TransactionError("io", f"{table.value} is read-only")

    async def close(self) -> None:
        self.client.close()
