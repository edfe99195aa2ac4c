"""What the device health page says about time-series storage: is it keeping up?

`cloud serve` hands the web app a function returning the ingester's storage status
(`IngestService.storage_status`); this turns it into the line the page shows. Pure, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

LATE_S = 30.0  # behind by more than this: shown as a problem (the dashboards would show gaps)


@dataclass(frozen=True, slots=True)
class StorageView:
    points_waiting: int  # in memory and on disk, not yet in the store
    behind_s: float  # how long the oldest of them has waited
    batches_on_disk: int  # written to the spool because the store was down, slow or stopping
    late: bool


def storage_view(status: dict[str, Any]) -> StorageView:
    behind = float(status.get("behind_s", 0.0))
    on_disk = int(status.get("spooled_batches", 0))
    return StorageView(int(status.get("points_waiting", 0)), round(behind, 1), on_disk, behind > LATE_S or on_disk > 0)
