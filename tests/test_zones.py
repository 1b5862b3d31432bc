"""The patient's local clock from an IANA zone: offsets, day keys and day starts equal zoneinfo's, DST included."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import mappers.zones as zones_module
from aggregates.windows import day_keys
from mappers.zones import local_day_start, resolve_zone, zone_offset, zone_offsets

UNIX_ORDINAL = date(1970, 1, 1).toordinal()
ZONES = ["America/Los_Angeles", "Asia/Jerusalem", "Europe/Berlin", "Australia/Lord_Howe", "Asia/Kolkata",
         "Asia/Kathmandu", "America/St_Johns", "Pacific/Chatham", "UTC", "America/New_York"]
# zones whose DST starts at local midnight (midnight does not exist that day) or ends at 01:00 (midnight twice)
MIDNIGHT_ZONES = ["America/Santiago", "America/Havana", "Asia/Beirut", "America/Sao_Paulo", "America/Asuncion"]
EPOCH_1950 = -631152000  # 1950-01-01 UTC
EPOCH_2080 = 3471292800  # 2080-01-01 UTC
# milliseconds: fromtimestamp rounds to the microsecond, so sub-microsecond epochs are not what is compared here
EPOCHS = st.integers(EPOCH_1950 * 1000, EPOCH_2080 * 1000).map(lambda ms: ms / 1000)


def reference_offset(zone: str, epoch: float) -> int:
    delta = datetime.fromtimestamp(epoch, ZoneInfo(zone)).utcoffset()
    assert delta is not None
    return int(delta.total_seconds())


def reference_day(zone: str, epoch: float) -> int:
    return datetime.fromtimestamp(epoch, ZoneInfo(zone)).date().toordinal() - UNIX_ORDINAL


def local(zone: str, epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, ZoneInfo(zone))


def day_number(day: date) -> int:
    return day.toordinal() - UNIX_ORDINAL


def transitions(zone: str, first_year: int, last_year: int) -> list[int]:
    """Every instant (whole second) at which ``zone``'s offset changes, found by hourly scan and bisection."""
    tz = ZoneInfo(zone)
    start = int(datetime(first_year, 1, 1, tzinfo=tz).timestamp())
    end = int(datetime(last_year + 1, 1, 1, tzinfo=tz).timestamp())
    found = []
    previous = datetime.fromtimestamp(start, tz).utcoffset()
    for hour in range(start + 3600, end, 3600):
        offset = datetime.fromtimestamp(hour, tz).utcoffset()
        if offset != previous:
            low, high = hour - 3600, hour  # offset(low) = previous, offset(high) = offset
            while high - low > 1:
                middle = (low + high) // 2
                if datetime.fromtimestamp(middle, tz).utcoffset() == previous:
                    low = middle
                else:
                    high = middle
            found.append(high)
            previous = offset
    return found


# ---- resolve_zone -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", [*ZONES, *MIDNIGHT_ZONES, "Etc/GMT+5", "US/Pacific", "Europe/London"])
def test_resolve_zone_returns_the_zone(name: str) -> None:
    zone = resolve_zone(name)
    assert zone is not None and zone.key == name
    assert resolve_zone(name) is zone


@pytest.mark.parametrize("name", [None, "", " ", "Europe/Berlin ", "europe/berlin", "Mars/Olympus_Mons", "America",
                                  "../etc", "../../etc/passwd", "/etc/passwd", "Europe/../UTC", "./UTC",
                                  "Europe//Berlin", "zone.tab", "tzdata.zi", "leapseconds", "localtime", "Factory",
                                  "posixrules", "posix/Europe/Berlin", "right/Europe/Berlin", "a\x00b", "x" * 1000,
                                  "+02:00"])
def test_resolve_zone_refuses_unknown_and_invalid_names(name: str | None) -> None:
    assert resolve_zone(name) is None


def test_resolve_zone_refuses_non_strings() -> None:
    assert resolve_zone(42) is None  # type: ignore[arg-type]


def test_unknown_zone_raises_value_error_where_a_zone_is_required() -> None:
    with pytest.raises(ValueError, match="IANA"):
        zone_offset("../etc", 0.0)
    with pytest.raises(ValueError, match="IANA"):
        zone_offsets("Mars/Olympus_Mons", np.array([0.0]))
    with pytest.raises(ValueError, match="IANA"):
        local_day_start("localtime", np.array([0]), np.array([0]))


# ---- offsets and local day keys (hypothesis) ----------------------------------------------------------------

