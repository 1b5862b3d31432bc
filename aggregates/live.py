"""The stream worker's state of one (patient, metric): duplicate filter, live windows, horizon. Pure (no I/O).

A :class:`LiveKey` takes sample batches as they arrive (any order, any repetition) and, at each flush, gives
the windows that changed, with statuses from the wall clock: ``preliminary`` while a window is open (its end plus
the grace of its kind has not passed), ``final`` once, ``amended`` after that. It keeps state within a horizon:
after a flush, windows that ended more than ``horizon`` seconds ago are forgotten, with the duplicate filter's
memory of their samples, unless samples for old windows keep arriving (an import of history: the state waits
until none came for ``idle`` seconds). A sample for a forgotten window is *late*: it is handed back to the caller
(to dead-letter and count), never folded into a window that no longer holds its other samples.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from aggregates.accumulate import AccumulatorSpec, Flushed, SummaryAccumulator
from aggregates.columns import SampleColumns, source_id
from mappers.dedup import HorizonFilter
from mappers.sample import Sample, SampleBatch
from mappers.tables import Metric

__all__ = ["Accepted", "LiveKey", "LiveSettings"]

HOUR = 3600.0
DAY = 86400.0


@dataclass(frozen=True)
class LiveSettings:
    """How the worker's windows open, close and age (seconds)."""

    horizon: float = 3 * DAY  # a window's state is kept this long after its end
    idle: float = HOUR  # ...and at least this long after a sample last arrived for a window older than that
    grace: dict[str, float] = field(default_factory=lambda: {"hour": 600.0, "day": 2 * HOUR, "night": 2 * HOUR,
                                                             "cgm": 2 * HOUR})
    flush_every: float = 30.0  # a key with new samples writes its windows (preliminary or final) this often
    evict_every: float = HOUR  # how often a key holding state checks whether old windows can go

    def __post_init__(self) -> None:
        longest = max(self.grace.values(), default=0.0)
        if self.horizon <= longest:
            raise ValueError(f"the state horizon ({self.horizon:.0f} s) must be longer than the longest grace "
                             f"({longest:.0f} s): a window must be final before its state can go")
        if self.flush_every <= 0 or self.evict_every <= 0 or self.idle < 0:
            raise ValueError("flush_every and evict_every must be positive, idle not negative")


class Accepted(NamedTuple):
    """What one batch did to a key's state."""

    kept: list[Sample]  # new samples (raw Observations are written for these)
    duplicates: int  # exact repeats dropped
    same_slot: int  # kept samples sharing a slot with another value (value identity)
    replaced: int  # slots whose earlier value was replaced (slot identity)
    late: list[Sample]  # samples for windows whose state is gone: not folded


class LiveKey:
    """State of one (patient, metric) in the worker."""

    def __init__(self, patient: str, metric: Metric, spec: AccumulatorSpec, settings: LiveSettings) -> None:
        self.patient = patient
        self.metric = metric
        self.settings = settings
        self.acc = SummaryAccumulator(spec) if spec.windows else None
        self.filter = HorizonFilter(bucket_seconds=HOUR)  # forgotten hour by hour: memory follows the horizon
        self.boundary = float("-inf")  # samples starting before this are late: their windows are gone
        self.last_old_sample = float("-inf")  # wall clock when a sample for a window past the horizon last came
        self.last_evict = float("-inf")
        self.next_flush: float | None = None

    def snapshot(self) -> LiveKey:
        """An independent copy for a recovery snapshot (arrays shared: no update writes into one)."""
        twin = copy.copy(self)
        twin.acc = self.acc.snapshot() if self.acc is not None else None
        twin.filter = self.filter.__deepcopy__({})
        return twin

    def add(self, batch: SampleBatch, now: float, identity: str = "value") -> Accepted:
        """Take a batch of this key's samples at wall-clock ``now``."""
        samples = batch.samples
        if self.last_evict == float("-inf"):
            self.last_evict = now  # the first eviction check comes one interval after the key's first batch
        late: list[Sample] = []
        if samples and samples[0].start_epoch < self.boundary or any(s.start_epoch < self.boundary
                                                                     for s in samples):
            late = [s for s in samples if s.start_epoch < self.boundary]
            samples = [s for s in samples if s.start_epoch >= self.boundary]
        result, replaced = self.filter.filter(samples, identity)
        kept = result.kept
        if kept and self.acc is None and min(s.start_epoch for s in kept) < now - self.settings.horizon:
            self.last_old_sample = now
        if kept and self.acc is not None:
            if replaced:
                self.acc.remove(np.array([s.start_epoch for s in replaced]), np.array([s.end_epoch for s in replaced]),
                                np.array([source_id(s.source) for s in replaced], dtype=np.uint32))
            self.acc.add(SampleColumns.from_samples(kept, tuple(self.metric.codes), self.metric.source_priority))
            if self.next_flush is None:
                self.next_flush = now + self.settings.flush_every
            if min(s.start_epoch for s in kept) < now - self.settings.horizon:
                self.last_old_sample = now
        return Accepted(kept, result.duplicates, result.same_slot, len(replaced), late)

    def flush(self, now: float) -> Flushed | None:
        """The windows that changed or became final by ``now``; then forget what is past the horizon."""
        self.next_flush = None
        if self.acc is None:  # no windows (raw only): forget old identities; a re-sent old sample is re-written
            if now - self.last_evict >= self.settings.evict_every:  # under its own id, which is harmless
                self.last_evict = now
                if now - self.last_old_sample >= self.settings.idle:
                    self.filter.evict(now - self.settings.horizon)
            return None
        flushed = self.acc.flush(now)
        if now - self.last_evict >= self.settings.evict_every or self.acc.kept_samples > 4_000_000:
            self.last_evict = now
            self._evict(now)
        return flushed if len(flushed) else None

    def _evict(self, now: float) -> None:
        assert self.acc is not None
        target = now - self.settings.horizon
        if target <= self.boundary or now - self.last_old_sample < self.settings.idle:
            return
        boundary = self.acc.evict(target)
        if boundary > self.boundary:
            self.boundary = boundary
            self.filter.evict(boundary)

    def next_wake(self, now: float) -> float | None:
        """When this key needs its timer: the next flush of new samples, the first open window to finalise, or
        the next eviction check while it holds state; None when there is nothing to do (no timer: idle keys
        cost nothing)."""
        times = [t for t in (self.next_flush, self.acc.next_close() if self.acc is not None else None)
                 if t is not None]
        if (self.acc is not None and self.acc.kept_samples) or self.filter.buckets or self.filter.slots:
            times.append(max(self.last_evict + self.settings.evict_every, now))
        return min(times) if times else None

    @property
    def kept_samples(self) -> int:
        return self.acc.kept_samples if self.acc is not None else 0
