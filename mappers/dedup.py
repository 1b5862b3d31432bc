"""Exact-duplicate removal across a whole run, in flat memory: 16 bytes per distinct sample.

Exact duplicates (equal in every attribute that matters, value included) are dropped. Records of the same
slot (type, source, start, end) with another value are distinct samples: kept, and counted apart so a
report can say how many there were.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from typing import NamedTuple

import numpy as np

from mappers.ids import identity_head, value_text
from mappers.sample import Sample

__all__ = ["DuplicateFilter", "FilterResult", "SampleFilter", "identity_key", "slot_key"]


_PREFIXES: dict[tuple[str, str, str, str, str], bytes] = {}
_PACK_TIMES = struct.Struct("<dd").pack


def _prefix(sample: Sample) -> bytes:
    head = identity_head(sample)
    prefix = _PREFIXES.get(head)
    if prefix is None:
        if len(_PREFIXES) > 10_000:
            _PREFIXES.clear()
        prefix = _PREFIXES[head] = "|".join(head).encode() + b"|"
    return prefix


def _digest(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def slot_key(sample: Sample) -> int:
    """A stable 64-bit key of a sample's slot: :func:`~mappers.ids.identity_head` plus its interval.

    Stable across processes (BLAKE2b, not ``hash()``), so it can live in a recovery snapshot.
    """
    return _digest(_prefix(sample) + _PACK_TIMES(sample.start_epoch, sample.end_epoch))


_MIX = 0x9E3779B97F4A7C15  # odd: multiplying spreads a 32-bit value checksum over 64 bits
_MASK = (1 << 64) - 1


def _with_value(slot: int, sample: Sample) -> int:
    return slot ^ ((zlib.crc32(value_text(sample).encode()) + 1) * _MIX & _MASK)


def identity_key(sample: Sample) -> int:
    """A stable 64-bit key of a sample's identity: its slot key mixed with a checksum of its value
    (:func:`~mappers.ids.value_text`). Two values of one slot share a key with odds of 1 in 2^32 (CRC-32), keys
    of different slots with odds of 1 in 2^64; one BLAKE2b per sample serves both keys."""
    return _with_value(slot_key(sample), sample)


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

    def keep_mask(self, keys: np.ndarray) -> np.ndarray:
        """Mark which keys are new (first occurrence, never seen before) and remember them."""
        if len(keys) == 0:
            return np.zeros(0, dtype=bool)
        unique, first = np.unique(keys, return_index=True)
        new = ~self._member(unique)
        keep = np.zeros(len(keys), dtype=bool)
        keep[first[new]] = True
        fresh = unique[new]
        if len(fresh):
            self._runs.append(fresh)
            self.seen += len(fresh)
            while len(self._runs) > 1 and len(self._runs[-2]) <= 2 * len(self._runs[-1]):
                last = self._runs.pop()
                merged = np.concatenate((self._runs.pop(), last))
                merged.sort()
                self._runs.append(merged)
        return keep


class FilterResult(NamedTuple):
    """What :meth:`SampleFilter.filter` kept and how many it dropped or kept alongside another."""

    kept: list[Sample]
    duplicates: int  # exact duplicates dropped
    same_slot: int  # kept samples whose slot (type, source, start, end) an earlier sample had, with another value


class SampleFilter:
    """The run's duplicate filter: drops exact duplicates, and counts distinct samples sharing a slot."""

    def __init__(self) -> None:
        self.identities = DuplicateFilter()
        self.slots = DuplicateFilter()

    def __deepcopy__(self, memo: dict[int, object]) -> SampleFilter:
        """A cheap copy for Bytewax's per-epoch snapshot (see :meth:`DuplicateFilter.__deepcopy__`)."""
        twin = SampleFilter()
        twin.identities = self.identities.__deepcopy__(memo)
        twin.slots = self.slots.__deepcopy__(memo)
        return twin

    def filter(self, samples: list[Sample]) -> FilterResult:
        """The samples not seen before (first occurrence kept, order preserved), with the counts."""
        n = len(samples)
        slot_list = [slot_key(s) for s in samples]
        identities = np.fromiter(map(_with_value, slot_list, samples), dtype=np.uint64, count=n)
        keep = self.identities.keep_mask(identities)
        slots = np.array(slot_list, dtype=np.uint64)[keep]
        fresh_slots = self.slots.keep_mask(slots)
        kept = [s for s, k in zip(samples, keep.tolist(), strict=True) if k]
        return FilterResult(kept, n - len(kept), int(len(kept) - fresh_slots.sum()))
