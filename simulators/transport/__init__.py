"""Byte-level transports: Modbus RTU on a pseudo-terminal bus, Modbus TCP (MBAP), serial lines."""
