"""Bus drivers: Modbus RTU / TCP (pymodbus async clients) and a serial line-protocol reader."""
