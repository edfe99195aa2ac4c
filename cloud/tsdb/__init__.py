"""Time-series storage: the mapping's rows as points, written to InfluxDB (v2 API or v1 /write),
VictoriaMetrics (speaks the v2 write API) or SQLite, through a disk spool that survives outages."""