@settings(max_examples=600)
@given(zone=st.sampled_from(ZONES), epoch=EPOCHS)
def test_offsets_and_day_keys_equal_zoneinfo(zone: str, epoch: float) -> None:
    assert zone_offset(zone, epoch) == reference_offset(zone, epoch)
    assert zone_offset(zone, epoch) == reference_offset(zone, epoch)  # from the cache this time
    offsets = zone_offsets(zone, np.array([epoch]))
    assert offsets.dtype == np.int32 and offsets.tolist() == [reference_offset(zone, epoch)]
    assert day_keys(np.array([epoch]), offsets).tolist() == [reference_day(zone, epoch)]


@settings(max_examples=100)
@given(zone=st.sampled_from(ZONES + MIDNIGHT_ZONES), start=EPOCHS,
       steps=st.lists(st.integers(0, 40 * 86400), min_size=1, max_size=300), shuffle=st.booleans())
def test_vectorised_offsets_and_day_keys_equal_zoneinfo(zone: str, start: float, steps: list[int],
                                                        shuffle: bool) -> None:
    epochs = start + np.cumsum(np.array(steps, dtype=np.float64))
    if shuffle:
        epochs = np.random.default_rng(len(steps)).permutation(epochs)
    offsets = zone_offsets(zone, epochs)
    assert offsets.tolist() == [reference_offset(zone, e) for e in epochs.tolist()]
    assert day_keys(epochs, offsets).tolist() == [reference_day(zone, e) for e in epochs.tolist()]


