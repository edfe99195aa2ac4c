"""The per-device part of answering a request, shared by RTU and TCP: silence and exception faults."""

from __future__ import annotations

from simulators.devices.base import ModbusDevice
from simulators.transport.frames import exception_pdu, handle_pdu


def respond(dev: ModbusDevice, pdu: bytes) -> bytes | None:
    """Response PDU, or None when the device is set silent."""
    f = dev.faults
    if f.silent:
        return None
    code = f.pick_exception()
    if code is not None and pdu:
        return exception_pdu(pdu[0], code)
    return handle_pdu(dev, pdu)
