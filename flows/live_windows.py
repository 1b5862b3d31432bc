"""The worker's keyed step: a Bytewax stateful operator around :class:`aggregates.live.LiveKey`.

Per (patient, metric): drop repeats, write raw Observations of new samples (per the ``--raw`` policy), keep the
windows, and on a timer (armed only while the key has unflushed samples, open windows or old state) write the
windows that changed or became final. Samples for windows whose state is gone go out as a ``late`` dead letter.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import bytewax.operators as op
import numpy as np
from bytewax.dataflow import Stream

from aggregates.live import LiveKey, LiveSettings
from connectors.streams.codec import encode_entry
from connectors.streams.consumer import WorkItem
from connectors.streams.deadletter import LATE_MESSAGE, InputDeadLetter
from flows.summarise import accumulator_spec
from mappers.batch import BatchMapper, writes_raw
from mappers.summary import SUMMARY_PART_WINDOWS, SummaryBatch, SummaryBuilder
from mappers.tables import Metric

__all__ = ["LiveContext", "LiveLogic", "live_windows"]

Clock = Callable[[], float]
log = logging.getLogger("wearfhir.worker.windows")


@dataclass
class LiveContext:
    """What every key's logic shares (built once per worker process)."""

    metrics: dict[str, Metric]
    mapper: BatchMapper
    builder: SummaryBuilder
    wanted: frozenset[str]
    cgm_days: int
    settings: LiveSettings
    clock: Clock = time.time
    recorder: Any = None  # wearfhir.worker_metrics.WorkerMetrics, or None
    keys: int = 0  # (patient, metric) states held by this process
    kept: int = 0  # samples they keep

    def held(self, keys: int, kept: int) -> None:
        """Account for a change in the states held (gauges for memory planning: ~24 B a kept sample)."""
        self.keys += keys
        self.kept += kept
        if self.recorder is not None:
            self.recorder.keys(self.keys)
            self.recorder.kept(self.kept)


class LiveLogic(op.StatefulLogic[WorkItem, Any, LiveKey]):
    """Per-key logic of the ``live_windows`` step."""

    def __init__(self, ctx: LiveContext, state: LiveKey | None) -> None:
        self._ctx = ctx
        self._key = state
        if state is not None:
            ctx.held(1, state.kept_samples)

    def on_item(self, value: WorkItem) -> tuple[Iterable[Any], bool]:
        try:
            return self._on_item(value)
        except Exception as exc:  # a poison batch must not stop the worker (a restart would meet it again)
            log.error("batch of %d %s samples from %s %s could not be processed (%s); dead-lettered",
                      len(value.batch.samples), value.batch.metric, value.stream, value.entry_id, type(exc).__name__)
            if self._ctx.recorder is not None:
                self._ctx.recorder.dead_letter("unprocessable", 1)
            batch = value.batch
            try:
                fields = encode_entry(batch.patient, batch.samples, timezone=batch.timezone, origin=value.origin,
                                      producer=value.producer, identity=value.identity)
            except Exception:  # the samples themselves are what failed: the entry id still finds them
                fields = {}
            return [InputDeadLetter("unprocessable", f"{type(exc).__name__} while processing the batch: a bug; "
                                    "report it, then replay the dead letter after the fix", value.stream,
                                    value.entry_id, value.producer, batch.patient, batch.metric, len(batch.samples),
                                    fields)], self.RETAIN

    def _on_item(self, value: WorkItem) -> tuple[Iterable[Any], bool]:
        ctx, batch = self._ctx, value.batch
        metric = ctx.metrics[batch.metric]
        if self._key is None:
            spec = replace(accumulator_spec(metric, ctx.wanted, ctx.cgm_days, batch.timezone), keep_all=True,
                           grace=dict(ctx.settings.grace))
            self._key = LiveKey(batch.patient, metric, spec, ctx.settings)
            ctx.held(1, 0)
        now = ctx.clock()
        before = self._key.kept_samples
        accepted = self._key.add(batch, now, value.identity)
        ctx.held(0, self._key.kept_samples - before)
        out: list[Any] = []
        recorder = ctx.recorder
        if recorder is not None:
            recorder.samples_in(value.origin, len(batch.samples))
            recorder.accepted(batch.metric, len(accepted.kept))
            recorder.duplicates(batch.metric, accepted.duplicates)
            recorder.replaced(batch.metric, accepted.replaced)
        if accepted.late:
            if recorder is not None:
                recorder.late(batch.metric, len(accepted.late))
                recorder.dead_letter("late", 1)
            fields = encode_entry(batch.patient, accepted.late, timezone=batch.timezone, origin=value.origin,
                                  producer=value.producer, identity=value.identity)
            out.append(InputDeadLetter("late", LATE_MESSAGE.format(n=len(accepted.late), metric=batch.metric),
                                       value.stream, value.entry_id, value.producer, batch.patient, batch.metric,
                                       len(accepted.late), fields))
        if accepted.kept and writes_raw(metric, ctx.mapper.policy):
            out.append(ctx.mapper(batch._replace(samples=accepted.kept), duplicates=accepted.duplicates,
                                  same_slot=accepted.same_slot, slot_identity=value.identity == "slot"))
        return out, self.RETAIN

    def on_notify(self) -> tuple[Iterable[Any], bool]:
        if self._key is None:
            return (), self.RETAIN
        ctx = self._ctx
        before = self._key.kept_samples
        flushed = self._key.flush(ctx.clock())
        ctx.held(0, self._key.kept_samples - before)
        if flushed is None:
            return (), self.RETAIN
        if ctx.recorder is not None:
            for window in ("hour", "day", "night", "cgm"):
                status = getattr(flushed, f"{window}_status")
                if status is not None:
                    for name, count in zip(*_counts(status), strict=True):
                        ctx.recorder.windows(window, name, count)
        return [SummaryBatch(self._key.patient, self._key.metric, part, ctx.builder)
                for part in flushed.chunks(SUMMARY_PART_WINDOWS)], self.RETAIN

    def on_eof(self) -> tuple[Iterable[Any], bool]:
        return (), self.RETAIN if self._key is not None else self.DISCARD  # the input never really ends

    def notify_at(self) -> datetime | None:
        if self._key is None:
            return None
        now = self._ctx.clock()
        wake = self._key.next_wake(now)
        if wake is None:
            return None
        return datetime.now(UTC) + timedelta(seconds=max(0.0, wake - now))

    def snapshot(self) -> LiveKey | None:
        return self._key.snapshot() if self._key is not None else None  # None: a key whose first batch failed


def _counts(status: Any) -> tuple[list[str], list[int]]:
    names, counts = np.unique(status, return_counts=True)
    return [str(n) for n in names], [int(c) for c in counts]


def live_windows(step_id: str, items: Stream[tuple[str, WorkItem]], ctx: LiveContext) -> Stream[tuple[str, Any]]:
    """Keyed work items → keyed outputs (raw MappedBatches, SummaryBatches, late dead letters)."""
    return op.stateful(step_id, items, lambda state: LiveLogic(ctx, state))
