"""Shared pymodbus plumbing for RTU and TCP: one call per transaction, no pymodbus retries (the
scheduler retries and counts), every outcome classified into TransactionError kinds."""

from __future__ import annotations

import logging
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

    def __init__(self, client: ModbusBaseClient, timeout_s: float) -> None:
        self.client = client
        self.timeout_s = timeout_s
        self._rx_bytes = 0  # bytes received during the current transaction (via trace_packet)

    def _trace(self, sending: bool, data: bytes) -> bytes:
        if not sending:
            self._rx_bytes += len(data)
        return data

    async def connect(self) -> None:
        if not self.client.connected:
            ok = await self.client.connect()
            if not ok:
                raise TransactionError("io", f"cannot open {self.name}")

    async def _call(self, coro: Any) -> Any:
        self._rx_bytes = 0
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
            raise TransactionError("exception", f"exception code {code}", code)
        return resp

    async def read(self, unit: int, table: Table, address: int, count: int) -> list[int]:
        await self.connect()
        c = self.client
        if table is Table.HOLDING:
            r = await self._call(c.read_holding_registers(address, count=count, device_id=unit))
            return list(r.registers[:count])
        if table is Table.INPUT:
            r = await self._call(c.read_input_registers(address, count=count, device_id=unit))
            return list(r.registers[:count])
        if table is Table.COIL:
            r = await self._call(c.read_coils(address, count=count, device_id=unit))
        else:
            r = await self._call(c.read_discrete_inputs(address, count=count, device_id=unit))
        return [1 if b else 0 for b in r.bits[:count]]

    async def write(self, unit: int, table: Table, address: int, value: bool | int) -> None:
        await self.connect()
        if table is Table.COIL:
            await self._call(self.client.write_coil(address, bool(value), device_id=unit))
        elif table is Table.HOLDING:
            await self._call(self.client.write_register(address, int(value), device_id=unit))
        else:
            raise TransactionError("io", f"{table.value} is read-only")

    async def close(self) -> None:
        self.client.close()
