"""Sample times as numbers (``epoch_times``) and as identifier text (``utc_text``) agree with ``datetime``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mappers import ids
from mappers.ids import utc_text
from mappers.sample import epoch_times

ZONES = st.sampled_from([UTC, ZoneInfo("America/New_York"), ZoneInfo("Asia/Kolkata"), ZoneInfo("Australia/Lord_Howe"),
                         timezone(timedelta(hours=-5)), timezone(timedelta(hours=5, minutes=45))])
MOMENTS = st.builds(lambda naive, zone: naive.replace(tzinfo=zone),
                    st.datetimes(min_value=datetime(1950, 1, 1), max_value=datetime(2080, 1, 1)), ZONES)


@settings(max_examples=300, deadline=None)
@given(MOMENTS, st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=3)), ZONES)
def test_epoch_times_equal_timestamp_and_utcoffset(start, length, end_zone) -> None:
    end = (start + length).astimezone(end_zone)  # the end may be written in another offset
    first, last, offset = epoch_times(start, end)
    assert first == start.timestamp() and last == end.timestamp()  # bit for bit, microseconds included
    assert offset == start.utcoffset().total_seconds()


@settings(max_examples=300, deadline=None)
@given(st.lists(MOMENTS, min_size=1, max_size=40), st.booleans())
def test_utc_text_is_the_iso_utc_instant(moments, tiny_cache) -> None:
    size = ids._MINUTE_CACHE_SIZE
    ids._MINUTE_CACHE_SIZE = 2 if tiny_cache else size  # exercise the bounded caches' clearing
    try:
        for moment in moments:
            expected = moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
            assert utc_text(moment.timestamp(), moment) == expected
            assert utc_text(moment.timestamp(), moment) == expected  # cached path
    finally:
        ids._MINUTE_CACHE_SIZE = size


def test_a_naive_time_is_refused() -> None:
    naive = datetime(2024, 3, 10, 8, 15)
    with pytest.raises(ValueError, match="timezone-aware"):
        epoch_times(naive, naive)
