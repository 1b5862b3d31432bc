"""HealthKit date parsing: exact on both shapes iPhones write, strict on everything else, and on the real exports."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.healthkit.dates import DateWithoutOffsetError, format_healthkit_date, parse_healthkit_date

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples" / "apple-health"


def tz(hours: int, minutes: int = 0) -> timezone:
    sign = -1 if hours < 0 else 1
    return timezone(sign * timedelta(hours=abs(hours), minutes=minutes))


# ---- the iOS 8/9 compact shape ------------------------------------------------------------------------------

def test_compact_date_of_brianerdelyi_export_parses_to_its_wall_clock() -> None:
    # the value quoted in issue 9: Python 3.11's fromisoformat reads it as 04:30
    parsed = parse_healthkit_date("20140107104300-0800")
    assert parsed == datetime(2014, 1, 7, 10, 43, tzinfo=tz(-8))
    assert (parsed.hour, parsed.minute, parsed.utcoffset()) == (10, 43, timedelta(hours=-8))
    assert type(parsed.tzinfo) is timezone


def test_compact_date_is_not_what_fromisoformat_reads() -> None:
    text = "20140107104300-0800"
    try:
        naive_reading = datetime.fromisoformat(text)
    except ValueError:
        return  # a Python that rejects it is fine too
    assert naive_reading != parse_healthkit_date(text)


def test_compact_dates_share_cached_offsets() -> None:
    first = parse_healthkit_date("20150301120000+0100")
    second = parse_healthkit_date("20150302120000+0100")
    assert first.tzinfo is second.tzinfo
    assert first.utcoffset() == timedelta(hours=1)


# ---- the modern shape ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("2017-05-17 08:00:00 +0200", datetime(2017, 5, 17, 8, 0, tzinfo=tz(2))),
    ("2024-03-10 08:15:00 -0400", datetime(2024, 3, 10, 8, 15, tzinfo=tz(-4))),
    ("2019-12-31 23:59:59 +0000", datetime(2019, 12, 31, 23, 59, 59, tzinfo=UTC)),
    ("2020-02-29 00:00:00 -1000", datetime(2020, 2, 29, tzinfo=tz(-10))),
    ("2021-06-01 12:00:00 +0530", datetime(2021, 6, 1, 12, tzinfo=tz(5, 30))),
    ("2021-06-01 12:00:00 +0545", datetime(2021, 6, 1, 12, tzinfo=tz(5, 45))),
    ("2021-06-01 12:00:00 -0330", datetime(2021, 6, 1, 12, tzinfo=tz(-3, 30))),
    ("2021-06-01 12:00:00 +1345", datetime(2021, 6, 1, 12, tzinfo=tz(13, 45))),
    ("2021-06-01 12:00:00 +05:30", datetime(2021, 6, 1, 12, tzinfo=tz(5, 30))),
    ("20210601120000+0545", datetime(2021, 6, 1, 12, tzinfo=tz(5, 45))),
    ("20210601120000-0930", datetime(2021, 6, 1, 12, tzinfo=tz(-9, 30))),
    ("20210601120000+0000", datetime(2021, 6, 1, 12, tzinfo=UTC)),
])
def test_valid_dates_parse_to_their_wall_clock_and_offset(text: str, expected: datetime) -> None:
    parsed = parse_healthkit_date(text)
    assert parsed == expected
    assert parsed.utcoffset() == expected.utcoffset()  # same offset, not only the same instant
    assert (parsed.year, parsed.month, parsed.day, parsed.hour, parsed.minute, parsed.second) == (
        expected.year, expected.month, expected.day, expected.hour, expected.minute, expected.second)
    assert type(parsed.tzinfo) is timezone


# ---- rejections ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "",
    "garbage",
    "not a date at all, no way",
    "2014-02-30 10:00:00 +0100",  # no 30 February
    "2014-13-01 10:00:00 +0100",  # month 13
    "2014-01-01 24:00:00 +0100",  # hour 24
    "2014-01-01 10:60:00 +0100",
    "2014-01-01 10:00:60 +0100",  # no leap seconds
    "0000-01-01 10:00:00 +0100",  # year 0
    "20140107254300-0800",  # hour 25 (fromisoformat rejects it, for the wrong reason)
    "20140230104300-0800",  # 30 February, compact
    "20141307104300-0800",
    "20140107106000-0800",
    "2017-05-17 08:00:00 +0200 ",  # trailing junk
    "2017-05-17 08:00:00 +0200x",
    "2017-05-17 08:00:00 +0200Z",
    "20140107104300-0800 ",
    "20140107104300-08000",
    " 2017-05-17 08:00:00 +0200",  # leading junk
    "2017-05-17 08:00:00",  # no offset
    "20140107104300",
    "2017-05-17",
    "2017-05-17 08:00:00 Z",
    "2017-05-17 08:00:00 UTC",
    "2017-05-17T08:00:00 +0200",  # another separator
    "2017-05-17 08:00:00+0200",
    "2017-05-17 08:00:00+02:00",
    "2017/05/17 08:00:00 +0200",
    "2017-05-17 08:00 +0200",
    "2017-05-17 08:00:00.500 +0200",
    "2017-5-17 08:00:00 +02000",
    "2017-05-17 08:00:00 +0099",  # fromisoformat reads this as +01:39
    "2017-05-17 08:00:00 +0060",
    "2017-05-17 08:00:00 +2400",
    "2017-05-17 08:00:00 -0000",  # formats back as +0000
    "20140107104300-0000",
    "2017-05-17 08:00:00 +02",
    "2017-05-17 08:00:00 +2:00",
    "2017-05-17 08:00:00 0200",
    "2017-05-17 08:00:00 *0200",
    "2017-05-17 08:00:00 +02-00",
    "2017-05-17 08:00:00 +0:200",
    "2017-W20-3 08:00:00 +0200",
    "+017-05-17 08:00:00 +0200",
    "2017-05-17 +8:00:00 +0200",
    "2017-05-17 08:00:+0 +0200",
    "2017-05-17 08:00:00 +\u0660200",  # an Arabic-Indic digit
    "2017-05-1\uff17 08:00:00 +0200",  # a full-width digit
    "2014010710430\u00b2-0800",  # a superscript two (isdigit() is True for it)
    "+0140107104300-0800",
    "2014010710430 -0800",
    "201401071043.0-0800",
])
def test_anything_but_the_two_shapes_is_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="not a HealthKit date"):
        parse_healthkit_date(text)


def test_error_messages_never_quote_the_text() -> None:
    texts = ["2014-02-30 10:43:00 +0100", "20140107254300-0800", "2017-05-17 08:43:00", "2017-05-17 08:43:00 +0099"]
    for text in texts:
        with pytest.raises(ValueError) as caught:
            parse_healthkit_date(text)
        assert "43" not in str(caught.value)
        # fromisoformat's own message quotes the text: it must not travel along as the context
        assert caught.value.__context__ is None or caught.value.__suppress_context__


def test_missing_offset_says_so() -> None:
    with pytest.raises(DateWithoutOffsetError, match="no UTC offset"):
        parse_healthkit_date("2017-05-17 08:00:00")


_NOT_DIGITS = ["+", "-", "Z", "z", "T", " ", ":", ".", ",", "W", "_", "a", "\u0663", "\uff13", "\u00b3"]
_VALID = ["2017-05-17 08:09:10 +0230", "2017-05-17 08:09:10 -02:30", "20170517080910-0230"]


@pytest.mark.parametrize("valid", _VALID)
def test_a_non_digit_in_any_digit_position_is_rejected(valid: str) -> None:
    # every digit of every field, replaced by each character a lax parser might take as a sign, separator or digit
    parse_healthkit_date(valid)
    for position, char in enumerate(valid):
        if not char.isdigit():
            continue
        for other in _NOT_DIGITS:
            mutated = valid[:position] + other + valid[position + 1:]
            with pytest.raises(ValueError):
                parse_healthkit_date(mutated)


@pytest.mark.parametrize("valid", _VALID)
def test_a_separator_replaced_or_removed_is_rejected(valid: str) -> None:
    sign = valid.rindex("+") if "+" in valid else valid.rindex("-")
    for position, char in enumerate(valid):
        if char.isdigit():
            continue
        for other in ["", "0", "-", "+", " ", ":", "T", "/", "  "]:
            if other == char or (position == sign and other in "+-" and other) or (position > sign and other == ""):
                continue  # the other sign, or the offset written without its colon: another valid date
            mutated = valid[:position] + other + valid[position + 1:]
            with pytest.raises(ValueError):
                parse_healthkit_date(mutated)


# ---- round trips (hypothesis) -------------------------------------------------------------------------------

_OFFSETS = st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(lambda minutes: timezone(timedelta(minutes=minutes)))
_MOMENTS = st.builds(
    lambda naive, zone: naive.replace(tzinfo=zone),
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)).map(
        lambda d: d.replace(microsecond=0)),
    _OFFSETS,
)


@settings(max_examples=500)
@given(moment=_MOMENTS, compact=st.booleans(), colon=st.booleans())
def test_every_date_round_trips_in_both_shapes(moment: datetime, compact: bool, colon: bool) -> None:
    text = format_healthkit_date(moment, compact=compact, colon=colon)
    parsed = parse_healthkit_date(text)
    assert parsed == moment
    assert parsed.utcoffset() == moment.utcoffset()
    assert parsed.replace(tzinfo=None) == moment.replace(tzinfo=None)
    assert format_healthkit_date(parsed, compact=compact, colon=colon) == text


_SHAPED = st.one_of(
    st.text(alphabet="0123456789-+: TZ.", min_size=19, max_size=19),
    st.text(alphabet="0123456789-+: TZ.", min_size=25, max_size=26),
    st.sampled_from(_VALID).flatmap(lambda valid: st.tuples(
        st.just(valid), st.integers(0, len(valid) - 1), st.sampled_from("0123456789-+: TZW.\u0663"))).map(
        lambda t: t[0][:t[1]] + t[2] + t[0][t[1] + 1:]),
)


@settings(max_examples=2000)
@given(text=_SHAPED)
def test_whatever_is_accepted_round_trips(text: str) -> None:
    try:
        parsed = parse_healthkit_date(text)
    except ValueError:
        return
    compact = len(text) == 19
    assert format_healthkit_date(parsed, compact=compact, colon=len(text) == 26) == text


def test_format_refuses_naive_and_sub_minute_offsets() -> None:
    with pytest.raises(ValueError):
        format_healthkit_date(datetime(2020, 1, 1))
    with pytest.raises(ValueError):
        format_healthkit_date(datetime(2020, 1, 1, tzinfo=timezone(timedelta(seconds=30))))


# ---- the real exports ---------------------------------------------------------------------------------------

_DATE_ATTRIBUTE = re.compile(rb'\b(startDate|endDate|creationDate)="([^"]*)"|<ExportDate value="([^"]*)"')
_REAL_FILES = sorted(SAMPLES.glob("*.xml"))


@pytest.mark.skipif(not _REAL_FILES, reason="real samples not present")
@pytest.mark.parametrize("path", _REAL_FILES, ids=lambda p: p.name)
def test_every_date_of_the_real_exports_parses_and_round_trips(path: Path) -> None:
    data = path.read_bytes()
    seen = 0
    failures: list[int] = []  # byte positions only: the dates themselves are PHI
    for match in _DATE_ATTRIBUTE.finditer(data):
        text = (match.group(2) or match.group(3)).decode("ascii")
        seen += 1
        try:
            parsed = parse_healthkit_date(text)
        except ValueError:
            failures.append(match.start())
            continue
        if format_healthkit_date(parsed, compact=len(text) == 19, colon=len(text) == 26) != text:
            failures.append(match.start())
    assert not failures, f"{len(failures)} of {seen} dates in {path.name} failed, first at byte {failures[0]}"
    if path.name != "rgosdin-v8-ios12-export_cda.xml":  # the CDA file has no HealthKit dates
        assert seen > 0


@pytest.mark.skipif(not (SAMPLES / "brianerdelyi-ios8-2015.xml").exists(), reason="real samples not present")
def test_compact_exports_are_read_at_their_real_wall_clock() -> None:
    # brianerdelyi writes "20140107104300-0800" on its 142-step record (issue 9): 10:43, not 04:30
    data = (SAMPLES / "brianerdelyi-ios8-2015.xml").read_bytes()
    assert b'startDate="20140107104300-0800"' in data
    compact = [m.group(1).decode() for m in re.finditer(rb'startDate="(\d{14}[+-]\d{4})"', data)]
    assert len(compact) > 100
    for text in compact:
        parsed = parse_healthkit_date(text)
        assert (parsed.hour, parsed.minute) == (int(text[8:10]), int(text[10:12]))
