"""Sample batches as numpy columns (times, offsets, values, source priority, stage codes): the kernels' input."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta, timezone

import numpy as np

from mappers.sample import Sample, SourceInfo

__all__ = ["SampleColumns", "source_priority"]

_UNIX_ORDINAL = 719163  # date(1970, 1, 1).toordinal()


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

    def valued(self) -> SampleColumns:
        """The rows that have a value (categorical samples such as sleep stages have none)."""
        missing = np.isnan(self.value)
        return self.take(~missing) if missing.any() else self

    @classmethod
    def from_samples(cls, samples: Sequence[Sample], codes: Sequence[str] = (),
                     priority_order: Sequence[str] = ()) -> SampleColumns:
        """Columns of a batch. Offsets and priorities are looked up once per distinct tzinfo / source."""
        # sources are keyed by id(): sources share one object per app/device (the normaliser caches them),
        # every sample is alive for the whole call, and hashing a source tuple per sample costs more than
        # the rest of the loop. Offsets are keyed by the (cheaply hashed, equal-comparing) tzinfo itself.
        offsets: dict[object, int] = {}
        ranks: dict[int, int] = {}
        starts: list[float] = []
        ends: list[float] = []
        offs: list[int] = []
        prios: list[int] = []
        values: list[float] = []
        nan = float("nan")
        add_start, add_end, add_offset, add_priority, add_value = (
            starts.append, ends.append, offs.append, prios.append, values.append)
        for s in samples:  # one pass, locals only: this loop is most of the summaries' per-sample cost
            first = s.start
            tz = first.tzinfo
            off = offsets.get(tz)
            if off is None:
                off = int((first.utcoffset() or timedelta(0)).total_seconds())
                if type(tz) is timezone:  # a fixed offset (what parsed timestamps carry); zones vary by date
                    offsets[tz] = off
            add_offset(off)
            # epoch seconds from the wall clock and the offset: 2.5x faster than datetime.timestamp()
            t: float = ((first.toordinal() - _UNIX_ORDINAL) * 86400 + first.hour * 3600 + first.minute * 60
                 + first.second - off)
            if first.microsecond:
                t += first.microsecond / 1e6
            add_start(t)
            last = s.end
            if last is first:
                add_end(t)
            else:
                end_off = offsets.get(last.tzinfo)  # only fixed offsets are cached
                if end_off is None:
                    add_end(last.timestamp())
                else:
                    add_end((last.toordinal() - _UNIX_ORDINAL) * 86400 + last.hour * 3600 + last.minute * 60
                                + last.second + last.microsecond / 1e6 - end_off)
            source = s.source
            rank = ranks.get(id(source))
            if rank is None:
                rank = ranks[id(source)] = source_priority(source, priority_order)
            add_priority(rank)
            v = s.value
            add_value(nan if v is None else v)
        n = len(samples)
        start = np.array(starts, dtype=np.float64)
        end = np.array(ends, dtype=np.float64)
        offset = np.array(offs, dtype=np.int64)
        priority = np.array(prios, dtype=np.int64)
        value = np.array(values, dtype=np.float64)
        if codes:
            index = {c: i for i, c in enumerate(codes)}
            code = np.fromiter((index.get(s.code, -1) if s.code else -1 for s in samples), dtype=np.int64, count=n)
        else:
            code = np.full(n, -1, dtype=np.int64)
        return cls(start, end, offset, value, priority, code)
