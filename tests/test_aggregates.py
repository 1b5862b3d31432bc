"""Property and example tests of the numpy window kernels, local-time windows, source de-duplication and proration."""

from __future__ import annotations

import dataclasses
import itertools
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregates.accumulate import AccumulatorSpec, SummaryAccumulator, window_bounds
from aggregates.columns import SampleColumns
from aggregates.overlap import deduplicate_sources, interval_union
from aggregates.prorate import prorated, split_intervals
from aggregates.stats import fold, merge, merge_all
from aggregates.windows import DAY, HOUR, day_grid, day_keys, hour_grid, hour_keys, hour_window_bounds

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


# --- proration of long cumulative samples, zone-aware day windows -------------------------------------------

ZONES = [None, "America/New_York", "Europe/Paris", "Asia/Kolkata", "Australia/Adelaide"]  # +09:30/+10:30 DST
FIXED = -4 * HOUR  # the offset of samples when no zone is known


def _offset_at(zone: str | None, epoch: float) -> int:
    """The offset upstream gives a sample: its zone's at the sample's start (a fixed one without a zone)."""
    if zone is None:
        return FIXED
    delta = datetime.fromtimestamp(epoch, ZoneInfo(zone)).utcoffset()
    assert delta is not None
    return int(delta.total_seconds())


def _columns(zone: str | None, start: list[float], end: list[float], value: list[float],
             priority: list[int] | None = None) -> SampleColumns:
    n = len(start)
    prio = np.array(priority if priority is not None else [0] * n, dtype=np.int16)
    return SampleColumns(np.array(start, dtype=np.float64), np.array(end, dtype=np.float64),
                         np.array([_offset_at(zone, s) for s in start], dtype=np.int32),
                         np.array(value, dtype=np.float64), prio, np.full(n, -1, dtype=np.int16),
                         prio.astype(np.uint32))


def _local_midnight(zone: str | None, day: int) -> float:
    """Reference: the instant local day ``day`` begins, from zoneinfo (or the fixed offset)."""
    tz = ZoneInfo(zone) if zone is not None else timezone(timedelta(seconds=FIXED))
    return (datetime(1970, 1, 1) + timedelta(days=day)).replace(tzinfo=tz).timestamp()


def _overlap_total(start: np.ndarray, end: np.ndarray, value: np.ndarray, a: float, b: float) -> float:
    """Reference: the share of each sample's value that falls in [a, b), by time (instants by their start)."""
    total = 0.0
    for s, e, v in zip(start.tolist(), end.tolist(), value.tolist(), strict=True):
        if e == s:
            total += v if a <= s < b else 0.0
        else:
            total += v * max(0.0, min(e, b) - max(s, a)) / (e - s)
    return total


def _flush(zone: str | None, cols: SampleColumns, windows: frozenset[str] = frozenset({"hour", "day"})):
    acc = SummaryAccumulator(AccumulatorSpec(windows=windows, cumulative=True, zone=zone))
    acc.add(cols)
    return acc.flush()


@st.composite
def long_cumulative_samples(draw):
    """Samples from seconds to days long (instants included) around the DST changes of 2024."""
    zone = draw(st.sampled_from(ZONES))
    n = draw(st.integers(1, 25))
    base = datetime(2024, 3, 8, tzinfo=UTC).timestamp() if draw(st.booleans()) else \
        datetime(2024, 10, 25, tzinfo=UTC).timestamp()  # both hemispheres change clocks near one of these
    start = [base + draw(st.integers(0, 12 * DAY)) + draw(st.sampled_from([0.0, 0.5])) for _ in range(n)]
    length = [draw(st.one_of(st.just(0), st.integers(1, 2 * HOUR), st.integers(1, 5 * DAY))) for _ in range(n)]
    value = [float(draw(st.integers(0, 20_000))) for _ in range(n)]
    return zone, start, [s + d for s, d in zip(start, length, strict=True)], value


