"""Property and example tests of the numpy window kernels, local-time windows and source de-duplication."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregates.overlap import deduplicate_sources, interval_union
from aggregates.stats import fold, merge, merge_all
from aggregates.windows import DAY, HOUR, day_keys, hour_keys, hour_window_bounds

CGM_EDGES = np.array([54, 70, 181, 251])

values_st = st.lists(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), min_size=0, max_size=200)


@st.composite
def keyed_values(draw):
    values = draw(values_st)
    keys = draw(st.lists(st.integers(0, 12), min_size=len(values), max_size=len(values)))
    return np.array(keys, dtype=np.int64), np.array(values, dtype=np.float64)


@settings(max_examples=200, deadline=None)
@given(keyed_values())
def test_fold_invariants(kv) -> None:
    keys, values = kv
    stats = fold(keys, values, CGM_EDGES)
    assert stats.count.sum() == len(values)  # count = number of inputs
    assert sorted(set(keys.tolist())) == stats.keys.tolist()  # an empty window emits nothing
    assert np.all(stats.minimum <= stats.mean + 1e-6 * np.abs(stats.mean) + 1e-9)
    assert np.all(stats.mean <= stats.maximum + 1e-6 * np.abs(stats.mean) + 1e-9)
    assert stats.bands is not None and np.array_equal(stats.bands.sum(axis=1), stats.count)
    for i, key in enumerate(stats.keys):
        mine = values[keys == key]
        assert stats.minimum[i] == mine.min() and stats.maximum[i] == mine.max()
        assert stats.total[i] == pytest.approx(mine.sum(), rel=1e-9, abs=1e-6)


@settings(max_examples=150, deadline=None)
@given(keyed_values(), st.randoms(use_true_random=False))
def test_fold_is_independent_of_input_order(kv, rnd) -> None:
    keys, values = kv
    order = list(range(len(keys)))
    rnd.shuffle(order)
    a, b = fold(keys, values, CGM_EDGES), fold(keys[order], values[order], CGM_EDGES)
    assert np.array_equal(a.keys, b.keys) and np.array_equal(a.count, b.count)
    assert np.array_equal(a.minimum, b.minimum) and np.array_equal(a.maximum, b.maximum)
    assert np.allclose(a.total, b.total, rtol=1e-9, atol=1e-6)
    assert np.array_equal(a.bands, b.bands)


@settings(max_examples=150, deadline=None)
@given(keyed_values(), st.integers(0, 200))
def test_merging_the_folds_of_two_halves_equals_folding_the_whole(kv, cut) -> None:
    keys, values = kv
    cut = min(cut, len(keys))
    whole = fold(keys, values, CGM_EDGES)
    merged = merge(fold(keys[:cut], values[:cut], CGM_EDGES), fold(keys[cut:], values[cut:], CGM_EDGES))
    assert np.array_equal(whole.keys, merged.keys) and np.array_equal(whole.count, merged.count)
    assert np.array_equal(whole.minimum, merged.minimum) and np.array_equal(whole.maximum, merged.maximum)
    assert np.allclose(whole.total, merged.total, rtol=1e-9, atol=1e-6)
    if len(whole):
        assert np.array_equal(whole.bands, merged.bands)


@given(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), st.integers(0, 10**6))
def test_a_single_sample_is_its_own_min_max_and_mean(value, key) -> None:
    stats = fold(np.array([key]), np.array([value]))
    assert stats.minimum[0] == stats.maximum[0] == stats.mean[0] == value and stats.count[0] == 1


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4 * DAY), st.integers(0, 10_000)), min_size=1, max_size=300))
def test_totals_are_preserved_across_the_hour_to_day_roll_up(samples) -> None:
    epoch = np.array([s[0] for s in samples], dtype=np.float64)
    value = np.array([s[1] for s in samples], dtype=np.float64)
    offset = np.full(len(samples), -5 * HOUR)
    hours = fold(hour_keys(epoch, offset), value, tag=offset)
    days = fold(day_keys(epoch, offset), value)
    assert hours.tag is not None
    start, _ = hour_window_bounds(hours.keys, hours.tag)
    rolled = fold(day_keys(start.astype(np.float64), hours.tag), hours.total)
    assert np.array_equal(rolled.keys, days.keys)
    assert np.allclose(rolled.total, days.total)


def _day_of_samples(tz: ZoneInfo, day: datetime) -> tuple[np.ndarray, np.ndarray]:
    """One sample every 10 minutes through a local day, as (epoch, offset seconds)."""
    start = day.replace(tzinfo=tz)
    end = (day + timedelta(days=1)).replace(tzinfo=tz)
    epochs = np.arange(start.timestamp(), end.timestamp(), 600.0)
    offsets = np.array([datetime.fromtimestamp(e, tz).utcoffset().total_seconds() for e in epochs], dtype=np.int64)
    return epochs, offsets


@pytest.mark.parametrize(("day", "hours"), [(datetime(2024, 3, 10), 23), (datetime(2024, 11, 3), 25),
                                            (datetime(2024, 6, 1), 24)])
def test_dst_days_have_23_or_25_hour_windows_and_one_day_window(day, hours) -> None:
    epochs, offsets = _day_of_samples(ZoneInfo("America/New_York"), day)
    assert len(np.unique(hour_keys(epochs, offsets))) == hours
    assert len(np.unique(day_keys(epochs, offsets))) == 1


def test_the_repeated_fall_back_hour_is_two_windows_with_their_own_offsets() -> None:
    tz = ZoneInfo("America/New_York")
    first = datetime(2024, 11, 3, 1, 30, tzinfo=tz)  # EDT
    second = datetime(2024, 11, 3, 1, 30, tzinfo=tz, fold=1)  # EST, one hour later
    epochs = np.array([first.timestamp(), second.timestamp()])
    offsets = np.array([-4 * HOUR, -5 * HOUR])
    stats = fold(hour_keys(epochs, offsets), np.array([80.0, 90.0]), tag=offsets)
    assert len(stats) == 2 and stats.tag is not None
    start, end = hour_window_bounds(stats.keys, stats.tag)
    assert (end - start).tolist() == [HOUR, HOUR]
    assert start[1] - start[0] == HOUR  # the EST 01:00 window starts an hour after the EDT one
    assert stats.tag.tolist() == [-4 * HOUR, -5 * HOUR]
    assert [datetime.fromtimestamp(s, tz).strftime("%H:%M %z") for s in start] == ["01:00 -0400", "01:00 -0500"]


def test_watch_and_iphone_overlap_counts_the_walk_once() -> None:
    # Watch: 1,000 steps 08:00-08:10; iPhone: 1,100 steps 08:00-08:10 (same walk) and 300 steps 12:00-12:05.
    start = np.array([0.0, 0.0, 4 * HOUR])
    end = np.array([600.0, 600.0, 4 * HOUR + 300])
    steps = np.array([1000.0, 1100.0, 300.0])
    priority = np.array([3, 2, 2])
    kept = deduplicate_sources(start, end, steps, priority)
    assert kept.tolist() == [1000.0, 0.0, 300.0]
    assert kept.sum() == 1300.0 != steps.sum()


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1000), st.integers(0, 300), st.integers(1, 3)), min_size=1, max_size=60))
def test_source_dedup_never_inflates_and_keeps_the_top_priority(rows) -> None:
    start = np.array([r[0] for r in rows], dtype=np.float64)
    end = start + np.array([r[1] for r in rows], dtype=np.float64)
    priority = np.array([r[2] for r in rows])
    value = np.ones(len(rows)) * 10
    kept = deduplicate_sources(start, end, value, priority)
    assert np.all(kept >= 0) and np.all(kept <= value + 1e-9)
    top = priority == priority.max()
    assert np.array_equal(kept[top], value[top])


@given(st.lists(st.tuples(st.integers(0, 1000), st.integers(0, 300)), max_size=50))
def test_interval_union_is_disjoint_and_covers_everything(rows) -> None:
    start = np.array([r[0] for r in rows], dtype=np.float64)
    end = start + np.array([r[1] for r in rows], dtype=np.float64)
    us, ue = interval_union(start, end)
    assert np.all(us[1:] > ue[:-1])
    for a, b in zip(start, end, strict=True):
        i = np.searchsorted(us, a, side="right") - 1
        assert i >= 0 and us[i] <= a and b <= ue[i]


def test_half_hour_offsets_get_half_past_utc_hour_windows() -> None:
    tz = ZoneInfo("Asia/Kolkata")  # +05:30
    epochs = np.array([datetime(2024, 6, 1, h, m, tzinfo=tz).timestamp() for h, m in ((9, 0), (9, 59), (10, 0))])
    offsets = np.full(3, 5 * HOUR + 1800)
    stats = fold(hour_keys(epochs, offsets), np.ones(3), tag=offsets)
    assert stats.count.tolist() == [2, 1] and stats.tag is not None
    start, _ = hour_window_bounds(stats.keys, stats.tag)
    assert [datetime.fromtimestamp(s, tz).strftime("%H:%M") for s in start] == ["09:00", "10:00"]


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2 * 10**9 // HOUR), st.sampled_from([-5 * HOUR, -4 * HOUR, 0, 5 * HOUR + 1800]))
def test_a_sample_exactly_on_a_window_boundary_opens_the_new_window(hour, offset) -> None:
    boundary = float(hour * HOUR - offset % HOUR)
    keys = hour_keys(np.array([boundary - 1, boundary]), np.array([offset, offset]))
    assert keys[1] == keys[0] + 1
    start, _ = hour_window_bounds(keys[1:], np.array([offset]))
    assert start[0] == boundary
    day_boundary = float(hour // 24 * DAY - offset)
    days = day_keys(np.array([day_boundary - 1, day_boundary]), np.array([offset, offset]))
    assert days[1] == days[0] + 1


@settings(max_examples=100, deadline=None)
@given(keyed_values(), st.lists(st.integers(0, 200), max_size=6))
def test_merging_many_per_batch_folds_equals_folding_the_whole(kv, cuts) -> None:
    keys, values = kv
    offsets = np.arange(len(keys), dtype=np.int64)  # a per-sample tag to check first/last tags
    bounds = sorted({0, len(keys), *(min(c, len(keys)) for c in cuts)})
    parts = [fold(keys[a:b], values[a:b], CGM_EDGES, tag=offsets[a:b]) for a, b in itertools.pairwise(bounds)]
    whole = fold(keys, values, CGM_EDGES, tag=offsets)
    merged = merge_all(parts)
    assert np.array_equal(whole.keys, merged.keys) and np.array_equal(whole.count, merged.count)
    assert np.array_equal(whole.minimum, merged.minimum) and np.array_equal(whole.maximum, merged.maximum)
    assert np.allclose(whole.total, merged.total, rtol=1e-9, atol=1e-6)
    if len(whole):
        assert np.array_equal(whole.bands, merged.bands)
        assert np.array_equal(whole.tag, merged.tag) and np.array_equal(whole.tag_last, merged.tag_last)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(1_600_000_000, 1_800_000_000),
                          st.sampled_from([-5 * HOUR, -4 * HOUR, 0, 19800, 20700, -9000, 3600])),
                min_size=1, max_size=100),
       st.booleans())
def test_hour_keys_match_the_reference_formula(samples, time_ordered) -> None:
    if time_ordered:
        samples = sorted(samples)
    epoch = np.array([e for e, _ in samples], dtype=np.float64)
    offset = np.array([o for _, o in samples], dtype=np.int64)
    expected = [(e + o % HOUR) // HOUR for e, o in samples]
    assert hour_keys(epoch, offset).tolist() == expected
