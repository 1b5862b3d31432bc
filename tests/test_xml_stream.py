"""The hardened streaming parser: chunking, DTD, control characters, XXE, bombs, truncation, recovery."""

from __future__ import annotations

import re
import time
import tracemalloc
import xml.etree.ElementTree as ET  # noqa: S405 (parses the project's own test inputs and trusted samples)
from pathlib import Path
from typing import Any
from xml.parsers import expat

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.healthkit.export_file import locate_export, open_export_stream
from connectors.healthkit.xml_stream import HealthDataStream
from tests.helpers import FOOTER, HEADER, Recorder, export_xml, record
from wearfhir.errors import TruncatedInputError, UnsupportedInputError

DOC = export_xml(
    record("HeartRate", "61", "count/min"),
    record("HeartRate", "62", "count/min", children='  <MetadataEntry key="HKTimeZone" value="Europe/Paris"/>\n'),
    ' <Correlation type="HKCorrelationTypeIdentifierBloodPressure" sourceName="Omron" '
    'startDate="2024-03-10 08:15:00 -0400" endDate="2024-03-10 08:15:00 -0400">\n'
    + "  " + record("BloodPressureSystolic", "120", "mmHg", source="Omron", device=None)
    + "  " + record("BloodPressureDiastolic", "80", "mmHg", source="Omron", device=None)
    + " </Correlation>\n",
    ' <Workout workoutActivityType="HKWorkoutActivityTypeRunning" sourceName="Apple Watch" '
    'startDate="2024-03-10 08:15:00 -0400" endDate="2024-03-10 08:45:00 -0400">\n'
    '  <WorkoutStatistics type="HKQuantityTypeIdentifierActiveEnergyBurned" sum="300" unit="Cal"/>\n'
    " </Workout>\n",
    ' <ActivitySummary dateComponents="2024-03-10"/>\n',
    record("HeartRate", "63", "count/min"),
)


def parse(data: bytes, chunk: int = 1 << 20) -> tuple[Recorder, HealthDataStream]:
    rec = Recorder()
    stream = HealthDataStream(rec)
    for i in range(0, len(data), chunk):
        stream.feed(data[i:i + chunk])
    stream.close()
    return rec, stream


def test_elements_arrive_in_order_with_metadata_and_children() -> None:
    rec, _ = parse(DOC)
    assert rec.kinds() == ["export_date", "me", "record", "record", "correlation", "workout", "other", "record"]
    assert rec.events[0] == ("export_date", "2025-01-15 09:00:00 -0500")
    assert rec.events[3][2] == {"HKTimeZone": "Europe/Paris"}
    assert rec.events[4][1:3] == ("HKCorrelationTypeIdentifierBloodPressure", 2)
    assert rec.events[5][1:3] == ("HKWorkoutActivityTypeRunning", 1)


@settings(max_examples=60, deadline=None)
@given(chunk=st.integers(min_value=1, max_value=len(DOC) + 10))
def test_any_chunking_gives_the_same_events(chunk: int) -> None:
    whole, _ = parse(DOC)
    pieces, _ = parse(DOC, chunk)
    assert pieces.events == whole.events


def test_ios16_broken_dtd_is_not_a_problem() -> None:
    assert "brand            CDATA #IMPLIED\n\n<!ELEMENT" in HEADER  # the unterminated ATTLIST of iOS 16
    rec, stream = parse(DOC)
    assert "malformed" not in rec.kinds()
    assert stream.syntax_errors == 0


def test_line_numbers_survive_doctype_removal() -> None:
    rec, _ = parse(DOC)
    first_record_line = DOC.decode().splitlines().index(record("HeartRate", "61", "count/min").rstrip("\n")) + 1
    assert rec.events[2][3] == first_record_line


def test_stray_control_characters_are_removed_and_counted() -> None:
    data = export_xml(record("HeartRate", "6\x0b1", "count/min"), record("HeartRate", "62\x01", "count/min"))
    rec, stream = parse(data)
    assert [e[1] for e in rec.events if e[0] == "record"] == ["61", "62"]
    assert stream.control_chars_removed == 2


def test_external_entities_are_never_resolved(tmp_path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    header = HEADER.replace("<!-- HealthKit Export Version: 12 -->",
                            f'<!ENTITY xxe SYSTEM "file://{secret}">\n<!ENTITY % p SYSTEM "file://{secret}"> %p;')
    data = export_xml(record("HeartRate", "&xxe;", "count/min"), record("HeartRate", "70", "count/min"),
                      header=header)
    rec, _ = parse(data)
    assert "TOP-SECRET-CONTENT" not in repr(rec.events)
    assert [e[1] for e in rec.events if e[0] == "record"] == ["70"]
    assert any(e[0] == "malformed" and "undefined entity" in e[1] for e in rec.events)


def test_entity_expansion_bomb_is_inert() -> None:
    lol = ['<!ENTITY lol0 "lollollollollollollollollollol">']
    lol += [f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)]
    header = HEADER.replace("<!-- HealthKit Export Version: 12 -->", "\n".join(lol))
    data = export_xml(record("HeartRate", "&lol9;", "count/min"), record("HeartRate", "71", "count/min"),
                      header=header)
    started = time.perf_counter()
    rec, _ = parse(data)
    assert time.perf_counter() - started < 2
    assert [e[1] for e in rec.events if e[0] == "record"] == ["71"]
    assert all(len(repr(e)) < 2000 for e in rec.events)


