"""What the bus scheduler needs from a Modbus driver, and how a failed transaction is classified.

Every failure is one of: timeout (nothing came back), crc (bytes came back but no valid frame:
CRC error or garbage), exception (the slave answered with a Modbus exception code), io (the port
itself failed). Health counts them separately; the scheduler retries them all.
"""

from __future__ import annotations

from typing import Literal, Protocol

from device_profiles.model import Table

FailKind = Literal["timeout", "crc", "exception", "io"]


class TransactionError(Exception):
    def __init__(self, kind: FailKind, detail: str, code: int | None = None) -> None:
        self.kind = kind
        self.code = code
        super().__init__(f"{kind}: {detail}")


class ModbusDriver(Protocol):
    name: str

    async def connect(self) -> None: ...

    async def read(self, unit: int, table: Table, address: int, count: int) -> list[int]: ...

    async def write(self, unit: int, table: Table, address: int, value: bool | int) -> None: ...

    async def close(self) -> None: ...
