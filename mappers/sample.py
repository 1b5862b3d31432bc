"""The canonical sample: the one contract between sources, mappers and aggregates (DESIGN §2)."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

__all__ = ["DeviceInfo", "Rejection", "Sample", "SampleBatch", "SourceInfo", "SourceReport", "batch_key"]


class DeviceInfo(NamedTuple):
    """The hardware that produced a sample, as the vendor describes it."""

    name: str | None
    manufacturer: str | None
    model: str | None
    hardware: str | None
    software: str | None


class SourceInfo(NamedTuple):
    """Where a sample came from: the app (name, version) and the device it ran on."""

    name: str
    version: str | None
    device: DeviceInfo | None


class Sample(NamedTuple):
    """One measurement, vendor-neutral.

    ``value`` is set for quantities (in the metric's canonical UCUM ``unit``), ``code`` for categorical
    samples (sleep stages, workout types); panels such as blood pressure carry ``components`` as
    ``(metric, value)`` pairs in canonical units. Times are tz-aware and keep the source's own offset.
    """

    patient: str
    metric: str
    value: float | None
    code: str | None
    unit: str | None
    start: datetime
    end: datetime
    source: SourceInfo
    origin: str
    vendor_type: str
    record_id: str | None = None
    components: tuple[tuple[str, float], ...] = ()
    timezone: str | None = None
    user_entered: bool = False
    vendor_code: str | None = None


class SampleBatch(NamedTuple):
    """Many samples of one patient and one metric, in source order: the unit moved through the flow."""

    patient: str
    metric: str
    samples: list[Sample]


class Rejection(NamedTuple):
    """An input item that could not become a sample, and why; counted and sent to the dead-letter output.

    ``where`` locates it in the input (``line 1234`` of a file, a stream id); ``detail`` holds
    non-PHI context such as the vendor type name. Values and payloads are never put here.
    """

    origin: str
    reason: str
    where: str
    vendor_type: str | None = None
    detail: str | None = None


def batch_key(patient: str, metric: str) -> str:
    """The Bytewax routing key of a batch: one key per (patient, metric)."""
    return f"{patient}\x1f{metric}"


class SourceReport(NamedTuple):
    """What a source saw, sent once when it reaches the end of its input (or stops early).

    Only counts, type names and locations: never values. ``stopped`` is None when the whole input was
    read, otherwise a message that says where and why reading stopped.
    """

    origin: str
    description: str
    patient: str
    bytes_read: int
    records_by_type: dict[str, int]
    unknown_types: dict[str, int]
    unmapped_types: dict[str, int]
    other_elements: dict[str, int]
    control_chars_removed: int
    merged_members: int
    stopped: str | None
    gender: str | None = None
    birth_date: str | None = None