def test_malformed_record_is_reported_and_the_rest_still_lands() -> None:
    data = export_xml(
        record("HeartRate", "60", "count/min"),
        ' <Record type="HKQuantityTypeIdentifierHeartRate" value="61" unit=count/min startDate="x"/>\n',
        record("HeartRate", "62", "count/min", children='  <MetadataEntry key="k" value="v"/>\n'),
        ' <Record type="broken" <<<< \n',
        record("HeartRate", "63", "count/min"),
    )
    rec, stream = parse(data, chunk=7)
    assert [e[1] for e in rec.events if e[0] == "record"] == ["60", "62", "63"]
    malformed = [e for e in rec.events if e[0] == "malformed"]
    assert len(malformed) == 2 == stream.syntax_errors
    lines = data.decode().splitlines()
    assert "unit=count/min" in lines[malformed[0][2] - 1]
    assert "<<<<" in lines[malformed[1][2] - 1]


def test_truncated_input_raises_with_the_stop_line_after_delivering_what_was_read() -> None:
    data = export_xml(*(record("HeartRate", str(60 + i), "count/min") for i in range(10)))
    cut = data[: data.index(b'value="65"') + 3]
    rec = Recorder()
    stream = HealthDataStream(rec)
    stream.feed(cut)
    cut_line = cut.count(b"\n") + 1
    with pytest.raises(TruncatedInputError, match=rf"ends at line {cut_line}\b.*truncated"):
        stream.close()
    assert [e[1] for e in rec.events if e[0] == "record"] == [str(60 + i) for i in range(5)]


def test_missing_closing_root_is_truncation() -> None:
    data = export_xml(record("HeartRate", "60", "count/min"), footer="")
    with pytest.raises(TruncatedInputError):
        parse(data)


def test_wrong_root_is_unsupported() -> None:
    with pytest.raises(UnsupportedInputError, match="not an Apple Health export"):
        parse(b'<?xml version="1.0"?>\n<ClinicalDocument></ClinicalDocument>\n')


def test_footer_constant_closes_the_root() -> None:
    assert FOOTER.strip() == "</HealthData>"


# ---- resync on real and synthetic runs of malformed records -------------------------------------------------
SAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "samples" / "apple-health"
DE_DE = SAMPLES / "ericwolter-2015-de_DE-Exportieren.xml"
# iOS 8.3 wrote metadata keys with spaces as attribute names (`Health Mate App Version="2.6.2"`)
SPACED_ATTRIBUTE_NAME = re.compile(rb'\s[A-Za-z][\w]*(?: \w+)+="')
BAD = ' <Record type="HKCategoryTypeIdentifierSleepAnalysis" sourceName="Withings" Sleep Stage="Deep"/>\n'


def lines_of(data: bytes) -> list[bytes]:
    return data.split(b"\n")


def events_of(rec: Recorder, kind: str) -> list[tuple[Any, ...]]:
    return [e for e in rec.events if e[0] == kind]


def record_lines_by_hand(data: bytes) -> tuple[list[int], list[int]]:
    """(well-formed, malformed) line numbers of a one-record-per-line file, each line parsed on its own."""
    good: list[int] = []
    bad: list[int] = []
    for number, line in enumerate(lines_of(data), 1):
        if not line.lstrip().startswith(b"<Record"):
            continue
        parser = expat.ParserCreate()
        try:
            parser.Parse(line, True)
        except expat.ExpatError:
            bad.append(number)
        else:
            good.append(number)
    return good, bad


def test_de_de_export_parses_to_the_end_with_every_malformed_record_reported_on_its_line() -> None:
    data = DE_DE.read_bytes()
    good, bad = record_lines_by_hand(data)
    assert len(good) + len(bad) == data.count(b"<Record") == 2819  # one record per line
    by_regex = [n for n, line in enumerate(lines_of(data), 1) if SPACED_ATTRIBUTE_NAME.search(line)]
    assert by_regex == bad and len(bad) == 1320  # the number, counted two ways
    assert bad[-1281:] == list(range(1542, 2823))  # the long run; the last record (line 2823) is well-formed

    for chunk in (1 << 20, 4096, 333):
        rec, stream = parse(data, chunk)  # no RecursionError, no TruncatedInputError
        assert [e[2] for e in events_of(rec, "malformed")] == bad
        assert all("not well-formed" in e[1] for e in events_of(rec, "malformed"))
        assert [e[3] for e in events_of(rec, "record")] == good
        assert stream.syntax_errors == 1320


