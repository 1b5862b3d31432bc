"""Exact-duplicate removal: same semantics as a Python set, in any batching, order preserved."""

from __future__ import annotations

import copy

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mappers.dedup import DuplicateFilter, SampleFilter, identity_key, slot_key
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


def test_identity_is_slot_and_value_exact_duplicates_only_are_dropped() -> None:
    samples, _, _ = normalize(export_xml(
        record("HeartRate", "60", "count/min"),
        record("HeartRate", "61", "count/min"),  # same slot, another value: a distinct sample
        record("HeartRate", "60", "count/min", source="Polar"),
        record("HeartRate", "60", "count/min", start="2024-03-10 08:16:00 -0400"),
        record("HeartRate", "60", "count/min", start="2024-03-10 07:15:00 -0500"),  # same instant, other offset
        record("HeartRate", "60", "count/min"),  # an exact duplicate of the first
    ))
    keys = [identity_key(s) for s in samples]
    slots = [slot_key(s) for s in samples]
    assert keys[0] == keys[4] == keys[5] and keys[1] != keys[0]
    assert slots[0] == slots[1] == slots[4]
    assert len({keys[0], keys[2], keys[3]}) == 3
    result = SampleFilter().filter(samples)
    assert result.duplicates == 2 and result.same_slot == 1
    assert [s.value for s in result.kept] == [60, 61, 60, 60]
    assert result.kept[0] is samples[0]


def test_a_distinct_same_slot_sample_seen_in_a_later_batch_is_counted_once() -> None:
    samples, _, _ = normalize(export_xml(
        record("StepCount", "8", "count"), record("StepCount", "9", "count"), record("StepCount", "9", "count")))
    seen = SampleFilter()
    first = seen.filter(samples[:1])
    second = copy.deepcopy(seen).filter(samples[1:])
    assert (first.duplicates, first.same_slot) == (0, 0)
    assert (second.duplicates, second.same_slot, len(second.kept)) == (1, 1, 1)


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


@settings(max_examples=200, deadline=None)
@given(batches=st.lists(st.lists(st.tuples(st.integers(0, 12), st.integers(0, 3)), max_size=30), max_size=12))
def test_duplicates_and_same_slot_counts_match_python_sets(batches: list[list[tuple[int, int]]]) -> None:
    """(slot, value) pairs as samples: exact repeats are dropped, other values of a seen slot are counted."""
    seen: set[tuple[int, int]] = set()
    slots: set[int] = set()
    dedup = SampleFilter()
    for batch in batches:
        samples = [_sample(slot, value) for slot, value in batch]
        expected_kept, duplicates, same_slot = [], 0, 0
        for pair in batch:
            if pair in seen:
                duplicates += 1
                continue
            same_slot += pair[0] in slots
            seen.add(pair)
            slots.add(pair[0])
            expected_kept.append(pair)
        result = dedup.filter(samples)
        assert [(int(s.start_epoch), s.value) for s in result.kept] == expected_kept
        assert (result.duplicates, result.same_slot) == (duplicates, same_slot)


def _sample(slot: int, value: int):
    """A steps sample whose slot is ``slot`` (its start) and whose value is ``value``."""
    (base,), _, _ = normalize(export_xml(record("StepCount", "1", "count")))
    return base._replace(start_epoch=float(slot), end_epoch=float(slot) + 60, value=value)
