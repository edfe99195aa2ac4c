"""The shared language of shelterwatch: device profiles (catalog/*.yaml), their model and loader,
register and line codecs, the time-series mapping, and the MQTT wire contract (wire.py)."""