def test_de_de_export_from_its_zip_gives_the_same_events() -> None:
    location = locate_export(SAMPLES / "ericwolter-2015-de_DE-Exportieren.zip")
    rec = Recorder()
    stream = HealthDataStream(rec)
    with open_export_stream(location) as member:
        while chunk := member.read(64 * 1024):
            stream.feed(chunk)
    stream.close()
    assert rec.events == parse(DE_DE.read_bytes())[0].events


def test_real_export_ending_on_a_malformed_record_is_complete() -> None:
    lines = lines_of(DE_DE.read_bytes())
    assert lines[2822].lstrip().startswith(b"<Record") and lines[2823] == b"</HealthData>"
    data = b"\n".join(lines[:2822] + lines[2823:])  # drop the last (well-formed) record: a bad one is last now
    rec, _ = parse(data, 4096)
    assert events_of(rec, "malformed")[-1][2] == 2822
    assert len(events_of(rec, "malformed")) == 1320 and len(events_of(rec, "record")) == 1498


def test_real_export_cut_inside_the_malformed_run_is_truncated_at_its_last_line() -> None:
    data = DE_DE.read_bytes()
    cut = data[: sum(len(line) + 1 for line in lines_of(data)[:1999]) + 40]  # 40 bytes into line 2000
    assert b"\n" not in cut[-40:] and not SPACED_ATTRIBUTE_NAME.search(cut[-40:])
    rec = Recorder()
    stream = HealthDataStream(rec)
    stream.feed(cut)
    with pytest.raises(TruncatedInputError, match=r"ends at line 2000\b"):
        stream.close()
    assert events_of(rec, "malformed")[-1][2] == 1999  # line 2000 is cut before its error: not reported


class CountingHandler:
    """Keeps counts and a few line numbers only, so that memory measures the parser, not the handler."""

    def __init__(self) -> None:
        self.malformed_count = 0
        self.first_malformed = self.last_malformed = 0
        self.record_lines: list[int] = []

    def export_date(self, value: str) -> None:
        pass

    def me(self, attrs: dict[str, str]) -> None:
        pass

    def record(self, attrs: dict[str, str], metadata: dict[str, str], line: int) -> None:
        self.record_lines.append(line)

    def correlation(self, attrs: dict[str, str], metadata: dict[str, str], records: list[Any], line: int) -> None:
        pass

    def workout(self, attrs: dict[str, str], metadata: dict[str, str], statistics: list[Any], line: int) -> None:
        pass

    def other(self, name: str) -> None:
        pass

    def malformed(self, message: str, line: int) -> None:
        self.malformed_count += 1
        self.first_malformed = self.first_malformed or line
        self.last_malformed = line


def test_fifty_thousand_malformed_records_in_a_row_resync_iteratively_in_bounded_memory() -> None:
    run = 50_000
    good = [record("HeartRate", str(60 + i), "count/min") for i in range(3)]
    data = export_xml(*good, *([BAD] * run), *good)
    first_bad = data.decode().splitlines().index(BAD.rstrip("\n")) + 1
    handler = CountingHandler()
    stream = HealthDataStream(handler)
    chunk = 64 * 1024
    tracemalloc.start()
    try:
        for i in range(0, len(data), chunk):
            stream.feed(data[i:i + chunk])
        stream.close()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert handler.malformed_count == run == stream.syntax_errors
    assert (handler.first_malformed, handler.last_malformed) == (first_bad, first_bad + run - 1)
    assert handler.record_lines == [first_bad - 3, first_bad - 2, first_bad - 1,
                                    first_bad + run, first_bad + run + 1, first_bad + run + 2]
    assert len(data) > 4_000_000 and peak < 1_000_000  # a few chunks, not the run


def test_last_record_malformed_before_the_closing_root_is_not_truncation() -> None:
    data = export_xml(record("HeartRate", "60", "count/min"), BAD)
    rec, stream = parse(data)
    assert [e[1] for e in events_of(rec, "record")] == ["60"]
    [(_, _, line)] = events_of(rec, "malformed")
    assert data.decode().splitlines()[line - 1] == BAD.rstrip("\n")
    same_line = export_xml(record("HeartRate", "60", "count/min"), BAD.rstrip("\n"), footer="</HealthData>\n")
    rec, _ = parse(same_line)  # `<Record … Sleep Stage="Deep"/></HealthData>`
    assert [e[0] for e in rec.events][-2:] == ["record", "malformed"]


