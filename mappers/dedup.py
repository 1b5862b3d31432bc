"""Exact-duplicate removal across a whole run, in flat memory: 8 bytes per distinct sample.

Exact duplicates (equal in every attribute that matters, value included) are dropped. Records of the same
slot (type, source, start, end) with another value are distinct samples: kept, and counted apart so a
report can say how many there were. One key serves both questions: 40 bits of the slot's BLAKE2b, then 24
bits of a CRC-32 of the value, so a slot's samples sort next to each other and "was this slot seen?" is a
range look-up in the same sorted set as "was this sample seen?". Keys are computed for a whole batch at once
(:func:`identity_keys`): BLAKE2b once per distinct (origin, patient, metric, type, source), then integer mixing of
the interval's and the value's bits in numpy.
"""

from __future__ import annotations

import hashlib
import operator
import zlib
from typing import NamedTuple

import numpy as np

from mappers.ids import identity_head, value_text
from mappers.sample import Sample

__all__ = ["DuplicateFilter", "FilterResult", "HorizonFilter", "SampleFilter", "identity_key", "identity_keys",
           "slot_key", "slot_keys"]


_HEADS: dict[tuple[str, str, str, str, str], int] = {}
_MASK64 = (1 << 64) - 1


def _head_hash(sample: Sample) -> int:
    """A 64-bit fingerprint of :func:`~mappers.ids.identity_head` (BLAKE2b, cached per distinct head)."""
    head = identity_head(sample)
    found = _HEADS.get(head)
    if found is None:
        if len(_HEADS) > 10_000:
            _HEADS.clear()
        found = _HEADS[head] = int.from_bytes(hashlib.blake2b("|".join(head).encode(), digest_size=8).digest(),
                                              "little")
    return found


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser over uint64 (wrapping arithmetic): every input bit moves every output bit."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


SLOT_BITS = 40  # of a sample key: the slot's fingerprint; the other 24 bits are the value's checksum
_VALUE_BITS = 64 - SLOT_BITS
_VALUE_MASK = (1 << _VALUE_BITS) - 1
_INT_FLAG = np.uint64(0x9E3779B97F4A7C15)  # told apart from the same number as a float: 8 and 8.0 are two values
_GET_START, _GET_END, _GET_VALUE = (operator.attrgetter(name) for name in ("start_epoch", "end_epoch", "value"))


def slot_keys(samples: list[Sample]) -> np.ndarray:
    """Stable 64-bit keys of the samples' slots (:func:`~mappers.ids.identity_head` plus the interval), vectorised.

    Stable across processes (BLAKE2b of the head, then integer mixing; never ``hash()``), so they can live in a
    recovery snapshot.
    """
    n = len(samples)
    heads = np.fromiter(map(_head_hash, samples), dtype=np.uint64, count=n)
    start = np.fromiter(map(_GET_START, samples), dtype=np.float64, count=n).view(np.uint64)
    end = np.fromiter(map(_GET_END, samples), dtype=np.float64, count=n).view(np.uint64)
    with np.errstate(over="ignore"):
        return _mix(heads ^ _mix(start ^ _mix(end + np.uint64(1))))


def _value_checksums(samples: list[Sample]) -> np.ndarray:
    """24-bit checksums of the samples' values (:func:`~mappers.ids.value_text`): plain numbers from their bits,
    coded and composite values from their canonical text."""
    n = len(samples)
    values = list(map(_GET_VALUE, samples))
    plain = all(s.code is None and not s.components for s in samples)
    if plain and all(type(v) is float for v in values):
        bits = np.array(values, dtype=np.float64).view(np.uint64)
    else:
        bits = np.empty(n, dtype=np.uint64)
        for i, (sample, value) in enumerate(zip(samples, values, strict=True)):
            if sample.code is None and not sample.components and value is not None:
                number = np.float64(value).view(np.uint64)
                bits[i] = number ^ _INT_FLAG if type(value) is int else number
            else:  # categories, components, no value: the canonical text (never equal to a plain number's bits)
                bits[i] = (zlib.crc32(value_text(sample).encode()) << 32) | 0xFFFFFFFF
    with np.errstate(over="ignore"):
        return _mix(bits) & np.uint64(_VALUE_MASK)


