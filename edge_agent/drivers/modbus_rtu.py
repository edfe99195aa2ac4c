"""Modbus RTU over a serial port (RS-485 adapter or a simulator's pseudo-terminal)."""

from __future__ import annotations

from pymodbus.client import AsyncModbusSerialClient

from edge_agent.drivers.modbus_common import PymodbusDriver


class RtuDriver(PymodbusDriver):
    settle_after_failure = True  # no transaction id on RTU (modbus_common.PymodbusDriver)

    def __init__(self, port: str, baud: int, parity: str = "N", stop_bits: int = 1, timeout_s: float = 0.3) -> None:
        self.port = port
        self.name = port
        client = AsyncModbusSerialClient(
            port,
            baudrate=baud,
            parity=parity,
            stopbits=stop_bits,
            bytesize=8,
            timeout=timeout_s,
            retries=0,
            reconnect_delay=0.5,
            reconnect_delay_max=5,
            trace_packet=self._trace,
        )
        super().__init__(client, timeout_s)
