"""Sample batches as numpy columns (times, offsets, values, sources, stage codes): the kernels' input."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from operator import itemgetter

import numpy as np

from mappers.sample import Sample, SourceInfo

__all__ = ["SampleColumns", "source_id", "source_priority"]

_START_EPOCH, _END_EPOCH, _UTC_OFFSET, _VALUE, _SOURCE, _CODE = (
    itemgetter(Sample._fields.index(name))
    for name in ("start_epoch", "end_epoch", "utc_offset", "value", "source", "code"))


def source_priority(source: SourceInfo, order: Sequence[str]) -> int:
    """Rank of a source for de-duplication: ``len(order)`` for the first name fragment that matches, 0 if none.

    The device model (``Watch``, ``iPhone``), then the device name, then the app name are searched,
    case-insensitively, for each fragment in turn (highest priority first).
    """
    device = source.device
    names = [n.lower() for n in ((device.model, device.name) if device else ()) if n]
    names.append(source.name.lower())
    for rank, fragment in enumerate(order):
        wanted = fragment.lower()
        if any(wanted in name for name in names):
            return len(order) - rank
    return 0


def source_id(source: SourceInfo) -> int:
    """A stable uint32 id of a source: the CRC-32 of its name (the same in every process and run, unlike
    ``hash``, so recovery snapshots stay valid; sleep uses it to tell sources apart and break ties)."""
    return zlib.crc32(source.name.encode("utf-8"))


@dataclass(frozen=True, slots=True)
class SampleColumns:
    """Aligned per-sample arrays of one (patient, metric), in arrival order: 36 bytes a sample.

    Cumulative metrics, sleep and CGM keep these columns for the whole run, so the small ones are narrow.
    """

    start: np.ndarray  # float64 epoch seconds
    end: np.ndarray  # float64 epoch seconds
    offset: np.ndarray  # int32 UTC offset of the start, seconds (the patient's local clock)
    value: np.ndarray  # float64; NaN for categorical samples
    priority: np.ndarray  # int16 source priority (higher wins where intervals overlap)
    code: np.ndarray  # int16 index of the categorical code in the metric's code list; -1 if none
    source: np.ndarray  # uint32 source id (``source_id``)

    def __len__(self) -> int:
        return len(self.start)

    @classmethod
    def empty(cls) -> SampleColumns:
        """No samples."""
        f, small = np.zeros(0, dtype=np.float64), np.zeros(0, dtype=np.int16)
        return cls(f, f, np.zeros(0, dtype=np.int32), f, small, small, np.zeros(0, dtype=np.uint32))

    @classmethod
    def concat(cls, parts: Sequence[SampleColumns]) -> SampleColumns:
        """One set of columns from many, in order; what ``compact`` saved stays saved where all parts agree
        (a column constant in every part with one value, ``end`` sharing ``start`` in every part)."""
        parts = [p for p in parts if len(p)]
        if len(parts) == 1:
            return parts[0]
        if not parts:
            return cls.empty()

        def join(name: str) -> np.ndarray:
            columns = [getattr(p, name) for p in parts]
            first = columns[0]
            if all(c.strides[0] == 0 for c in columns) and len({c[0] for c in columns}) == 1:
                return np.broadcast_to(first[:1].copy(), (sum(len(c) for c in columns),))
            return np.concatenate(columns)

        start = join("start")
        end = start if all(p.end is p.start for p in parts) else join("end")
        return cls(start, end, join("offset"), join("value"), join("priority"), join("code"), join("source"))

    def take(self, index: np.ndarray) -> SampleColumns:
        """The rows at ``index`` (an integer or boolean array)."""
        return SampleColumns(*(getattr(self, name)[index] for name in self.__slots__))

    def compact(self) -> SampleColumns:
        """The same rows in less memory, losslessly: a column with one value throughout becomes a zero-stride
        (read-only) view of it, and ``end`` shares ``start``'s array when every sample is an instant.

        For columns kept for a whole run: a chunk of one source in one offset keeps 16-24 bytes a sample
        instead of 36. Joining chunks (``concat``) gives ordinary arrays again.
        """
        def constant(column: np.ndarray) -> np.ndarray:
            if len(column) > 1 and column.strides[0] and not np.any(column != column[0]):
                return np.broadcast_to(column[:1].copy(), column.shape)  # a copy: the view must not pin the column
            return column

        end = self.start if np.array_equal(self.end, self.start) else self.end
        return SampleColumns(self.start, end, constant(self.offset), self.value, constant(self.priority),
                             constant(self.code), constant(self.source))

    def valued(self) -> SampleColumns:
        """The rows that have a value (categorical samples such as sleep stages have none)."""
        missing = np.isnan(self.value)
        return self.take(~missing) if missing.any() else self

    @classmethod
    def from_samples(cls, samples: Sequence[Sample], codes: Sequence[str] = (),
                     priority_order: Sequence[str] = ()) -> SampleColumns:
        """Columns of a batch: the samples' own numeric clock (``start_epoch``, ``end_epoch``, ``utc_offset``),
        values (None → NaN), source priorities and ids computed once per distinct source, and code indexes."""
        n = len(samples)
        start = np.fromiter(map(_START_EPOCH, samples), dtype=np.float64, count=n)
        end = np.fromiter(map(_END_EPOCH, samples), dtype=np.float64, count=n)
        offset = np.fromiter(map(_UTC_OFFSET, samples), dtype=np.int32, count=n)
        value = np.array(list(map(_VALUE, samples)), dtype=np.float64)  # None becomes NaN
        # sources are keyed by id(): they share one object per app/device (sources cache them), every sample
        # is alive for the whole call, and hashing a source tuple per sample costs more than the lookup
        sources = list(map(_SOURCE, samples))
        ids = list(map(id, sources))
        distinct = dict(zip(ids, sources, strict=True))
        ranks = {key: source_priority(source, priority_order) for key, source in distinct.items()}
        names = {key: source_id(source) for key, source in distinct.items()}
        if len(ranks) == 1:
            priority = np.full(n, next(iter(ranks.values())), dtype=np.int16)
            source = np.full(n, next(iter(names.values())), dtype=np.uint32)
        else:
            priority = np.fromiter(map(ranks.__getitem__, ids), dtype=np.int16, count=n)
            source = np.fromiter(map(names.__getitem__, ids), dtype=np.uint32, count=n)
        if codes:
            index = {c: i for i, c in enumerate(codes)}
            code = np.fromiter((index.get(c, -1) for c in map(_CODE, samples)), dtype=np.int16, count=n)
        else:
            code = np.full(n, -1, dtype=np.int16)
        return cls(start, end, offset, value, priority, code, source)
