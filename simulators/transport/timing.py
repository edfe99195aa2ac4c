"""Serial line timing of Modbus RTU, as the spec (Modbus over Serial Line v1.02 §2.5.1) gives it.

A Modbus RTU character is 11 bits (start + 8 data + parity + stop, or 2 stops without parity);
frames are separated by at least 3.5 character times, fixed at 1.75 ms above 19200 baud.
The RTU bus paces its replies with these, so a 9600-baud bus here is as slow as a real one.
"""

from __future__ import annotations

BITS_PER_CHAR = 11


def char_time(baud: int) -> float:
    return BITS_PER_CHAR / baud


def t35(baud: int) -> float:
    return 0.00175 if baud > 19200 else 3.5 * char_time(baud)


def t15(baud: int) -> float:
    return 0.00075 if baud > 19200 else 1.5 * char_time(baud)


def read_transaction_s(baud: int, registers: int) -> float:
    """Theoretical time of one read of N registers: request 8 bytes + response 5+2N bytes, and
    the 3.5-character silence after each: (13 + 2N)·t_char + 2·t3.5."""
    return (13 + 2 * registers) * char_time(baud) + 2 * t35(baud)