def identity_keys(samples: list[Sample]) -> np.ndarray:
    """Stable 64-bit keys of the samples' identities: the top 40 bits of the slot key, then 24 bits of a checksum
    of the value, vectorised over a batch (~0.5 µs a sample).

    Odds of a wrong answer, per pair of samples of one (patient, metric): two slots sharing a fingerprint
    2^-40 (a same-slot count one too high: ~0.5 expected in a million samples of one metric), two values of
    one slot sharing a checksum 2^-24 (same-slot records are rare: tens in an export), both at once 2^-64
    (a sample dropped as a duplicate it is not).
    """
    if not samples:
        return np.zeros(0, dtype=np.uint64)
    slots = slot_keys(samples)
    return (slots >> np.uint64(_VALUE_BITS) << np.uint64(_VALUE_BITS)) | _value_checksums(samples)


def slot_key(sample: Sample) -> int:
    """The slot key of one sample (:func:`slot_keys`)."""
    return int(slot_keys([sample])[0])


def identity_key(sample: Sample) -> int:
    """The identity key of one sample (:func:`identity_keys`)."""
    return int(identity_keys([sample])[0])


class DuplicateFilter:
    """Remembers every sample identity it has passed and drops repeats.

    Keys are kept in sorted numpy runs merged like a binary counter (a log-structured set), so
    membership is a vectorised ``searchsorted`` per run and memory stays ~8 bytes per key.
    """

    def __init__(self) -> None:
        self._runs: list[np.ndarray] = []
        self.seen = 0

    def __deepcopy__(self, memo: dict[int, object]) -> DuplicateFilter:
        """A copy sharing the key runs: a run is never changed once stored (merging builds a new one), so
        Bytewax's per-epoch snapshot (``copy.deepcopy`` of the state) costs a list copy, not 8 bytes a key."""
        twin = DuplicateFilter()
        twin._runs = list(self._runs)
        twin.seen = self.seen
        return twin

    def __contains__(self, key: int) -> bool:
        probe = np.array([key], dtype=np.uint64)
        return bool(self._member(probe)[0])

    def _member(self, keys: np.ndarray) -> np.ndarray:
        found = np.zeros(len(keys), dtype=bool)
        for run in self._runs:
            pos = np.searchsorted(run, keys)
            pos[pos == len(run)] = 0
            found |= run[pos] == keys
        return found

    def _has_range(self, low: np.ndarray, high: np.ndarray) -> np.ndarray:
        """Whether any remembered key lies in [low, high], element-wise."""
        found = np.zeros(len(low), dtype=bool)
        for run in self._runs:
            pos = np.searchsorted(run, low)
            inside = pos < len(run)
            found[inside] |= run[pos[inside]] <= high[inside]
        return found

    def has_prefix(self, keys: np.ndarray, low_bits: int) -> np.ndarray:
        """Whether a remembered key shares each key's bits above the lowest ``low_bits``, element-wise."""
        low = keys >> np.uint64(low_bits) << np.uint64(low_bits)
        return self._has_range(low, low | np.uint64((1 << low_bits) - 1))

    def keep_mask(self, keys: np.ndarray) -> np.ndarray:
        """Mark which keys are new (first occurrence, never seen before) and remember them."""
        if len(keys) == 0:
            return np.zeros(0, dtype=bool)
        unique, first = np.unique(keys, return_index=True)
        new = ~self._member(unique)
        keep = np.zeros(len(keys), dtype=bool)
        keep[first[new]] = True
        self._remember(unique[new])
        return keep

    def _remember(self, fresh: np.ndarray) -> None:
        """Add sorted, unique keys not yet remembered."""
        if not len(fresh):
            return
        self._runs.append(fresh)
        self.seen += len(fresh)
        while len(self._runs) > 1 and len(self._runs[-2]) <= 2 * len(self._runs[-1]):
            last = self._runs.pop()
            merged = np.concatenate((self._runs.pop(), last))
            merged.sort()
            self._runs.append(merged)


class FilterResult(NamedTuple):
    """What :meth:`SampleFilter.filter` kept and how many it dropped or kept alongside another."""

    kept: list[Sample]
    duplicates: int  # exact duplicates dropped
    same_slot: int  # kept samples whose slot (type, source, start, end) an earlier sample had, with another value


class SampleFilter:
    """The run's duplicate filter: drops exact duplicates, and counts distinct samples sharing a slot."""

    def __init__(self) -> None:
        self.keys = DuplicateFilter()

    def __deepcopy__(self, memo: dict[int, object]) -> SampleFilter:
        """A cheap copy for Bytewax's per-epoch snapshot (see :meth:`DuplicateFilter.__deepcopy__`)."""
        twin = SampleFilter()
        twin.keys = self.keys.__deepcopy__(memo)
        return twin

    def filter(self, samples: list[Sample]) -> FilterResult:
        """The samples not seen before (first occurrence kept, order preserved), with the counts."""
        n = len(samples)
        keys = identity_keys(samples)
        slot_seen = self.keys.has_prefix(keys, _VALUE_BITS)  # before this batch
        keep = self.keys.keep_mask(keys)
        kept_keys = keys[keep]
        # a kept sample shares a slot when the slot was seen before this batch or earlier in it
        _, first_of_slot = np.unique(kept_keys >> np.uint64(_VALUE_BITS), return_index=True)
        same_slot = slot_seen[keep]
        later = np.ones(len(kept_keys), dtype=bool)
        later[first_of_slot] = False
        kept = [s for s, k in zip(samples, keep.tolist(), strict=True) if k]
        return FilterResult(kept, n - len(kept), int((same_slot | later).sum()))


