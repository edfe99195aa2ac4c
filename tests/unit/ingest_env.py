"""A pipeline wired to real (in-memory) collaborators, for fast tests."""

from __future__ import annotations

from cloud.ingest.dead_letter import DeadLetterStore
from cloud.ingest.pipeline import Pipeline
from cloud.ingest.safety_queue import QueueSafetySink
from cloud.ingest.timepolicy import TimePolicy
from cloud.site_config import load_site
from cloud.state.registry import Registry
from cloud.tsdb.lineproto import TsPoint
from tests.integration.ingest_support import DEMO_SITE


class ListStorage:
    def __init__(self) -> None:
        self.points: list[TsPoint] = []

    def put(self, points: list[TsPoint], received: float | None = None) -> None:
        self.points.extend(points)


_REG: Registry | None = None


def make_pipeline() -> tuple[Pipeline, ListStorage, QueueSafetySink, Registry]:
    """A fresh pipeline (own counters, dedupe, dead letters) over one shared registry of the demo estate."""
    global _REG
    if _REG is None:
        _REG = Registry("sqlite://")
        _REG.register_site(load_site(DEMO_SITE))
    reg = _REG
    storage, safety = ListStorage(), QueueSafetySink()
    # The tests replay fixed dates of 2026: keep the future side of the time policy, not the past.
    p = Pipeline(reg.directory(), DeadLetterStore(None), safety, storage, time_policy=TimePolicy(past_s=None))
    return p, storage, safety, reg
