"""The ``import`` dataflow: one Apple Health export or Google Takeout → FHIR NDJSON and/or a server (ends at EOF).

Run it through ``wearfhir import`` (progress bar and report), or with Bytewax directly:
``WEARFHIR_SOURCE=export.zip WEARFHIR_PATIENT=Patient/123 WEARFHIR_OUT=out python -m bytewax.run flows.import_flow``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow

from connectors.fhir.sink import FhirSink, FhirWriter
from connectors.google_fit.source import TakeoutSource
from connectors.google_fit.takeout import looks_like_takeout
from connectors.healthkit.source import HealthKitExportSource, ProgressCallback
from connectors.ndjson import NdjsonSink
from flows.summarise import summarise
from mappers.batch import BatchMapper
from mappers.context import FhirContext
from mappers.dedup import FilterResult, SampleFilter
from mappers.sample import SampleBatch, batch_key
from mappers.summary import SummaryBuilder
from mappers.tables import metrics
from wearfhir.errors import ConfigError
from wearfhir.report import ImportReport
from wearfhir.settings import ImportSettings

__all__ = ["get_flow"]


def _drop_duplicates(seen: SampleFilter | None, batch: SampleBatch
                     ) -> tuple[SampleFilter, tuple[SampleBatch, FilterResult]]:
    seen = seen or SampleFilter()
    result = seen.filter(batch.samples)
    return seen, (batch._replace(samples=result.kept), result)


def get_flow(settings: ImportSettings, report: ImportReport | None = None,
             progress: ProgressCallback | None = None, fhir_writer: Callable[[], FhirWriter] | None = None
             ) -> Dataflow:
    """Build the import dataflow for ``settings``; counts go into ``report``.

    Output goes to NDJSON files when ``settings.out`` is set, and to a FHIR server when ``fhir_writer``
    (a factory of the writer, built inside the worker) is given; at least one of the two.
    """
    if settings.out is None and fhir_writer is None:
        raise ConfigError("nowhere to write: give an output directory, a FHIR server, or both")
    report = report if report is not None else ImportReport()
    ctx = FhirContext(identifier_base=settings.identifier_base)
    table = metrics()
    mapper = BatchMapper(table, ctx, settings.raw)
    flow = Dataflow("wearfhir_import")
    source: Any
    if looks_like_takeout(settings.source):  # a Google Takeout "Fit" export, recognised by its content
        source = TakeoutSource(settings.source, settings.patient, timezone=settings.timezone)
    else:
        source = HealthKitExportSource(settings.source, settings.patient, chunk_bytes=settings.chunk_bytes,
                                       progress=progress, timezone=settings.timezone)
    items = op.input("read_export", flow, source)
    split = op.branch("split_samples", items, lambda item: isinstance(item, SampleBatch))
    keyed = op.key_on("key_patient_metric", split.trues, lambda b: batch_key(b.patient, b.metric))
    unique = op.stateful_map("drop_duplicates", keyed, _drop_duplicates)
    mapped = op.map(
        "to_fhir",
        unique,
        lambda kv: mapper(kv[1][0], duplicates=kv[1][1].duplicates, same_slot=kv[1][1].same_slot),
    )
    streams = [mapped, split.falses]
    if settings.summaries:
        batches = op.map_value("drop_counts", unique, lambda pair: pair[0])
        summaries = summarise("summarise", batches, table, SummaryBuilder(ctx), settings.summaries,
                              settings.cgm_days)
        streams.append(op.map("unkey_summaries", summaries, lambda kv: kv[1]))
    outputs = op.merge("merge_outputs", *streams)
    if settings.out is not None:
        op.output("write_ndjson", op.key_on("one_writer", outputs, lambda _: "ndjson"),
                  NdjsonSink(settings.out, report, ctx))
    if fhir_writer is not None:
        op.output("write_fhir", op.key_on("one_fhir_writer", outputs, lambda _: "fhir"),
                  FhirSink(fhir_writer, report, count_inputs=settings.out is None,
                           rejected=settings.rejected if settings.out is None else None))
    return flow


def __getattr__(name: str) -> Any:
    # `python -m bytewax.run flows.import_flow` looks up `flow`: build it from the environment then.
    if name == "flow":
        return get_flow(ImportSettings.from_env())
    raise AttributeError(name)