_DAY = 86400.0


class HorizonFilter:
    """The worker's duplicate filter: :class:`SampleFilter`\\ s per bucket of the samples' starts (UTC days by
    default; the worker's keys use hours), so the buckets before a boundary can be forgotten (``evict``) once the
    windows they fed are gone; memory stays bounded by the state horizon instead of growing with every sample ever
    seen.

    ``identity="slot"`` (sources that re-send a still-open bucket with a newer value): a slot (type, source,
    start, end) holds one value; a sample of a known slot with another value *replaces* it and is returned in
    ``replaced``, so the caller can take the old value out of its windows.
    """

    def __init__(self, bucket_seconds: float = _DAY) -> None:
        self.bucket_seconds = bucket_seconds  # samples are remembered per bucket of their start (UTC days by default)
        self.buckets: dict[int, SampleFilter] = {}
        self.slots: dict[int, dict[int, int]] = {}  # slot identity: bucket → slot key → value key

    def __deepcopy__(self, memo: dict[int, object]) -> HorizonFilter:
        twin = HorizonFilter(self.bucket_seconds)
        twin.buckets = {day: f.__deepcopy__(memo) for day, f in self.buckets.items()}
        twin.slots = {day: dict(slots) for day, slots in self.slots.items()}
        return twin

    @property
    def remembered(self) -> int:
        """How many sample identities are held."""
        return sum(f.keys.seen for f in self.buckets.values()) + sum(len(s) for s in self.slots.values())

    def filter(self, samples: list[Sample], identity: str = "value") -> tuple[FilterResult, list[Sample]]:
        """(the new samples with the counts, the kept samples that replace an earlier value of their slot)."""
        if identity == "slot":
            return self._filter_slots(samples)
        by_day: dict[int, list[int]] = {}
        for i, s in enumerate(samples):
            by_day.setdefault(int(s.start_epoch // self.bucket_seconds), []).append(i)
        if len(by_day) == 1:
            day = next(iter(by_day))
            return self.buckets.setdefault(day, SampleFilter()).filter(samples), []
        keep = [False] * len(samples)
        duplicates = same_slot = 0
        for day, rows in by_day.items():
            part = self.buckets.setdefault(day, SampleFilter()).filter([samples[i] for i in rows])
            duplicates += part.duplicates
            same_slot += part.same_slot
            # part.kept is the day's rows that were kept, in order: match them by position, not by id(), which
            # would keep every repeat of one sample object that was sent twice
            kept = iter(part.kept)
            wanted = next(kept, None)
            for i in rows:
                if wanted is not None and samples[i] is wanted:
                    keep[i] = True
                    wanted = next(kept, None)
        return FilterResult([s for s, k in zip(samples, keep, strict=True) if k], duplicates, same_slot), []

    def _filter_slots(self, samples: list[Sample]) -> tuple[FilterResult, list[Sample]]:
        latest: dict[int, tuple[int, int, Sample]] = {}  # slot → (value key, day, the batch's last sample of it)
        slots, values = slot_keys(samples).tolist(), _value_checksums(samples).tolist()
        for s, slot, value in zip(samples, slots, values, strict=True):
            latest[slot] = (value, int(s.start_epoch // self.bucket_seconds), s)
        kept, replaced = [], []
        for slot, (value, day, sample) in latest.items():
            slots = self.slots.setdefault(day, {})
            before = slots.get(slot)
            if before == value:
                continue
            slots[slot] = value
            kept.append(sample)
            if before is not None:
                replaced.append(sample)
        order = {id(s): i for i, s in enumerate(samples)}
        kept.sort(key=lambda s: order[id(s)])
        return FilterResult(kept, len(samples) - len(kept), 0), replaced

    def evict(self, boundary: float) -> None:
        """Forget the days that end at or before ``boundary`` (epoch seconds)."""
        for store in (self.buckets, self.slots):
            for day in [d for d in store if (d + 1) * self.bucket_seconds <= boundary]:
                del store[day]
