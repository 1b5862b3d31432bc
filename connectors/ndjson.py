"""NDJSON output in the FHIR Bulk Data layout (``OUT/Observation.ndjson`` …): the embedded default sink.

Files are written under temporary names and renamed into place only when the run completes, so a crash
never leaves a half-written file; a rerun on the same input writes byte-identical files (the flow is
deterministic with one worker and every id is derived from the data).

Delivery: the files are committed once, at the end of the run; a crashed run leaves the previous files
untouched and is simply run again.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, BinaryIO

import orjson
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from mappers.batch import MappedBatch
from mappers.context import FhirContext
from mappers.resources import to_fhir_patient
from mappers.sample import Rejection, SourceReport
from mappers.summary import SummaryBatch
from wearfhir.report import ImportReport

__all__ = ["REJECTED_FILE", "NdjsonSink", "NdjsonWriter", "RejectionFile"]

REJECTED_FILE = "rejected.ndjson"
_PARTIAL = ".partial"


class NdjsonWriter:
    """Writes resources one per line into ``<type>.ndjson`` files, committed atomically."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        for stale in out_dir.glob(f".*{_PARTIAL}"):
            stale.unlink()
        self._files: dict[str, BinaryIO] = {}
        self._unique_ids: dict[str, set[str]] = {}
        self._rejected = RejectionFile(out_dir / REJECTED_FILE)

    def _file(self, name: str) -> BinaryIO:
        fh = self._files.get(name)
        if fh is None:
            fh = self._files[name] = (self.out_dir / f".{name}{_PARTIAL}").open("wb", buffering=1 << 20)
        return fh

    def write_resource(self, resource: dict[str, Any]) -> bool:
        """Append a resource; Devices and Patients are written once per id. True if written."""
        rtype = resource["resourceType"]
        if rtype != "Observation":
            ids = self._unique_ids.setdefault(rtype, set())
            if resource["id"] in ids:
                return False
            ids.add(resource["id"])
        self._file(f"{rtype}.ndjson").write(orjson.dumps(resource) + b"\n")
        return True

    def write_observations(self, observations: list[dict[str, Any]]) -> None:
        """Append many Observations at once (the hot path: one write per batch)."""
        if observations:
            self._file("Observation.ndjson").write(b"\n".join(map(orjson.dumps, observations)) + b"\n")

    def write_rejection(self, rejection: Rejection) -> None:
        """Append a dead-letter line (reason and location; never the record's values)."""
        self._rejected.write(rejection)

    def commit(self) -> list[Path]:
        """Flush, fsync and rename every file into place; returns the final paths.

        The directory then describes this run: a ``rejected.ndjson`` left by an earlier run is removed when
        this one rejected nothing (:meth:`RejectionFile.commit`).
        """
        done = []
        for name, fh in sorted(self._files.items()):
            fh.flush()
            os.fsync(fh.fileno())
            fh.close()
            final = self.out_dir / name
            os.replace(self.out_dir / f".{name}{_PARTIAL}", final)
            done.append(final)
        self._files = {}
        rejected = self._rejected.commit()
        if rejected is not None:
            done.append(rejected)
        return done

    def abort(self) -> None:
        """Close and delete the partial files."""
        for name, fh in self._files.items():
            fh.close()
            (self.out_dir / f".{name}{_PARTIAL}").unlink(missing_ok=True)
        self._files = {}
        self._rejected.abort()


class RejectionFile:
    """Rejected input records (reason, location, type name: never values) as NDJSON lines in one file:
    ``rejected.ndjson`` of an output directory, or the list of a FHIR-only run. Written to a partial file
    and renamed into place by ``commit``; a run that rejected nothing removes the previous run's file, so
    the file always describes the last run.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._partial = path.with_name(f".{path.name}{_PARTIAL}")
        self._fh: BinaryIO | None = None

    def write(self, rejection: Rejection) -> None:
        """Append one rejection."""
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self._partial.open("wb", buffering=1 << 16)
        self._fh.write(orjson.dumps(rejection._asdict()) + b"\n")

    def commit(self) -> Path | None:
        """Put the file in place (or remove the last run's when nothing was rejected); its path, if any."""
        if self._fh is None:
            self.path.unlink(missing_ok=True)
            return None
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        self._fh = None
        os.replace(self._partial, self.path)
        return self.path

    def abort(self) -> None:
        """Close and delete the partial file (the previous run's list stays as it was)."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        self._partial.unlink(missing_ok=True)


class _NdjsonPartition(StatefulSinkPartition[Any, None]):
    def __init__(self, out_dir: Path, report: ImportReport, ctx: FhirContext, write_patient: bool) -> None:
        self._writer = NdjsonWriter(out_dir)
        self._report = report
        self._ctx = ctx
        self._write_patient = write_patient

    def write_batch(self, values: list[Any]) -> None:
        report = self._report
        for item in values:
            if isinstance(item, MappedBatch):
                report.add_batch(item)
                observations = []
                for resource in item.resources:
                    if resource["resourceType"] == "Observation":
                        observations.append(resource)
                    elif self._writer.write_resource(resource):
                        report.add_written(resource["resourceType"], None)
                self._writer.write_observations(observations)
                report.add_written("Observation", item.metric, len(observations))
            elif isinstance(item, SummaryBatch):
                summaries = item.resources()
                self._writer.write_observations([r for r in summaries if r["resourceType"] == "Observation"])
                for other in (r for r in summaries if r["resourceType"] != "Observation"):  # CGM reports
                    self._writer.write_resource(other)
                report.add_summaries(item, summaries)
            elif isinstance(item, Rejection):
                self._writer.write_rejection(item)
                report.add_rejection(item)
            elif isinstance(item, SourceReport):
                report.add_source(item)
                if self._write_patient:
                    patient = to_fhir_patient(item.patient, self._ctx, item.gender, item.birth_date)
                    if self._writer.write_resource(patient):
                        report.add_written("Patient", None)
            else:
                raise TypeError(f"NDJSON sink got an unexpected item of type {type(item).__name__}")

    def snapshot(self) -> None:
        return None

    def close(self) -> None:
        rejected = self._writer.out_dir / REJECTED_FILE
        if rejected in self._writer.commit():
            self._report.rejected_file = str(rejected)


class NdjsonSink(FixedPartitionedSink[Any, None]):
    """Bytewax sink writing mapped batches, rejections and the Patient to NDJSON files in ``out_dir``.

    Items arrive keyed by a constant so that one partition (one writer) owns the directory.
    """

    def __init__(self, out_dir: Path, report: ImportReport, ctx: FhirContext, write_patient: bool = True) -> None:
        self._out_dir = out_dir
        self._report = report
        self._ctx = ctx
        self._write_patient = write_patient

    def list_parts(self) -> list[str]:
        return ["ndjson"]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _NdjsonPartition:
        return _NdjsonPartition(self._out_dir, self._report, self._ctx, self._write_patient)
