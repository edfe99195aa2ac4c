"""Measurements the dashboards chart that are not telemetry: who is online, how long a bay stayed
occupied, what alarms and inspection windows were doing. Derived here, beside the hot paths, from
what the ingester hands the safety path and from the alarm engine's transition hook; written into
the ingester's own `StorageWriter` (same batching, spooling, retries).

One module per measurement (`gateway_status`, `parking_stay`, `alarm`, `inspection`), each pure
logic with no I/O; `service` runs them in one background thread.
"""
