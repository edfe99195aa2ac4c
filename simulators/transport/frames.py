"""Pure Modbus framing and PDU handling: CRC-16, RTU frames, MBAP headers, request → response PDU.

Owned here (not pymodbus's server) because fault injection needs byte-level control: a reply with a
broken CRC, a slave that stays silent, an exception on a fraction of requests. The CRC is checked
against pymodbus's own in the unit tests.
"""

from __future__ import annotations

import struct
from typing import Protocol

from device_profiles.model import Table

ILLEGAL_FUNCTION, ILLEGAL_ADDRESS, ILLEGAL_VALUE = 1, 2, 3


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC = _crc_table()


def crc16(data: bytes) -> int:
    """Modbus CRC-16 (poly 0xA001 reflected, init 0xFFFF); sent low byte first."""
    crc = 0xFFFF
    for b in data:
        crc = (crc >> 8) ^ _CRC[(crc ^ b) & 0xFF]
    return crc


def rtu_frame(unit: int, pdu: bytes) -> bytes:
    body = bytes((unit,)) + pdu
    return body + struct.pack("<H", crc16(body))


def rtu_split(frame: bytes) -> tuple[int, bytes] | None:
    """(unit, pdu) of a well-formed RTU frame, or None (too short or bad CRC: a slave stays silent)."""
    if len(frame) < 4:
        return None
    if struct.unpack("<H", frame[-2:])[0] != crc16(frame[:-2]):
        return None
    return frame[0], frame[1:-2]


def exception_pdu(function: int, code: int) -> bytes:
    return bytes((function | 0x80, code))


class Target(Protocol):
    """What a PDU handler needs from a device (see simulators.devices.base.ModbusDevice)."""

    def read_registers(self, table: Table, address: int, count: int) -> list[int]: ...
    def read_bits(self, table: Table, address: int, count: int) -> list[bool]: ...
    def write(self, table: Table, address: int, values: list[int] | list[bool]) -> None: ...


class PduError(Exception):
    def __init__(self, code: int) -> None:
        self.code = code
        super().__init__(f"modbus exception {code}")


def _pack_bits(bits: list[bool]) -> bytes:
    out = bytearray((len(bits) + 7) // 8)
    for i, b in enumerate(bits):
        if b:
            out[i // 8] |= 1 << (i % 8)
    return bytes(out)


def _unpack_bits(data: bytes, count: int) -> list[bool]:
    return [bool(data[i // 8] >> (i % 8) & 1) for i in range(count)]


_READ = {1: Table.COIL, 2: Table.DISCRETE_INPUT, 3: Table.HOLDING, 4: Table.INPUT}


def handle_pdu(target: Target, pdu: bytes) -> bytes:
    """Request PDU → response PDU (normal or exception). Device errors carry their own code."""
    if not pdu:
        return exception_pdu(0, ILLEGAL_FUNCTION)
    fc = pdu[0]
    try:
        return _handle(target, fc, pdu[1:])
    except PduError as e:
        return exception_pdu(fc, e.code)
    except Exception as e:  # a device-side ModbusError (has .code) or a bug: never kill the bus
        return exception_pdu(fc, int(getattr(e, "code", 4)))


def _handle(t: Target, fc: int, data: bytes) -> bytes:
    if fc in _READ:
        if len(data) != 4:
            raise PduError(ILLEGAL_VALUE)
        addr, qty = struct.unpack(">HH", data)
        table = _READ[fc]
        if table.is_bit:
            if not 1 <= qty <= 2000:
                raise PduError(ILLEGAL_VALUE)
            packed = _pack_bits(t.read_bits(table, addr, qty))
            return bytes((fc, len(packed))) + packed
        if not 1 <= qty <= 125:
            raise PduError(ILLEGAL_VALUE)
        regs = t.read_registers(table, addr, qty)
        return bytes((fc, 2 * qty)) + struct.pack(f">{qty}H", *regs)
    if fc == 5:
        if len(data) != 4:
            raise PduError(ILLEGAL_VALUE)
        addr, val = struct.unpack(">HH", data)
        if val not in (0x0000, 0xFF00):
            raise PduError(ILLEGAL_VALUE)
        t.write(Table.COIL, addr, [val == 0xFF00])
        return bytes((fc,)) + data
    if fc == 6:
        if len(data) != 4:
            raise PduError(ILLEGAL_VALUE)
        addr, val = struct.unpack(">HH", data)
        t.write(Table.HOLDING, addr, [val])
        return bytes((fc,)) + data
    if fc == 15:
        if len(data) < 6:
            raise PduError(ILLEGAL_VALUE)
        addr, qty, nbytes = struct.unpack(">HHB", data[:5])
        if not 1 <= qty <= 1968 or nbytes != (qty + 7) // 8 or len(data) != 5 + nbytes:
            raise PduError(ILLEGAL_VALUE)
        t.write(Table.COIL, addr, _unpack_bits(data[5:], qty))
        return bytes((fc,)) + data[:4]
    if fc == 16:
        if len(data) < 7:
            raise PduError(ILLEGAL_VALUE)
        addr, qty, nbytes = struct.unpack(">HHB", data[:5])
        if not 1 <= qty <= 123 or nbytes != 2 * qty or len(data) != 5 + nbytes:
            raise PduError(ILLEGAL_VALUE)
        t.write(Table.HOLDING, addr, list(struct.unpack(f">{qty}H", data[5:])))
        return bytes((fc,)) + data[:4]
    raise PduError(ILLEGAL_FUNCTION)


def rtu_request_length(buf: bytes) -> int | None:
    """Length of the RTU request frame at the start of `buf` if its function code fixes it
    (None if unknown or not enough bytes yet); used to split back-to-back frames."""
    if len(buf) < 2:
        return None
    fc = buf[1]
    if fc in (1, 2, 3, 4, 5, 6):
        return 8
    if fc in (15, 16):
        return 9 + buf[6] if len(buf) >= 7 else None
    return None


def mbap(tid: int, unit: int, pdu: bytes) -> bytes:
    return struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu
