"""The ``summarise`` step: a keyed Bytewax stateful operator turning sample batches into summary Observations.

One state per (patient, metric) key holds the window statistics (``aggregates.accumulate``). Batches are
added as they arrive; at end of input every changed window is emitted (in the import flow every window is
final then). A flow that runs forever calls :meth:`SummaryLogic.on_notify` on a timer instead, and late
data re-emits the window it lands in under the same id with status ``amended``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Stream

from aggregates.accumulate import AccumulatorSpec, SummaryAccumulator
from aggregates.columns import SampleColumns
from mappers.sample import SampleBatch
from mappers.summary import SUMMARY_PART_WINDOWS, SummaryBatch, SummaryBuilder
from mappers.tables import Metric

__all__ = ["SummaryLogic", "accumulator_spec", "summarise"]


def accumulator_spec(metric: Metric, wanted: frozenset[str], cgm_days: int = 14,
                     zone: str | None = None) -> AccumulatorSpec:
    """What to summarise for ``metric``: its own summary windows that the run asked for, in the patient's
    local days of ``zone`` (an IANA name; None: the samples' own offsets)."""
    return AccumulatorSpec(
        windows=frozenset(metric.summaries) & wanted,
        cumulative=metric.aggregation == "cumulative",
        edges=metric.bands,
        stages=tuple(metric.codes),
        cgm_days=cgm_days,
        zone=zone,
    )


class SummaryLogic(op.StatefulLogic[Any, SummaryBatch, Any]):
    """Per-key logic of the ``summarise`` step; the key's metric is learned from its first batch."""

    def __init__(self, metrics: dict[str, Metric], builder: SummaryBuilder, wanted: frozenset[str],
                 cgm_days: int, state: tuple[str, str, SummaryAccumulator] | None,
                 flush_every: timedelta | None = None) -> None:
        self._metrics = metrics
        self._builder = builder
        self._wanted = wanted
        self._cgm_days = cgm_days
        self._flush_every = flush_every
        self._next_flush: datetime | None = None
        self._patient, self._metric_key, self._acc = state if state is not None else ("", "", None)

    def on_item(self, value: Any) -> tuple[Iterable[SummaryBatch], bool]:
        batch: SampleBatch = value
        if not batch.samples:
            return (), self.RETAIN
        metric = self._metrics[batch.metric]
        if self._acc is None:
            self._patient, self._metric_key = batch.patient, batch.metric
            self._acc = SummaryAccumulator(accumulator_spec(metric, self._wanted, self._cgm_days, batch.timezone))
        if not self._acc.spec.windows:
            return (), self.RETAIN
        cols = SampleColumns.from_samples(batch.samples, tuple(metric.codes), metric.source_priority)
        self._acc.add(cols)
        return (), self.RETAIN

    def _emit(self) -> list[SummaryBatch]:
        if self._acc is None or not self._acc.spec.windows:
            return []
        flushed = self._acc.flush()
        if not len(flushed):
            return []
        metric = self._metrics[self._metric_key]
        return [SummaryBatch(self._patient, metric, part, self._builder)
                for part in flushed.chunks(SUMMARY_PART_WINDOWS)]

    def on_notify(self) -> tuple[Iterable[SummaryBatch], bool]:
        self._next_flush = None
        return self._emit(), self.RETAIN

    def on_eof(self) -> tuple[Iterable[SummaryBatch], bool]:
        parts = self._emit()
        self._acc = None  # every key flushes in turn at EOF: free this one's sample columns before the next
        return parts, self.DISCARD

    def notify_at(self) -> datetime | None:
        if self._flush_every is None:
            return None
        if self._next_flush is None:
            self._next_flush = datetime.now(UTC) + self._flush_every
        return self._next_flush

    def snapshot(self) -> Any:
        return (self._patient, self._metric_key, self._acc.snapshot()) if self._acc is not None else None


def summarise(step_id: str, batches: Stream[tuple[str, Any]], metrics: dict[str, Metric],
              builder: SummaryBuilder, wanted: frozenset[str], cgm_days: int = 14,
              flush_every: timedelta | None = None) -> Stream[tuple[str, SummaryBatch]]:
    """Keyed sample batches (by ``batch_key``) → keyed summary batches, emitted at EOF (or on a timer)."""
    return op.stateful(
        step_id, batches,
        lambda state: SummaryLogic(metrics, builder, wanted, cgm_days, state, flush_every),
    )
