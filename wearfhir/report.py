"""The run report: what was read, written, skipped and rejected — counts and type names only (no PHI)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from connectors.fhir.client import BundleResult
from mappers.batch import MappedBatch
from mappers.sample import Rejection, SourceReport
from mappers.summary import SummaryBatch

__all__ = ["ImportReport"]

_EXAMPLES = 3
FAILED_REJECTION_SHARE = 0.5  # more than half of the records rejected: the import failed


@dataclass
class ImportReport:
    """Accumulates the outcome of one run; sinks feed it, the CLI renders it."""

    sources: list[SourceReport] = field(default_factory=list)
    samples: Counter[str] = field(default_factory=Counter)
    duplicates: Counter[str] = field(default_factory=Counter)
    same_slot: Counter[str] = field(default_factory=Counter)
    raw_skipped: Counter[str] = field(default_factory=Counter)
    observations: Counter[str] = field(default_factory=Counter)
    resources: Counter[str] = field(default_factory=Counter)
    summaries: Counter[str] = field(default_factory=Counter)
    summary_windows: Counter[tuple[str, str]] = field(default_factory=Counter)
    rejections: Counter[tuple[str, str]] = field(default_factory=Counter)
    fhir: dict[str, int] | None = None  # created, updated, retries, bundles, dead_lettered
    dead_letter_store: str = ""
    rejected_file: str = ""  # where the rejected input records were listed, if anywhere
    examples: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    def add_batch(self, batch: MappedBatch) -> None:
        """Count a mapped batch (its resources are counted as they are written)."""
        self.samples[batch.metric] += batch.samples
        self.duplicates[batch.metric] += batch.duplicates
        self.same_slot[batch.metric] += batch.same_slot
        self.raw_skipped[batch.metric] += batch.raw_skipped

    def add_written(self, resource_type: str, metric: str | None, count: int = 1) -> None:
        """Count resources written (Observations also per metric)."""
        if not count:
            return
        self.resources[resource_type] += count
        if resource_type == "Observation" and metric is not None:
            self.observations[metric] += count

    def add_summaries(self, batch: SummaryBatch, resources: list[dict[str, Any]]) -> None:
        """Count the summary resources built from one summary batch (Observations per metric, and CGM reports)
        and the windows they cover."""
        metric = batch.metric.key
        for resource in resources:
            self.resources[resource["resourceType"]] += 1
            if resource["resourceType"] == "Observation":
                self.summaries[metric] += 1
        for window, count in batch.windows.items():
            self.summary_windows[(metric, window)] += count

    def add_fhir(self, result: BundleResult, dead_lettered: int, store: str) -> None:
        """Record what the FHIR server sink wrote."""
        self.fhir = {"created": result.created, "updated": result.updated, "retries": result.retries,
                     "bundles": result.bundles, "dead_lettered": dead_lettered}
        self.dead_letter_store = store

    def add_rejection(self, rejection: Rejection) -> None:
        """Count a rejected input item, keeping the first few locations as examples."""
        key = (rejection.reason, rejection.vendor_type or "-")
        self.rejections[key] += 1
        where = self.examples.setdefault(key, [])
        if len(where) < _EXAMPLES:
            where.append(rejection.where if not rejection.detail else f"{rejection.where} ({rejection.detail})")

    def add_source(self, source: SourceReport) -> None:
        """Record a source's end-of-input report."""
        self.sources.append(source)

    @property
    def complete(self) -> bool:
        """True when every source read its whole input and the server refused nothing."""
        refused = bool(self.fhir and self.fhir["dead_lettered"])
        return bool(self.sources) and all(s.stopped is None for s in self.sources) and not refused

    @property
    def failure(self) -> str | None:
        """Why the run failed although it read its input, or None: no record became a sample (all rejected, or
        none of a mapped type), or more than half of them were rejected (clinical data that silently vanished is
        worse than none)."""
        read = self.records_read
        rejected = sum(self.rejections.values())
        malformed = sum(c for (reason, _), c in self.rejections.items() if reason == "malformed XML")
        seen = read + malformed  # malformed records were never read as records
        top = "; ".join(f"{count:,} {reason}" for (reason, _), count in self.rejections.most_common(3))
        if seen and not self.resources.get("Observation") and not sum(self.samples.values()):
            # (samples that the --raw/--summaries options chose not to write are the user's choice, not a failure)
            if rejected:
                return (f"no Observation was written from {seen:,} records: {rejected:,} were rejected ({top}). "
                        "See the rejected list for reasons and lines.")
            return (f"no Observation was written: none of the {seen:,} records is of a type wearfhir maps "
                    "(`wearfhir mappings` lists them)")
        if not seen:
            return "the export holds no records: nothing was imported"
        if rejected > FAILED_REJECTION_SHARE * seen:
            share = f"{100 * rejected / seen:.0f} %"
            return (f"{rejected:,} of {seen:,} records ({share}) were rejected ({top}): more than "
                    f"{FAILED_REJECTION_SHARE:.0%} is a failed import. See the rejected list for reasons and lines.")
        return None

    @property
    def records_read(self) -> int:
        """All records read by every source."""
        return sum(sum(s.records_by_type.values()) for s in self.sources)

    def render(self, seconds: float | None = None) -> str:
        """The report as text for a terminal."""
        lines: list[str] = []
        for src in self.sources:
            total = sum(src.records_by_type.values())
            rate = f" in {seconds:.1f} s ({total / seconds:,.0f} records/s)" if seconds else ""
            lines.append(f"Read {total:,} records from {src.description} ({src.bytes_read:,} bytes){rate}")
            lines.append(f"  {_zone_line(src)}")
            lines.append("  records per type:")
            for name, count in sorted(src.records_by_type.items(), key=lambda kv: (-kv[1], kv[0])):
                lines.append(f"    {count:>10,}  {name}")
            if src.unknown_types:
                lines.append("  unknown types (not mapped; newer than this wearfhir?):")
                lines.extend(f"    {c:>10,}  {n}" for n, c in sorted(src.unknown_types.items()))
            if src.unmapped_types:
                lines.append(f"  known but not mapped: {sum(src.unmapped_types.values()):,} records of "
                             f"{len(src.unmapped_types)} types (see `wearfhir mappings`)")
            if src.other_elements:
                other = ", ".join(f"{n} {c:,}" for n, c in sorted(src.other_elements.items()))
                lines.append(f"  other elements not mapped: {other}")
            if src.merged_members:
                lines.append(f"  blood-pressure readings merged into their panel: {src.merged_members:,}")
            if src.control_chars_removed:
                lines.append(f"  stray control characters removed: {src.control_chars_removed:,}")
        lines.append("Raw Observations written per metric:")
        metrics = sorted(set(self.samples) | set(self.observations))
        for metric in metrics:
            extra = []
            if self.duplicates[metric]:
                extra.append(_counted(self.duplicates[metric], "exact duplicate") + " dropped")
            if self.same_slot[metric]:
                extra.append(_counted(self.same_slot[metric], "same-time record")
                             + " with another value kept as distinct")
            if self.raw_skipped[metric]:
                how = "summarised, not written raw" if self.summaries[metric] else "not written raw nor summarised"
                extra.append(f"{self.raw_skipped[metric]:,} dense samples {how} (--raw all writes them)")
            suffix = f"  ({'; '.join(extra)})" if extra else ""
            lines.append(f"    {self.observations[metric]:>10,}  {metric}{suffix}")
        if self.summaries:
            lines.append("Summary Observations written per metric (windows):")
            for metric in sorted(self.summaries):
                windows = ", ".join(f"{w} {c:,}" for (m, w), c in sorted(self.summary_windows.items()) if m == metric)
                lines.append(f"    {self.summaries[metric]:>10,}  {metric}  ({windows})")
        written = ", ".join(f"{t} {c:,}" for t, c in sorted(self.resources.items()))
        lines.append(f"Resources written: {written or 'none'}")
        if self.fhir is not None:
            f = self.fhir
            lines.append(f"FHIR server: {f['created']:,} created, {f['updated']:,} updated or unchanged, "
                         f"{f['bundles']:,} transactions, {f['retries']:,} retries, "
                         f"{f['dead_lettered']:,} dead-lettered")
            if f["dead_lettered"]:
                lines.append(f"  refused resources and the server's reasons: {self.dead_letter_store} "
                             "(`wearfhir dlq list`, fix, then `wearfhir dlq replay`)")
        if self.rejections:
            listed = f" (listed in {self.rejected_file})" if self.rejected_file else ""
            lines.append(f"Rejected: {sum(self.rejections.values()):,}{listed}")
            for (reason, vtype), count in sorted(self.rejections.items(), key=lambda kv: -kv[1]):
                lines.append(f"    {count:>10,}  {reason} [{vtype}]  e.g. {'; '.join(self.examples[(reason, vtype)])}")
        else:
            lines.append("Rejected: 0")
        for src in self.sources:
            if src.stopped:
                lines.append(f"INCOMPLETE: {src.stopped}")
        return "\n".join(lines)


def _counted(count: int, noun: str) -> str:
    """``1 exact duplicate``, ``2 exact duplicates``."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _zone_line(src: SourceReport) -> str:
    """What the local days, nights and hours of this source follow."""
    if src.timezone_origin == "option":
        return f"time zone: {src.timezone} (--timezone); records with their own HKTimeZone keep theirs"
    if src.timezone_origin == "export":
        return (f"time zone: {src.timezone} (named by {src.zone_records:,} records' HKTimeZone; --timezone ZONE "
                "overrides it)")
    written = f" ({src.written_offset})" if src.written_offset else ""
    return ("time zone: none known — day, night and hour windows follow the UTC offset the export wrote"
            f"{written}, which is the offset when the export was made, not necessarily the patient's clock "
            "(an hour off for half the year across DST). Pass --timezone ZONE (e.g. --timezone Europe/Berlin).")
