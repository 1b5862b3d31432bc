"""A Google Takeout "Fit" export as a Bytewax source (what ``wearfhir import`` reads when given a Takeout)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import Any

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from connectors.google_fit.takeout import read_takeout

__all__ = ["TakeoutSource"]

ITEMS_PER_BATCH = 64  # sample batches, rejections and the report, as the reader yields them


class _TakeoutPartition(StatefulSourcePartition[Any, None]):
    def __init__(self, items: Iterator[Any]) -> None:
        self._items = items

    def next_batch(self) -> list[Any]:
        batch = list(islice(self._items, ITEMS_PER_BATCH))
        if not batch:
            raise StopIteration
        return batch

    def next_awake(self) -> datetime | None:
        return None

    def snapshot(self) -> None:
        return None


class TakeoutSource(FixedPartitionedSource[Any, None]):
    """One Takeout (zip or folder) for one patient: sample batches, rejections, then one source report."""

    def __init__(self, path: Path, patient: str, *, timezone: str | None = None) -> None:
        self._path = path
        self._patient = patient
        self._timezone = timezone

    def list_parts(self) -> list[str]:
        return ["takeout"]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _TakeoutPartition:
        return _TakeoutPartition(read_takeout(self._path, self._patient, self._timezone))
