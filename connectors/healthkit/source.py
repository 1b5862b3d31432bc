"""Bytewax source reading one Apple Health export into sample batches, rejections and a final report.

Delivery: at-least-once. An import has no resume point inside the XML; a restarted import reads the
export again from the start, and deterministic ids make the repeat harmless.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from connectors.healthkit.export_file import (
    ExportLimits,
    ExportLocation,
    count_time_zones,
    locate_export,
    open_export_stream,
)
from connectors.healthkit.normalize import ORIGIN, HealthKitNormalizer
from connectors.healthkit.xml_stream import HealthDataStream
from mappers.sample import SourceReport
from mappers.tables import healthkit_table, metrics
from mappers.zones import resolve_zone
from wearfhir.errors import DataError

__all__ = ["HealthKitExportSource", "PatientZone", "ProgressCallback", "patient_zone", "read_export"]

ProgressCallback = Callable[[int, int], None]  # (bytes read so far, records read so far)
CHUNK_BYTES = 1 << 20


class PatientZone(NamedTuple):
    """The patient's IANA zone for one export and where it came from (DESIGN §2)."""

    name: str | None
    origin: str  # "option" (given, e.g. --timezone), "export" (named most often by its records), "offset" (none)
    records: int = 0  # records naming it in HKTimeZone (origin "export")


def patient_zone(location: ExportLocation, given: str | None) -> PatientZone:
    """The zone given, else the valid zone the export's records name most often in ``HKTimeZone`` (a fast byte
    scan of the export before the parse), else none: then local days follow the offsets the export wrote."""
    if given:
        return PatientZone(given, "option")
    for name, count in count_time_zones(location).most_common():
        if resolve_zone(name) is not None:
            return PatientZone(name, "export", count)
    return PatientZone(None, "offset")


class _ExportReader:
    """Pull-based reading of one export: each ``step()`` parses one chunk and returns what it produced."""

    def __init__(self, location: ExportLocation, patient: str, chunk_bytes: int,
                 progress: ProgressCallback | None, zone: PatientZone) -> None:
        self._location = location
        self._chunk = chunk_bytes
        self._progress = progress
        self._zone = zone
        self._stack = ExitStack()
        self._stream = self._stack.enter_context(open_export_stream(location))
        self._norm = HealthKitNormalizer(patient, healthkit_table(), metrics(), zone.name)
        self._parser = HealthDataStream(self._norm)
        self._bytes = 0
        self.done = False

    def step(self) -> list[Any]:
        stopped: str | None = None
        try:
            chunk = self._stream.read(self._chunk)
            if chunk:
                self._bytes += len(chunk)
                self._parser.feed(chunk)
            else:
                self._parser.close()
        except DataError as exc:
            chunk = b""
            stopped = f"{self._location.describe()}: {exc}"
        batches, rejections = self._norm.drain()
        out: list[Any] = [*batches, *rejections]
        if self._progress is not None:
            self._progress(self._bytes, sum(self._norm.records_by_type.values()))
        if not chunk:
            self._norm.finish()
            batches, rejections = self._norm.drain()
            out.extend(batches)
            out.extend(rejections)
            out.append(self._report(stopped))
            self.done = True
            self.close()
        return out

    def _report(self, stopped: str | None) -> SourceReport:
        norm = self._norm
        return SourceReport(
            origin=ORIGIN,
            description=self._location.describe(),
            patient=norm.patient,
            bytes_read=self._bytes,
            records_by_type=dict(norm.records_by_type),
            unknown_types=dict(norm.unknown_types),
            unmapped_types=dict(norm.unmapped_types),
            other_elements=dict(norm.other_elements),
            control_chars_removed=self._parser.control_chars_removed,
            merged_members=norm.bp_merged,
            stopped=stopped,
            gender=norm.gender,
            birth_date=norm.birth_date.isoformat() if norm.birth_date else None,
            timezone=self._zone.name,
            timezone_origin=self._zone.origin,
            written_offset=norm.exported_at.strftime("%z") if norm.exported_at else None,
            zone_records=self._zone.records,
        )

    def close(self) -> None:
        self._stack.close()


def read_export(path: Path, patient: str, chunk_bytes: int = CHUNK_BYTES,
                limits: ExportLimits = ExportLimits(), timezone: str | None = None) -> Any:  # noqa: B008
    """Read a whole export without Bytewax: yields what the source would emit (for tools and tests)."""
    location = locate_export(path, limits)
    reader = _ExportReader(location, patient, chunk_bytes, None, patient_zone(location, timezone))
    try:
        while not reader.done:
            yield from reader.step()
    finally:
        reader.close()


class _ExportPartition(StatefulSourcePartition[Any, None]):
    def __init__(self, reader: _ExportReader) -> None:
        self._reader = reader

    def next_batch(self) -> list[Any]:
        if self._reader.done:
            raise StopIteration
        return self._reader.step()

    def next_awake(self) -> datetime | None:
        return None

    def snapshot(self) -> None:
        return None

    def close(self) -> None:
        self._reader.close()


class HealthKitExportSource(FixedPartitionedSource[Any, None]):
    """One Apple Health export (zip or XML) for one patient.

    Emits :class:`~mappers.sample.SampleBatch` items (one per metric per chunk read),
    :class:`~mappers.sample.Rejection` items, and one final :class:`~mappers.sample.SourceReport`.
    The export is checked (and located inside a zip) when the source is built, so a bad file fails
    before the dataflow starts. ``timezone`` is the patient's IANA zone; without one, the zone the export's
    records name most often is used (a byte scan when the partition is built), else the written offsets.
    """

    def __init__(self, path: Path, patient: str, *, chunk_bytes: int = CHUNK_BYTES,
                 limits: ExportLimits = ExportLimits(), progress: ProgressCallback | None = None,  # noqa: B008
                 timezone: str | None = None) -> None:
        self.location = locate_export(path, limits)
        self._patient = patient
        self._chunk = chunk_bytes
        self._progress = progress
        self._timezone = timezone

    def list_parts(self) -> list[str]:
        return ["export"]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _ExportPartition:
        zone = patient_zone(self.location, self._timezone)
        return _ExportPartition(_ExportReader(self.location, self._patient, self._chunk, self._progress, zone))