def test_input_ending_inside_a_malformed_run_is_truncated_with_its_last_line() -> None:
    data = export_xml(record("HeartRate", "60", "count/min"), BAD, BAD, footer="")
    last_line = data.count(b"\n") + 1
    with pytest.raises(TruncatedInputError, match=rf"ends at line {last_line}\b"):
        parse(data)


ERRORS_DOC = export_xml(
    BAD,
    record("HeartRate", "60", "count/min"),
    ' <Record type="HKQuantityTypeIdentifierHeartRate" value="61"\n   unit=count/min\n   startDate="x"/>\n',
    BAD, BAD,
    record("HeartRate", "62", "count/min", children='  <MetadataEntry key="k" value="v"/>\n'),
    ' <Workout workoutActivityType="HKWorkoutActivityTypeRunning" Sleep Stage="x">\n'
    '  <WorkoutStatistics type="HKQuantityTypeIdentifierActiveEnergyBurned" sum="300" unit="Cal"/>\n'
    " </Workout>\n",
    record("HeartRate", "63", "count/min"),
    BAD,
)


@settings(max_examples=80, deadline=None)
@given(chunk=st.integers(min_value=1, max_value=len(ERRORS_DOC) + 10))
def test_resync_gives_the_same_events_for_any_chunking(chunk: int) -> None:
    whole, _ = parse(ERRORS_DOC)
    pieces, _ = parse(ERRORS_DOC, chunk)
    assert pieces.events == whole.events
    lines = ERRORS_DOC.decode().splitlines()
    assert [e[1] for e in events_of(whole, "record")] == ["60", "62", "63"]
    ends = [n for n, text in enumerate(lines, 1) if 'value="60"/>' in text or text == " </Record>"
            or 'value="63"/>' in text]
    assert [e[3] for e in events_of(whole, "record")] == ends  # a record's line is the line that closes it
    bad_lines = [e[2] for e in events_of(whole, "malformed")]
    assert len(bad_lines) == 6
    assert all(("Sleep Stage" in lines[n - 1]) or ("unit=count/min" in lines[n - 1]) for n in bad_lines)


# ---- ExportDate --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "value"), [
    ("ericwolter-2015-en_DE-export.xml", "20151107171924+0100"),
    ("ericwolter-2015-de_DE-Exportieren.xml", "20150915113529+0200"),
    ("brianerdelyi-ios8-2015.xml", "20140114084347-0800"),
    ("rgosdin-v8-ios12.xml", "2019-06-17 21:07:11 -0400"),
    ("ashtom-hkimport-v3-2017.xml", "2017-11-07 10:05:13 +0200"),
    ("ahp-export.xml", "2024-06-01 08:10:05 +0200"),
    ("nreyrolle-ios18-workouts.xml", "2026-01-20 22:00:00 +0100"),
    ("sensanalytics-readme-excerpt.xml", None),  # no ExportDate in this wrapper
])
def test_export_date_is_passed_once_as_written_before_any_record(name: str, value: str | None) -> None:
    rec, _ = parse((SAMPLES / name).read_bytes())
    dates = events_of(rec, "export_date")
    assert dates == ([] if value is None else [("export_date", value)])
    if value is not None:
        assert rec.kinds().index("export_date") < rec.kinds().index("record")


# ---- workouts: only the workout's own statistics ---------------------------------------------------------
class WorkoutRecorder(Recorder):
    """Also keeps each workout's statistics and metadata."""

    def __init__(self) -> None:
        super().__init__()
        self.workouts: list[tuple[dict[str, str], list[dict[str, str]]]] = []

    def workout(self, attrs: dict[str, str], metadata: dict[str, str], statistics: list[Any], line: int) -> None:
        super().workout(attrs, metadata, statistics, line)
        self.workouts.append((dict(metadata), [dict(s) for s in statistics]))


def test_nested_workout_activities_do_not_add_their_statistics_to_the_workout() -> None:
    data = (SAMPLES / "nreyrolle-ios18-workouts.xml").read_bytes()
    root = ET.fromstring(data)  # noqa: S314 (a trusted sample, no DTD)
    expected = [
        ({m.get("key", ""): m.get("value", "") for m in w.findall("MetadataEntry")},
         [dict(s.attrib) for s in w.findall("WorkoutStatistics")])
        for w in root.iter("Workout")
    ]
    nested = sum(len(w.findall("WorkoutActivity/WorkoutStatistics")) for w in root.iter("Workout"))
    assert len(expected) == 11 and sum(len(s) for _, s in expected) == 72 and nested == 368
    rec = WorkoutRecorder()
    stream = HealthDataStream(rec)
    stream.feed(data)
    stream.close()
    assert rec.workouts == expected
    for _, statistics in rec.workouts:  # no statistic type twice in one workout
        types = [s["type"] for s in statistics]
        assert len(types) == len(set(types))
