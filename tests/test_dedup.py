"""Exact-duplicate removal: same semantics as a Python set, in any batching, order preserved."""

from __future__ import annotations

import copy

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mappers.dedup import DuplicateFilter, identity_key
from tests.helpers import export_xml, normalize, record


@settings(max_examples=200, deadline=None)
@given(batches=st.lists(st.lists(st.integers(min_value=0, max_value=60), max_size=40), max_size=30))
def test_keep_mask_matches_a_python_set(batches: list[list[int]]) -> None:
    seen: set[int] = set()
    dedup = DuplicateFilter()
    for batch in batches:
        keys = np.array(batch, dtype=np.uint64)
        expected = []
        for key in batch:
            expected.append(key not in seen)
            seen.add(key)
        assert dedup.keep_mask(keys).tolist() == expected
    assert dedup.seen == len(seen)
    for key in range(62):
        assert (key in dedup) == (key in seen)


def test_identity_ignores_value_but_not_source_or_time() -> None:
    samples, _, _ = normalize(export_xml(
        record("HeartRate", "60", "count/min"),
        record("HeartRate", "61", "count/min"),  # same source and time: a re-synced duplicate
        record("HeartRate", "60", "count/min", source="Polar"),
        record("HeartRate", "60", "count/min", start="2024-03-10 08:16:00 -0400"),
        record("HeartRate", "60", "count/min", start="2024-03-10 07:15:00 -0500"),  # same instant, other offset
    ))
    keys = [identity_key(s) for s in samples]
    assert keys[0] == keys[1] == keys[4]
    assert len({keys[0], keys[2], keys[3]}) == 3
    kept, dropped = DuplicateFilter().filter(samples)
    assert dropped == 2 and [s.value for s in kept] == [60.0, 60.0, 60.0]
    assert kept[0] is samples[0]


def _freeze(arrays: list[np.ndarray]) -> None:
    for array in arrays:
        array.flags.writeable = False  # any later in-place write into a shared array raises


@settings(max_examples=100, deadline=None)
@given(batches=st.lists(st.lists(st.integers(min_value=0, max_value=200), max_size=40), min_size=2, max_size=20),
       cut=st.integers(min_value=1, max_value=19))
def test_a_snapshot_is_independent_of_the_filter_it_was_taken_from(batches: list[list[int]], cut: int) -> None:
    dedup = DuplicateFilter()
    cut = min(cut, len(batches) - 1)
    for batch in batches[:cut]:
        dedup.keep_mask(np.array(batch, dtype=np.uint64))
    snapshot = copy.deepcopy(dedup)  # what Bytewax does at the end of every epoch
    _freeze(dedup._runs)
    later = batches[cut:]
    original = [dedup.keep_mask(np.array(b, dtype=np.uint64)).tolist() for b in later]
    restored = [snapshot.keep_mask(np.array(b, dtype=np.uint64)).tolist() for b in later]
    assert restored == original and snapshot.seen == dedup.seen
