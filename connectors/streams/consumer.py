"""The consumer side of the worker's input: a stream entry → per-metric work items, or an input dead letter."""

from __future__ import annotations

from collections.abc import Container
from typing import NamedTuple

from connectors.streams.codec import DecodeError, decode_entry
from connectors.streams.deadletter import InputDeadLetter
from connectors.streams.source import StreamEntry
from mappers.batch import VENDOR_SYSTEMS
from mappers.sample import SampleBatch

__all__ = ["WorkItem", "entry_items"]


class WorkItem(NamedTuple):
    """The samples of one metric from one entry, with what the worker needs to know of the entry."""

    batch: SampleBatch
    identity: str  # value | slot (see connectors.streams.codec)
    origin: str
    stream: str
    entry_id: str
    producer: str


def entry_items(entry: StreamEntry, known_metrics: Container[str]) -> list[WorkItem | InputDeadLetter]:
    """Decode one entry; an entry that cannot be used becomes one dead letter (with its fields, for a replay),
    and the samples of a metric this worker does not know become one too (the rest of the entry is used)."""
    try:
        decoded = decode_entry(entry.fields)
    except DecodeError as exc:
        producer = entry.fields.get(b"producer", b"").decode(errors="replace")
        return [InputDeadLetter(exc.reason, str(exc), entry.stream, entry.entry_id, producer, fields=entry.fields)]
    out: list[WorkItem | InputDeadLetter] = []
    unknown = {s.origin for b in decoded.batches for s in b.samples} - VENDOR_SYSTEMS.keys()
    if unknown:
        return [InputDeadLetter("unknown_origin", f"origin(s) {', '.join(sorted(unknown))} not known to this worker "
                                f"(known: {', '.join(VENDOR_SYSTEMS)}): upgrade the worker, then replay the dead "
                                "letter", entry.stream, entry.entry_id, decoded.producer, decoded.patient,
                                samples=decoded.samples, fields=entry.fields)]
    for batch in decoded.batches:
        if batch.metric not in known_metrics:
            out.append(InputDeadLetter(
                "unknown_metric", f"metric {batch.metric!r} is not in this worker's mapping tables: upgrade the "
                "worker, then replay the dead letter", entry.stream, entry.entry_id, decoded.producer,
                decoded.patient, batch.metric, len(batch.samples), fields=entry.fields))
            continue
        out.append(WorkItem(batch, decoded.identity, decoded.origin, entry.stream, entry.entry_id, decoded.producer))
    return out
