"""The hardened streaming parser: chunking, DTD, control characters, XXE, bombs, truncation, recovery."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
    assert rec.kinds() == ["me", "record", "record", "correlation", "workout", "other", "record"]
    assert rec.events[2][2] == {"HKTimeZone": "Europe/Paris"}
    assert rec.events[3][1:3] == ("HKCorrelationTypeIdentifierBloodPressure", 2)
    assert rec.events[4][1:3] == ("HKWorkoutActivityTypeRunning", 1)


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
    assert rec.events[1][3] == first_record_line


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
