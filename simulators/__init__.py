"""Device simulators that speak the real wire bytes (Modbus RTU on a pty, Modbus TCP, serial lines).

`SimSite` (simulators.site) runs a whole site; `ScenarioPlayer` (simulators.scenario) plays a timeline
against it. Physical models live in `physics/`, register maps in `devices/`, bytes in `transport/`.
"""
