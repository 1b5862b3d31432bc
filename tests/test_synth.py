"""The synthetic export writes dates as real iPhones do: one export-time offset on every date, HKTimeZone on some."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import Counter
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wearfhir.synth import SynthSpec, export_time, iter_export_lines

REAL_EXPORTS = Path(__file__).resolve().parents[2] / "shared" / "samples" / "apple-health"
# whole real exports (and one real excerpt) written by iPhones in the "YYYY-MM-DD hh:mm:ss ±hhmm" form
REAL_MODERN_EXPORTS = ["ashtom-hkimport-v3-2017.xml", "rgosdin-v8-ios12.xml", "opendroid-v11-audiogram-units.xml",
                       "opendroid-v11-clinical-hrv.xml", "ahp-export.xml"]

DATE_ATTRIBUTE = re.compile(r'\b(?:value|startDate|endDate|creationDate|date)="(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) '
                            r'([+-]\d{4})"')
# the offset of every date attribute and of the ExportDate (not of dates inside metadata values: in ashtom, an app
# wrote its own "Created at" metadata in UTC)
OFFSET_OF_ANY_DATE = re.compile(r'(?:\b[a-z]+Date|\bdate|<ExportDate value)="[^"]*? ([+-]\d{4})"')
RECORD_DATE = re.compile(r'\b(?:startDate|endDate|creationDate|date)="(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) ([+-]\d{4})"')
NEW_YORK = ZoneInfo("America/New_York")
# crosses 2024-11-03 (EDT -> EST) within a few days; about 6 days of records
ACROSS_FALL_BACK = SynthSpec(records=7_000, start=date(2024, 10, 31), broken_dtd=False, trap_every=900)


def _xml(spec: SynthSpec) -> str:
    return "".join(iter_export_lines(spec))


def _parse(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S %z")


def _dated_attributes(xml: str) -> list[tuple[str, str, str]]:
    """(element tag, attribute name, text) of every date attribute, in document order."""
    found = []
    for element in ET.fromstring(xml.replace("\x0b", "")).iter():  # the U+000B trap is not XML
        for name, text in element.attrib.items():
            if name.endswith("Date") or name == "date" or (element.tag == "ExportDate" and name == "value"):
                found.append((element.tag, name, text))
    return found


def _top_level(xml: str) -> list[ET.Element]:
    return [e for e in ET.fromstring(xml.replace("\x0b", "")) if e.tag in ("Record", "Workout", "Correlation")]


def _zone_of(element: ET.Element) -> str | None:
    for entry in element.findall("MetadataEntry"):
        if entry.get("key") == "HKTimeZone":
            return entry.get("value")
    return None


# --- the default: every date in the export-time offset ----------------------------------------------------------


def test_default_writes_one_offset_on_every_date_the_export_times() -> None:
    xml = _xml(ACROSS_FALL_BACK)
    offsets = Counter(OFFSET_OF_ANY_DATE.findall(xml))
    export = re.search(r'<ExportDate value="([^"]+)"', xml)
    assert export is not None
    exported = _parse(export.group(1))
    assert exported == export_time(ACROSS_FALL_BACK)
    assert list(offsets) == [export.group(1)[-5:]]
    assert sum(offsets.values()) > 20_000  # start, end and creation dates of ~7,000 records, all in one offset
    # the dates regex and the XML parser agree on how many dates there are (none escaped the regex)
    assert sum(offsets.values()) == len(_dated_attributes(xml))


def test_default_export_offset_differs_from_the_first_days_so_written_offsets_mislead() -> None:
    spec = SynthSpec(records=3_000, broken_dtd=False)  # two days from 20 Oct 2024, under daylight time (-0400)
    xml = _xml(spec)
    assert set(OFFSET_OF_ANY_DATE.findall(xml)) == {"-0500"}
    first = _top_level(xml)[0]
    start = _parse(first.attrib["startDate"])
    local = start.astimezone(NEW_YORK)
    assert local.date() == spec.start  # the first heart rate of 20 October, local time ...
    assert start.date() == spec.start - timedelta(days=1)  # ... reads as 19 October in the written offset


def test_default_and_per_sample_modes_write_the_same_instants_and_nothing_else_differs() -> None:
    export_mode = _dated_attributes(_xml(ACROSS_FALL_BACK))
    per_sample = _dated_attributes(_xml(SynthSpec(**{**ACROSS_FALL_BACK.__dict__, "offsets": "per-sample"})))
    assert len(export_mode) == len(per_sample) > 20_000
    assert [(tag, name) for tag, name, _ in export_mode] == [(tag, name) for tag, name, _ in per_sample]
    assert [_parse(text).timestamp() for _, _, text in export_mode] == \
        [_parse(text).timestamp() for _, _, text in per_sample]
    # the wall clocks themselves differ wherever daylight time was in force
    assert sum(a != b for (_, _, a), (_, _, b) in zip(export_mode, per_sample, strict=True)) > 1_000


def test_the_two_modes_differ_only_in_the_offsets_of_dates() -> None:
    export_mode = DATE_ATTRIBUTE.sub('"DATE"', _xml(ACROSS_FALL_BACK))
    per_sample = DATE_ATTRIBUTE.sub('"DATE"', _xml(SynthSpec(**{**ACROSS_FALL_BACK.__dict__, "offsets": "per-sample"})))
    assert export_mode == per_sample


# --- the per-sample mode: each date in its own local offset ------------------------------------------------------


def test_per_sample_mode_writes_each_date_in_its_own_dst_offset() -> None:
    xml = _xml(SynthSpec(**{**ACROSS_FALL_BACK.__dict__, "offsets": "per-sample"}))
    dates = DATE_ATTRIBUTE.findall(xml)
    assert Counter(offset for _, offset in dates).keys() == {"-0400", "-0500"}
    for wall, offset in dates:
        instant = _parse(f"{wall} {offset}")
        assert instant.utcoffset() == instant.astimezone(NEW_YORK).utcoffset(), (wall, offset)


def test_a_zone_without_dst_has_one_offset_in_both_modes() -> None:
    for offsets in ("export", "per-sample"):
        spec = SynthSpec(records=2_000, timezone="Asia/Tokyo", offsets=offsets, broken_dtd=False)  # type: ignore[arg-type]
        assert set(OFFSET_OF_ANY_DATE.findall(_xml(spec))) == {"+0900"}


# --- HKTimeZone on some records, as on real exports ---------------------------------------------------------------


def test_hk_time_zone_is_on_sleep_workouts_and_a_few_heart_rates_only() -> None:
    spec = SynthSpec(records=12_000, timezone="Europe/Berlin", broken_dtd=False, trap_every=800)
    records = _top_level(_xml(spec))
    zoned = [r for r in records if _zone_of(r) is not None]
    assert {_zone_of(r) for r in zoned} == {"Europe/Berlin"}
    assert 0 < len(zoned) < 0.05 * len(records)
    sleep = [r for r in records if r.get("type") == "HKCategoryTypeIdentifierSleepAnalysis"]
    workouts = [r for r in records if r.tag == "Workout"]
    heart = [r for r in records if r.get("type") == "HKQuantityTypeIdentifierHeartRate" and r.get("value")]
    assert sleep and workouts
    assert all(_zone_of(r) for r in sleep + workouts)
    zoned_heart = [r for r in heart if _zone_of(r)]
    assert 0 < len(zoned_heart) < 0.1 * len(heart)
    assert {r.get("type") or r.tag for r in zoned} == {"HKCategoryTypeIdentifierSleepAnalysis", "Workout",
                                                       "HKQuantityTypeIdentifierHeartRate"}


def test_without_zone_metadata_no_record_names_a_zone_and_instants_stay() -> None:
    with_zone = _xml(ACROSS_FALL_BACK)
    without = _xml(SynthSpec(**{**ACROSS_FALL_BACK.__dict__, "zone_metadata": False}))
    assert "HKTimeZone" in with_zone
    assert "HKTimeZone" not in without
    assert DATE_ATTRIBUTE.findall(with_zone) == DATE_ATTRIBUTE.findall(without)


# --- the export date ------------------------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=st.integers(1, 4_000), seed=st.integers(0, 2**32),
       start=st.dates(date(2000, 1, 1), date(2035, 12, 31)),
       zone=st.sampled_from(["America/New_York", "Europe/Berlin", "Australia/Sydney", "Asia/Tokyo", "UTC"]),
       traps=st.booleans())
def test_no_record_is_dated_after_the_export(records: int, seed: int, start: date, zone: str, traps: bool) -> None:
    spec = SynthSpec(records=records, seed=seed, start=start, timezone=zone, traps=traps, trap_every=97)
    xml = _xml(spec)
    exported = export_time(spec).timestamp()
    latest = max(_parse(f"{wall} {offset}").timestamp() for wall, offset in DATE_ATTRIBUTE.findall(xml))
    assert latest == exported  # the ExportDate itself is the latest date in the file


@pytest.mark.parametrize("records", [999, 1_000, 2_500, 4_000, 9_999])
@pytest.mark.parametrize("zone", ["UTC", "Asia/Tokyo"])
def test_without_dst_the_export_follows_the_records_closely_yet_after_all(records: int, zone: str) -> None:
    # no offset to wait for: the export is dated the first day after the most days the records could need
    spec = SynthSpec(records=records, timezone=zone, traps=False)
    exported = export_time(spec).timestamp()
    latest = max(_parse(f"{wall} {offset}").timestamp() for wall, offset in RECORD_DATE.findall(_xml(spec)))
    assert latest < exported < latest + 3 * 86_400


@settings(max_examples=200, deadline=None)
@given(records=st.integers(1, 3_000_000), start=st.dates(date(2000, 1, 1), date(2035, 12, 31)),
       zone=st.sampled_from(["America/New_York", "Europe/Berlin", "Australia/Sydney", "America/Santiago",
                             "Asia/Tokyo"]))
def test_export_offset_differs_from_the_first_days_in_zones_with_dst(records: int, start: date, zone: str) -> None:
    spec = SynthSpec(records=records, start=start, timezone=zone)
    exported = export_time(spec)
    tz = ZoneInfo(zone)
    first_day = datetime(start.year, start.month, start.day, tzinfo=tz)
    assert exported > first_day + timedelta(days=records / 1_000)  # after any day the records can reach
    assert exported - first_day < timedelta(days=records / 1_000 + 400)
    after_records = first_day + timedelta(days=records // 1_000 + 1)
    year_after = {(after_records + timedelta(days=d)).utcoffset() for d in range(366)}
    if year_after != {first_day.utcoffset()}:  # the zone had DST then (Chile had none in 2015, for one)
        assert exported.utcoffset() != first_day.utcoffset()


def test_an_explicit_export_time_sets_the_offset_of_every_date() -> None:
    summer = datetime(2025, 7, 1, 8, 0, tzinfo=ZoneInfo("UTC"))
    xml = _xml(SynthSpec(records=1_500, exported=summer, broken_dtd=False))
    assert '<ExportDate value="2025-07-01 04:00:00 -0400"/>' in xml
    assert set(OFFSET_OF_ANY_DATE.findall(xml)) == {"-0400"}


def test_bad_specs_fail_when_made() -> None:
    with pytest.raises(ValueError, match="offsets"):
        SynthSpec(offsets="local")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timezone-aware"):
        SynthSpec(exported=datetime(2025, 1, 1))  # noqa: DTZ001 - the naive datetime is the point
    with pytest.raises(Exception, match="Mars"):
        SynthSpec(timezone="Mars/Olympus_Mons")


# --- everything else stays --------------------------------------------------------------------------------------------


def test_same_seed_same_text_other_seed_other_text() -> None:
    spec = SynthSpec(records=2_000)
    assert _xml(spec) == _xml(spec)
    assert _xml(spec) != _xml(SynthSpec(records=2_000, seed=8))


def test_traps_are_still_written() -> None:
    xml = _xml(SynthSpec(records=6_000, trap_every=500))
    assert "FutureMetricFromIOS30" in xml
    assert 'value="n/a"' in xml
    assert "\x0b" in xml
    assert "<!ELEMENT RightEye EMPTY>" in xml and "brand            CDATA #IMPLIED\n\n" in xml  # iOS 16's DTD


# --- what the generator imitates holds on real exports ---------------------------------------------------------------


@pytest.mark.skipif(not REAL_EXPORTS.is_dir(), reason=f"real exports not found at {REAL_EXPORTS}")
@pytest.mark.parametrize("name", REAL_MODERN_EXPORTS)
def test_real_iphone_exports_write_the_export_offset_on_every_date(name: str) -> None:
    text = (REAL_EXPORTS / name).read_text(encoding="utf-8")
    export = re.search(r'<ExportDate value="[^"]* ([+-]\d{4})"', text)
    assert export is not None
    offsets = Counter(OFFSET_OF_ANY_DATE.findall(text))
    assert len(offsets) == 1 and export.group(1) in offsets, f"{name}: {len(offsets)} distinct offsets"
    assert sum(offsets.values()) > 10


@pytest.mark.skipif(not REAL_EXPORTS.is_dir(), reason=f"real exports not found at {REAL_EXPORTS}")
def test_a_real_export_names_its_zone_on_few_records() -> None:
    text = (REAL_EXPORTS / "ashtom-hkimport-v3-2017.xml").read_text(encoding="utf-8")
    zoned, records = text.count('key="HKTimeZone"'), len(re.findall(r"<(?:Record|Workout) ", text))
    assert 0 < zoned < 0.01 * records