@pytest.mark.parametrize("zone", [z for z in ZONES + MIDNIGHT_ZONES if z != "UTC"])
def test_offsets_are_exact_around_every_transition(zone: str) -> None:
    # Lord Howe and Chatham change at half or quarter past a UTC hour: the hour holding it is computed per call
    found = transitions(zone, 2023, 2025) + transitions(zone, 1995, 1996)
    assert found or zone in ("Asia/Kolkata", "Asia/Kathmandu", "America/Sao_Paulo")
    probes = []
    for moment in found:
        hour = moment // 3600 * 3600
        probes += [moment - 1, moment - 0.5, moment - 0.001, moment, moment + 0.001, moment + 1,
                   hour, hour - 0.001, hour + 3599, hour + 3599.999, hour + 3600]
    # a hair (one float step, < 0.5 µs) before a transition or an hour: fromtimestamp rounds it up to that second
    hairs = [float(np.nextafter(float(p), -np.inf)) for moment in found for p in (moment, moment // 3600 * 3600 + 3600)]
    expected_hairs = [reference_offset(zone, p) for p in hairs]
    assert [zone_offset(zone, p) for p in hairs] == expected_hairs
    assert zone_offsets(zone, np.array(hairs)).tolist() == expected_hairs
    expected = [reference_offset(zone, p) for p in probes]
    assert [zone_offset(zone, p) for p in probes] == expected
    assert [zone_offset(zone, p) for p in probes] == expected  # again, through the cache
    assert zone_offsets(zone, np.array(probes, dtype=np.float64)).tolist() == expected
    assert zone_offsets(zone, np.array(probes[::-1], dtype=np.float64)).tolist() == expected[::-1]
    days = day_keys(np.array(probes, dtype=np.float64), zone_offsets(zone, np.array(probes, dtype=np.float64)))
    assert days.tolist() == [reference_day(zone, p) for p in probes]


def test_written_offset_and_zone_disagree_in_summer() -> None:
    # the ashtom case of issue 9: "+0200" written all year, while Asia/Jerusalem is +03:00 on 17 May 2017
    instant = datetime.fromisoformat("2017-05-17 23:30:00 +0200").timestamp()
    assert zone_offset("Asia/Jerusalem", instant) == 3 * 3600
    assert day_keys(np.array([instant]), np.array([7200])).tolist() == [day_number(date(2017, 5, 17))]
    assert day_keys(np.array([instant]), zone_offsets("Asia/Jerusalem", np.array([instant]))).tolist() == [
        day_number(date(2017, 5, 18))]


def test_zone_offsets_keeps_shape_and_handles_empty_input() -> None:
    epochs = np.array([[0.0, 1.7e9], [1.72e9, -1e8]])
    result = zone_offsets("Europe/Berlin", epochs)
    assert result.shape == (2, 2) and result.dtype == np.int32
    assert result.ravel().tolist() == [reference_offset("Europe/Berlin", e) for e in epochs.ravel().tolist()]
    empty = zone_offsets("Europe/Berlin", np.array([], dtype=np.float64))
    assert empty.shape == (0,) and empty.dtype == np.int32


def test_offsets_stay_exact_when_the_caches_are_cleared(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(zones_module, "_CACHE_LIMIT", 3)
    monkeypatch.setattr(zones_module, "_ZONE_LIMIT", 2)
    epochs = np.arange(1.70e9, 1.70e9 + 400 * 86400, 7919.0)
    for zone in ("America/New_York", "Australia/Lord_Howe", "Pacific/Chatham"):
        assert zone_offsets(zone, epochs).tolist() == [reference_offset(zone, e) for e in epochs.tolist()]
        assert [zone_offset(zone, e) for e in epochs[:50].tolist()] == [
            reference_offset(zone, e) for e in epochs[:50].tolist()]
        days = np.arange(19700, 19720)
        starts = local_day_start(zone, days, np.zeros(20))
        assert [local(zone, s).date() for s in starts.tolist()] == [date.fromordinal(d + UNIX_ORDINAL)
                                                                     for d in days.tolist()]
    assert len(zones_module._DAY_STARTS) <= 3
    assert len(zones_module._HOUR_OFFSETS) <= 2
    assert all(len(hours) <= 3 for hours in zones_module._HOUR_OFFSETS.values())


# ---- local day starts ---------------------------------------------------------------------------------------

DAYS = st.dates(min_value=date(1950, 1, 1), max_value=date(2079, 12, 31))


@settings(max_examples=400)
@given(zone=st.sampled_from(ZONES + MIDNIGHT_ZONES), day=DAYS)
def test_local_day_start_is_the_first_instant_of_the_local_day(zone: str, day: date) -> None:
    number = day_number(day)
    start, following = local_day_start(zone, np.array([number, number + 1]), np.array([0, 0])).tolist()
    assert start == int(start)
    assert local(zone, start).date() == day
    assert local(zone, start - 1).date() < day  # nothing earlier belongs to this day
    assert local(zone, following - 1).date() == day and local(zone, following).date() > day
    if local(zone, start).time() != time(0):  # midnight fell in a DST gap: the day starts when the gap ends
        assert zone_offset(zone, start) > zone_offset(zone, start - 1)
    elif local(zone, following).time() == time(0):
        # the day is as long as the zone's rules make it: 24 h less the offset gained that day
        assert following - start == 86400 - (zone_offset(zone, following) - zone_offset(zone, start))


@settings(max_examples=200)
@given(zone=st.sampled_from(ZONES + MIDNIGHT_ZONES), day=DAYS)
def test_local_noon_is_noon_or_the_end_of_a_gap(zone: str, day: date) -> None:
    number = day_number(day)
    (noon,) = local_day_start(zone, np.array([number]), np.array([0]), seconds=43200).tolist()
    moment = local(zone, noon)
    assert moment.date() == day
    if moment.time() != time(12):
        assert zone_offset(zone, noon) != zone_offset(zone, noon - 1) and moment.time() > time(12)
    assert local(zone, noon - 1).replace(tzinfo=None) < datetime.combine(day, time(12))


@pytest.mark.parametrize(("zone", "day", "hours"), [
    ("America/New_York", date(2024, 3, 10), 23),  # spring forward
    ("America/New_York", date(2024, 11, 3), 25),  # fall back
    ("America/New_York", date(2024, 3, 11), 24),
    ("Europe/Berlin", date(2024, 3, 31), 23),
    ("Europe/Berlin", date(2024, 10, 27), 25),
    ("Asia/Jerusalem", date(2017, 3, 24), 23),
    ("Australia/Lord_Howe", date(2024, 4, 7), 24.5),  # a 30-minute DST
    ("Australia/Lord_Howe", date(2024, 10, 6), 23.5),
    ("Pacific/Chatham", date(2024, 4, 7), 25),
    ("Asia/Kolkata", date(2024, 3, 10), 24),
    ("UTC", date(2024, 3, 10), 24),
])
def test_dst_days_have_the_zone_s_length(zone: str, day: date, hours: float) -> None:
    number = day_number(day)
    start, end = local_day_start(zone, np.array([number, number + 1]), np.array([0, 0])).tolist()
    assert end - start == hours * 3600
    assert local(zone, start).replace(tzinfo=None) == datetime.combine(day, time(0))


def test_a_midnight_in_a_dst_gap_starts_the_day_at_the_gap_s_end() -> None:
    # Chile springs forward at 24:00 (2024-09-08 begins at 01:00); Cuba springs forward at 00:00 and falls back
    # at 01:00 (2024-11-03 has midnight twice: the day starts at the first one)
    for zone, day, first_local, hours in [("America/Santiago", date(2024, 9, 8), time(1), 23),
                                          ("America/Havana", date(2024, 3, 10), time(1), 23),
                                          ("America/Havana", date(2024, 11, 3), time(0), 25)]:
        number = day_number(day)
        start, end = local_day_start(zone, np.array([number, number + 1]), np.array([0, 0])).tolist()
        assert local(zone, start).time() == first_local, zone
        assert local(zone, start - 1).date() == day - timedelta(days=1), zone
        assert end - start == hours * 3600, zone
    # the fold: the first midnight is the earlier instant, so the repeated hour belongs to the day once
    start = local_day_start("America/Havana", np.array([day_number(date(2024, 11, 3))]), np.array([0]))[0]
    assert local("America/Havana", start).fold == 0


def test_local_day_start_without_zone_uses_the_fallback_offset() -> None:
    days = np.array([0, 19_723, 19_723, -1])
    fallback = np.array([0, -8 * 3600, 5 * 3600 + 1800, 3600])
    result = local_day_start(None, days, fallback)
    assert result.dtype == np.float64
    assert result.tolist() == [0.0, 19_723 * 86400 + 8 * 3600, 19_723 * 86400 - 5 * 3600 - 1800, -86400 - 3600]
    noon = local_day_start(None, days, np.int64(7200), seconds=43200)
    assert noon.tolist() == (days * 86400 + 43200 - 7200).astype(float).tolist()


def test_local_day_start_is_vectorised_per_distinct_day() -> None:
    days = np.array([[19_792, 19_793], [19_792, 19_990]])
    starts = local_day_start("America/New_York", days, np.zeros((2, 2)))
    assert starts.shape == (2, 2) and starts.dtype == np.float64
    for number, start in zip(days.ravel().tolist(), starts.ravel().tolist(), strict=True):
        moment = local("America/New_York", start)
        assert day_number(moment.date()) == number and moment.time() == time(0)
    assert local_day_start("UTC", np.array([], dtype=np.int64), np.array([])).shape == (0,)


def test_day_windows_from_day_starts_hold_exactly_the_day_s_samples() -> None:
    # a sample belongs to day D by day_keys exactly when it lies in [start(D), start(D + 1)) by local_day_start
    zone = "America/New_York"
    epochs = np.arange(1_709_870_000, 1_710_200_000, 977, dtype=np.float64)  # around 2024-03-10
    keys = day_keys(epochs, zone_offsets(zone, epochs))
    starts = local_day_start(zone, keys, np.zeros(len(keys)))
    ends = local_day_start(zone, keys + 1, np.zeros(len(keys)))
    assert bool(np.all((starts <= epochs) & (epochs < ends)))


def test_a_local_time_inside_a_gap_is_the_gap_s_end_and_a_repeated_one_its_first_occurrence() -> None:
    zone = "America/New_York"
    spring, autumn = day_number(date(2024, 3, 10)), day_number(date(2024, 11, 3))
    (in_gap,) = local_day_start(zone, np.array([spring]), np.array([0]), seconds=2 * 3600 + 1800).tolist()
    assert local(zone, in_gap).replace(tzinfo=None) == datetime(2024, 3, 10, 3, 0)  # not 03:30 (fold=0 alone)
    assert zone_offset(zone, in_gap) != zone_offset(zone, in_gap - 1)
    (repeated,) = local_day_start(zone, np.array([autumn]), np.array([0]), seconds=3600 + 1800).tolist()
    assert local(zone, repeated).replace(tzinfo=None) == datetime(2024, 11, 3, 1, 30)
    assert zone_offset(zone, repeated) == -4 * 3600  # the first 01:30 (EDT), not the second (EST)


def test_a_day_a_zone_skipped_is_an_empty_window() -> None:
    # Samoa moved across the date line: 30 December 2011 did not happen in Pacific/Apia
    zone = "Pacific/Apia"
    first = day_number(date(2011, 12, 29))
    starts = local_day_start(zone, np.arange(first, first + 4), np.zeros(4)).tolist()
    assert [b - a for a, b in zip(starts, starts[1:], strict=False)] == [86400.0, 0.0, 86400.0]
    assert local(zone, starts[2]).replace(tzinfo=None) == datetime(2011, 12, 31)