@settings(max_examples=120, deadline=None)
@given(long_cumulative_samples())
def test_proration_preserves_totals_and_puts_each_share_in_its_local_window(data) -> None:
    zone, start, end, value = data
    cols = _columns(zone, start, end, value)
    out = _flush(zone, cols)
    assert out.hour is not None and out.day is not None
    assert out.hour.total.sum() == pytest.approx(sum(value), rel=1e-9, abs=1e-6)
    assert out.day.total.sum() == pytest.approx(sum(value), rel=1e-9, abs=1e-6)
    s, e, v = cols.start, cols.end, cols.value
    for key, total in zip(out.day.keys.tolist(), out.day.total.tolist(), strict=True):
        expected = _overlap_total(s, e, v, _local_midnight(zone, key), _local_midnight(zone, key + 1))
        assert total == pytest.approx(expected, rel=1e-9, abs=1e-6)
    sub = cols.offset[0] % HOUR  # the zones here keep one sub-hour offset all year
    for key, total in zip(out.hour.keys.tolist(), out.hour.total.tolist(), strict=True):
        a = float(key * HOUR - sub)
        assert total == pytest.approx(_overlap_total(s, e, v, a, a + HOUR), rel=1e-9, abs=1e-6)


@settings(max_examples=80, deadline=None)
@given(long_cumulative_samples(), st.lists(st.integers(0, 2), min_size=25, max_size=25))
def test_prorated_pieces_are_deduplicated_to_the_same_totals_as_whole_samples(data, priorities) -> None:
    zone, start, end, value = data
    cols = _columns(zone, start, end, value, priorities[:len(start)])
    out = _flush(zone, cols)
    assert out.hour is not None and out.day is not None
    kept = deduplicate_sources(cols.start, cols.end, cols.value, cols.priority).sum()
    assert out.hour.total.sum() == pytest.approx(kept, rel=1e-9, abs=1e-6)
    assert out.day.total.sum() == pytest.approx(kept, rel=1e-9, abs=1e-6)


@settings(max_examples=100, deadline=None)
@given(long_cumulative_samples())
def test_an_instant_never_moves_and_a_sample_inside_one_window_is_unchanged(data) -> None:
    zone, start, end, value = data
    cols = _columns(zone, start, end, value)
    for window, keys, grid in (("hour", hour_keys(cols.start, cols.offset), hour_grid(cols.offset)),
                               ("day", day_keys(cols.start, cols.offset), day_grid(cols.offset, zone))):
        pieces = split_intervals(cols.start, cols.end, keys, grid)
        shares = prorated(pieces, cols.start, cols.end, cols.value)
        rows = pieces.rows if pieces.rows is not None else np.arange(len(cols))
        inside = cols.end <= grid.start(keys + 1, None)  # ends in its start's window (instants always do)
        for i in np.flatnonzero(inside).tolist():
            (mine,) = np.flatnonzero(rows == i)  # exactly one piece: the sample itself, bit for bit
            assert (pieces.keys[mine], pieces.start[mine], pieces.end[mine], shares[mine]) == \
                (keys[i], cols.start[i], cols.end[i], cols.value[i]), window
        assert set(np.flatnonzero(~inside).tolist()) <= set(rows[np.diff(np.r_[rows, -1]) == 0].tolist())
    instants = cols.take(np.flatnonzero(cols.start == cols.end))
    if len(instants):
        out = _flush(zone, instants)
        assert out.day is not None and out.hour is not None
        expected = fold(day_keys(instants.start, instants.offset), instants.value)
        assert out.day.keys.tolist() == expected.keys.tolist() and out.day.total.tolist() == expected.total.tolist()
        assert out.hour.keys.tolist() == np.unique(hour_keys(instants.start, instants.offset)).tolist()


@pytest.mark.parametrize(("zone", "lengths"), [("America/New_York", {23, 24, 25}), ("Europe/Paris", {23, 24, 25}),
                                               ("Australia/Adelaide", {23, 24, 25}), ("Asia/Kolkata", {24}),
                                               (None, {24})])
