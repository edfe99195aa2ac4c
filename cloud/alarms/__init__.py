"""Alarm rules, the alarm engine and its persistent state (the safety path after ingest)."""
