"""Sample batches as numpy columns (times, offsets, values, source priority, stage codes): the kernels' input."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta, timezone

import numpy as np

from mappers.sample import Sample, SourceInfo

__all__ = ["SampleColumns", "source_priority"]


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


@dataclass(frozen=True, slots=True)
class SampleColumns:
    """Aligned per-sample arrays of one (patient, metric), in arrival order."""

    start: np.ndarray  # float64 epoch seconds
    end: np.ndarray  # float64 epoch seconds
    offset: np.ndarray  # int64 UTC offset of the start, seconds (the patient's local clock)
    value: np.ndarray  # float64; NaN for categorical samples
    priority: np.ndarray  # int64 source priority (higher wins where intervals overlap)
    code: np.ndarray  # int64 index of the categorical code in the metric's code list; -1 if none

    def __len__(self) -> int:
        return len(self.start)

    @classmethod
    def empty(cls) -> SampleColumns:
        """No samples."""
        f, i = np.zeros(0, dtype=np.float64), np.zeros(0, dtype=np.int64)
        return cls(f, f, i, f, i, i)

    @classmethod
    def concat(cls, parts: Sequence[SampleColumns]) -> SampleColumns:
        """One set of columns from many, in order."""
        if len(parts) == 1:
            return parts[0]
        if not parts:
            return cls.empty()
        return cls(*(np.concatenate([getattr(p, name) for p in parts]) for name in cls.__slots__))

    def take(self, index: np.ndarray) -> SampleColumns:
        """The rows at ``index`` (an integer or boolean array)."""
        return SampleColumns(*(getattr(self, name)[index] for name in self.__slots__))

    @classmethod
    def from_samples(cls, samples: Sequence[Sample], codes: Sequence[str] = (),
                     priority_order: Sequence[str] = ()) -> SampleColumns:
        """Columns of a batch. Offsets and priorities are looked up once per distinct tzinfo / source."""
        n = len(samples)
        start = np.fromiter((s.start.timestamp() for s in samples), dtype=np.float64, count=n)
        end = np.fromiter((s.end.timestamp() for s in samples), dtype=np.float64, count=n)
        offsets: dict[object, int] = {}
        ranks: dict[SourceInfo, int] = {}

        def offset_of(sample: Sample) -> int:
            tz = sample.start.tzinfo
            got = offsets.get(tz)
            if got is None:
                got = int((sample.start.utcoffset() or timedelta(0)).total_seconds())
                if type(tz) is timezone:  # a fixed offset (what parsed timestamps carry); zones vary by date
                    offsets[tz] = got
            return got

        def rank_of(sample: Sample) -> int:
            got = ranks.get(sample.source)
            if got is None:
                got = ranks[sample.source] = source_priority(sample.source, priority_order)
            return got

        offset = np.fromiter((offset_of(s) for s in samples), dtype=np.int64, count=n)
        priority = np.fromiter((rank_of(s) for s in samples), dtype=np.int64, count=n)
        nan = float("nan")
        value = np.fromiter((nan if s.value is None else s.value for s in samples), dtype=np.float64, count=n)
        if codes:
            index = {c: i for i, c in enumerate(codes)}
            code = np.fromiter((index.get(s.code, -1) if s.code else -1 for s in samples), dtype=np.int64, count=n)
        else:
            code = np.full(n, -1, dtype=np.int64)
        return cls(start, end, offset, value, priority, code)
