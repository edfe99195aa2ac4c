"""Modbus TCP server (MBAP framing) on 127.0.0.1, several unit ids behind one port.

A unit id nobody answers to gets exception 0x0B (gateway target device failed to respond), as a
Modbus gateway reports it; with a single device, unit 0 and 255 also reach it (the spec's
"direct device" ids). Requests on one connection are answered in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections import Counter

from simulators.devices.base import ModbusDevice
from simulators.transport.frames import exception_pdu, mbap
from simulators.transport.respond import respond

GATEWAY_TARGET_FAILED = 0x0B


class TcpServer:
    kind = "modbus_tcp"

    def __init__(
        self, bus_id: str, devices: dict[int, ModbusDevice], port: int = 0, host: str = "127.0.0.1"
    ) -> None:
        self.id = bus_id
        self.devices = devices
        self.host, self.port = host, port
        self.stats: Counter[str] = Counter()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._client, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for w in list(self._writers):
            w.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 2)

    def _route(self, unit: int) -> ModbusDevice | None:
        dev = self.devices.get(unit)
        if dev is None and len(self.devices) == 1 and unit in (0, 255):
            dev = next(iter(self.devices.values()))
        return dev

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        self.stats["connections"] += 1
        try:
            while True:
                header = await reader.readexactly(7)
                tid, pid, length, unit = struct.unpack(">HHHB", header)
                if pid != 0 or not 2 <= length <= 254:
                    self.stats["bad_frames"] += 1
                    break  # not Modbus: drop the connection, as real devices do
                pdu = await reader.readexactly(length - 1)
                self.stats["requests"] += 1
                dev = self._route(unit)
                if dev is None:
                    resp: bytes | None = exception_pdu(pdu[0] if pdu else 0, GATEWAY_TARGET_FAILED)
                else:
                    if dev.faults.delay_s > 0:
                        await asyncio.sleep(dev.faults.delay_s)
                    resp = respond(dev, pdu)
                if resp is None:
                    self.stats["silent"] += 1
                    continue
                writer.write(mbap(tid, unit, resp))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    def endpoint(self, unit: int) -> dict[str, object]:
        # `port` is the deprecated, ambiguous old name of tcp_port (docs/simulators.md)
        return {"transport": "modbus_tcp", "host": self.host, "tcp_port": self.port, "port": self.port, "unit": unit}