def test_day_windows_of_a_zone_have_23_24_or_25_hours_and_start_at_local_midnight(zone, lengths) -> None:
    # one reading at 15:00 local every day of 2024 (after any DST change of that day)
    tz = ZoneInfo(zone) if zone else timezone(timedelta(seconds=FIXED))
    noon = [datetime(2024, 1, 1, 15, tzinfo=tz) + timedelta(days=d) for d in range(366)]
    cols = _columns(zone, [m.timestamp() for m in noon], [m.timestamp() for m in noon], [1.0] * 366)
    out = _flush(zone, cols, frozenset({"day"}))
    assert out.day is not None and len(out.day) == 366
    start, start_offset, end, end_offset = window_bounds("day", out.day, zone)
    assert set(((end - start) / HOUR).tolist()) == lengths
    for m, a, a_off, b, b_off in zip(noon, start.tolist(), start_offset.tolist(), end.tolist(),
                                     end_offset.tolist(), strict=True):
        midnight = m.replace(hour=0)
        assert a == midnight.timestamp() and a_off == midnight.utcoffset().total_seconds()
        following = (midnight.replace(tzinfo=None) + timedelta(days=1)).replace(tzinfo=tz)
        assert b == following.timestamp() and b_off == following.utcoffset().total_seconds()


def test_a_cumulative_sample_counts_in_every_window_it_contributes_to_and_once_a_day() -> None:
    t = datetime(2024, 6, 3, 9, 40, tzinfo=ZoneInfo("Europe/Paris")).timestamp()
    cols = _columns("Europe/Paris", [t, t + 30 * 60], [t + 40 * 60, t + 35 * 60], [400.0, 50.0])
    out = _flush("Europe/Paris", cols)
    assert out.hour is not None and out.day is not None
    assert out.hour.total.tolist() == pytest.approx([200.0, 250.0]) and out.hour.count.tolist() == [1, 2]
    assert out.day.total.tolist() == pytest.approx([450.0]) and out.day.count.tolist() == [2]


def test_jdecool_twelve_day_basal_energy_sample_is_spread_over_its_days() -> None:
    # jdecool-v8-fr_FR-exporter.xml: one Apple Watch BasalEnergyBurned record, 18087.8 kcal,
    # startDate="2018-10-28 02:25:14 +0100" endDate="2018-11-09 13:18:27 +0100" (Europe/Paris, the day
    # winter time began: a 25-hour day)
    start = datetime.fromisoformat("2018-10-28T02:25:14+01:00").timestamp()
    end = datetime.fromisoformat("2018-11-09T13:18:27+01:00").timestamp()
    kcal = 18087.8
    for zone in ("Europe/Paris", None):
        cols = _columns(zone, [start], [end], [kcal])
        cols = dataclasses.replace(cols, offset=np.array([3600], dtype=np.int32))
        out = _flush(zone, cols)
        assert out.day is not None and out.hour is not None
        days = dict(zip(np.datetime_as_string(out.day.keys.astype("datetime64[D]")).tolist(),
                        out.day.total.tolist(), strict=True))
        assert len(days) == 13 and max(days.values()) < kcal / 12
        assert sum(days.values()) == pytest.approx(kcal, rel=1e-12)
        per_full_day = kcal * 86400 / (end - start)
        for day in [f"2018-10-{d}" for d in (29, 30, 31)] + [f"2018-11-0{d}" for d in range(1, 9)]:
            assert days[day] == pytest.approx(per_full_day, rel=1e-12)
        first_day_end = datetime.fromisoformat("2018-10-29T00:00:00+01:00").timestamp()
        assert days["2018-10-28"] == pytest.approx(kcal * (first_day_end - start) / (end - start), rel=1e-12)
        assert out.hour.total.sum() == pytest.approx(kcal, rel=1e-12) and len(out.hour) == 12 * 24 + 12
        assert out.day.count.tolist() == [1] * 13  # one sample, counted in each day it contributes to
