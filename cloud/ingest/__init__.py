"""Cloud ingest: MQTT → validate → identity → dedupe → storage and safety paths."""
