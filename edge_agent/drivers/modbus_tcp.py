"""Modbus TCP to one endpoint (a gateway or a device with Ethernet)."""

from __future__ import annotations

from pymodbus.client import AsyncModbusTcpClient

from edge_agent.drivers.modbus_common import PymodbusDriver


class TcpDriver(PymodbusDriver):
    def __init__(self, host: str, port: int = 502, timeout_s: float = 0.3) -> None:
        self.name = f"{host}:{port}"
        client = AsyncModbusTcpClient(
            host,
            port=port,
            timeout=timeout_s,
            retries=0,
            reconnect_delay=0.5,
            reconnect_delay_max=5,
            trace_packet=self._trace,
        )
        super().__init__(client, timeout_s)
