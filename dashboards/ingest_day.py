"""Load a simulated estate day into InfluxDB 1.x the way production does: through the cloud ingester.

The day's wire messages (`Day.messages`) go through the ingester's own `Pipeline` (topic and
payload validation, registry identity checks, dedupe, profile mapping with the site file's labels)
into its `StorageWriter` and InfluxDB 1.x sink: exactly what `IngestService` does with messages it
receives over MQTT, minus the broker hop, so a day (~9,000 messages) loads in seconds. The ingester's
safety hand-over goes through cloud/history's fan-out, as in `cloud serve`, so `parking_stay` is
written by the cloud's own writer. alarm, gateway_status and inspection, which cloud/history takes
from the alarm engine and live status messages (not replayed here), are posted as line protocol
(`Day.lines`) beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dashboards.sample_data import SITE_FILE, Day, write_lines


@dataclass(frozen=True, slots=True)
class Loaded:
    accepted: int
    points: int
    written: int
    dead: dict[str, int]
    lines: int
    stays: int = 0  # parking_stay points cloud/history wrote


def ingest_day(day: Day, influx_url: str, database: str, work_dir: Path) -> Loaded:
    """Register the sample site, run `day.messages` through the ingester pipeline into
    `influx_url`/`database`, then write `day.lines`. Raises if the ingester refused a message or
    could not store every point (a dashboard test on partial data would prove nothing)."""
    from urllib.parse import urlsplit

    from cloud.history.service import HistoryService
    from cloud.ingest.dead_letter import DeadLetterStore
    from cloud.ingest.pipeline import Pipeline
    from cloud.ingest.safety_queue import QueueSafetySink
    from cloud.ingest.timepolicy import TimePolicy
    from cloud.site_config import load_site
    from cloud.state.registry import Registry
    from cloud.tsdb.base import open_sink
    from cloud.tsdb.spool import StorageWriter

    work_dir.mkdir(parents=True, exist_ok=True)
    reg = Registry(f"sqlite:///{work_dir}/state.db")
    try:
        reg.register_site(load_site(SITE_FILE))
        directory = reg.directory()
    finally:
        reg.close()
    host = urlsplit(influx_url).netloc
    storage = StorageWriter(open_sink(f"influx1://{host}/{database}"), work_dir / "spool").start()
    dead = DeadLetterStore(work_dir / "dead-letters.db")
    # Nobody drains the safety queue here (no alarm engine runs): unbounded, discarded at the end.
    history = HistoryService(clock=lambda: day.end_ms / 1000)
    # A replayed day: its timestamps are the simulated clock's, not evidence to judge (time policy off).
    pipeline = Pipeline(directory, dead, history.fan_out(QueueSafetySink()), storage, time_policy=TimePolicy.off())
    history.bind(storage, lambda: pipeline.directory).step()  # learns which devices have bays
    try:
        for i, (topic, payload) in enumerate(day.messages):
            pipeline.handle(topic, payload, day.end_ms / 1000)
            if i % 2000 == 1999:
                history.step()
        history.step()
        flushed = storage.flush(120)
    finally:
        storage.stop()
        dead.close()
    st, ss = pipeline.stats, storage.stats
    if (st.dead or st.duplicates or not flushed or ss.rejected or storage.pending or len(storage.spool)
            or history.stats.errors or history.stats.dropped):
        raise RuntimeError(
            f"ingester did not store the whole day: dead={dict(st.dead)} duplicates={st.duplicates} "
            f"flushed={flushed} rejected={ss.rejected} pending={storage.pending} error={ss.last_error} "
            f"history={history.snapshot()}"
        )
    n = write_lines(influx_url, database, day.lines)
    return Loaded(st.accepted, st.points, ss.written, dict(st.dead), n, history.stats.stays)
