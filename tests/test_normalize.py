"""HealthKit records → canonical samples: unit traps, bad values, blood pressure, DST, sources."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.helpers import export_xml, normalize, record

BP_CORRELATION = (
    ' <Correlation type="HKCorrelationTypeIdentifierBloodPressure" sourceName="Omron" sourceVersion="7" '
    'startDate="2024-03-10 08:15:00 -0400" endDate="2024-03-10 08:15:00 -0400">\n'
    + "  " + record("BloodPressureSystolic", "121", "mmHg", source="Omron", device=None)
    + "  " + record("BloodPressureDiastolic", "79", "mmHg", source="Omron", device=None)
    + " </Correlation>\n"
)


def one(xml: bytes):
    samples, rejections, _ = normalize(xml)
    assert not rejections, rejections
    assert len(samples) == 1, samples
    return samples[0]


@pytest.mark.parametrize(
    ("rtype", "value", "unit", "metric", "expected", "canonical"),
    [
        ("OxygenSaturation", "0.97", "%", "oxygen_saturation", 97.0, "%"),
        ("OxygenSaturation", "1", "%", "oxygen_saturation", 100.0, "%"),
        ("BloodGlucose", "6.5", "mmol&lt;180.1558800000541&gt;/L", "blood_glucose", 117.1, "mg/dL"),
        ("BloodGlucose", "104", "mg/dL", "blood_glucose", 104.0, "mg/dL"),
        ("ActiveEnergyBurned", "418.4", "kJ", "active_energy", 100.0, "kcal"),
        ("ActiveEnergyBurned", "12.5", "Cal", "active_energy", 12.5, "kcal"),
        ("BodyMass", "150", "lb", "body_weight", 68.039, "kg"),
        ("DistanceWalkingRunning", "1", "mi", "distance_walking_running", 1609.34, "m"),
        ("DistanceWalkingRunning", "1.5", "km", "distance_walking_running", 1500.0, "m"),
        ("BodyTemperature", "98.6", "degF", "body_temperature", 37.0, "Cel"),
        ("BodyTemperature", "36.6", "degC", "body_temperature", 36.6, "Cel"),
        ("Height", "70", "in", "body_height", 177.8, "cm"),
        ("Height", "1.7", "m", "body_height", 170.0, "cm"),
        ("StepCount", "812", "count", "steps", 812, "{steps}"),
        ("HeartRate", "72", "count/min", "heart_rate", 72.0, "/min"),
        ("BodyMassIndex", "23.4", "count", "bmi", 23.4, "kg/m2"),
        ("VO2Max", "41.2", "mL/min·kg", "vo2max", 41.2, "mL/min/kg"),
    ],
)
def test_units_are_converted_to_the_canonical_ucum_unit(rtype, value, unit, metric, expected, canonical) -> None:
    sample = one(export_xml(record(rtype, value, unit)))
    assert sample.metric == metric
    assert sample.value == pytest.approx(expected, abs=0.01)
    assert sample.unit == canonical


def test_steps_are_whole_numbers() -> None:
    sample = one(export_xml(record("StepCount", "812", "count")))
    assert isinstance(sample.value, int)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (record("HeartRate", "", "count/min"), "missing value"),
        (record("HeartRate", None, "count/min"), "missing value"),
        (record("HeartRate", "seventy", "count/min"), "non-numeric value"),
        (record("HeartRate", "nan", "count/min"), "non-numeric value"),
        (record("HeartRate", "72", "furlong/fortnight"), "unknown unit"),
        (record("OxygenSaturation", "97", "%"), "value out of plausible range"),
        (record("HeartRate", "72", "count/min", start="2024-03-10 08:15:00 -0400", end="2024-03-10 08:10:00 -0400"),
         "endDate before startDate"),
        (record("HeartRate", "72", "count/min", start="10/03/2024 08:15"), "unparsable date"),
        (record("HeartRate", "72", "count/min", start="2024-03-10 08:15:00"), "date without UTC offset"),
        (record("HKCategoryTypeIdentifierSleepAnalysis", None), "missing value"),
        (record("HKCategoryTypeIdentifierSleepAnalysis", "HKCategoryValueSleepAnalysisDaydreaming"),
         "unknown category value"),
    ],
)
def test_bad_values_are_rejected_with_a_reason_and_neighbours_still_land(line: str, reason: str) -> None:
    xml = export_xml(record("HeartRate", "60", "count/min"), line, record("HeartRate", "61", "count/min",
                                                                           start="2024-03-10 09:00:00 -0400"))
    samples, rejections, _ = normalize(xml)
    assert [s.value for s in samples] == [60.0, 61.0]
    assert [r.reason for r in rejections] == [reason]
    bad_line = xml.decode().splitlines().index(line.rstrip("\n")) + 1
    assert rejections[0].where == f"line {bad_line}"
    assert "seventy" not in repr(rejections) and "97" not in (rejections[0].detail or "")


def test_unknown_and_known_unmapped_types_are_counted_not_rejected() -> None:
    xml = export_xml(
        record("HKQuantityTypeIdentifierFutureThing", "1", "count"),
        record("HKQuantityTypeIdentifierFutureThing", "2", "count"),
        record("FlightsClimbed", "3", "count"),
        record("HeartRate", "60", "count/min"),
    )
    samples, rejections, norm = normalize(xml)
    assert len(samples) == 1 and not rejections
    assert norm.unknown_types == {"HKQuantityTypeIdentifierFutureThing": 2}
    assert norm.unmapped_types == {"HKQuantityTypeIdentifierFlightsClimbed": 1}
    assert sum(norm.records_by_type.values()) == 4


def test_blood_pressure_correlation_is_one_panel_and_its_top_level_children_are_not_counted_twice() -> None:
    top_level = (record("BloodPressureSystolic", "121", "mmHg", source="Omron", device=None)
                 + record("BloodPressureDiastolic", "79", "mmHg", source="Omron", device=None))
    for xml in (export_xml(top_level, BP_CORRELATION), export_xml(BP_CORRELATION, top_level)):
        samples, rejections, norm = normalize(xml)
        assert not rejections
        assert len(samples) == 1
        panel = samples[0]
        assert panel.metric == "blood_pressure"
        assert panel.components == (("blood_pressure_systolic", 121.0), ("blood_pressure_diastolic", 79.0))
        assert norm.bp_merged == 2


def test_orphan_blood_pressure_readings_are_kept_on_their_own() -> None:
    samples, _, _ = normalize(export_xml(
        BP_CORRELATION,
        record("BloodPressureSystolic", "140", "mmHg", source="Omron", device=None, start="2024-03-11 08:00:00 -0400"),
    ))
    assert sorted(s.metric for s in samples) == ["blood_pressure", "blood_pressure_systolic"]


def test_category_records_have_a_code_and_no_value() -> None:
    sample = one(export_xml(record("HKCategoryTypeIdentifierSleepAnalysis", "HKCategoryValueSleepAnalysisAsleepREM",
                                   start="2024-03-10 01:00:00 -0500", end="2024-03-10 01:30:00 -0500")))
    assert (sample.metric, sample.code, sample.value) == ("sleep", "asleep_rem", None)
    assert sample.vendor_code == "HKCategoryValueSleepAnalysisAsleepREM"


def test_non_ascii_and_entity_encoded_source_names_are_decoded() -> None:
    sample = one(export_xml(record("HeartRate", "60", "count/min", source="Zoë&apos;s Watch &amp; Co &#x2014; 2")))
    assert sample.source.name == "Zoë's Watch & Co — 2"
    assert sample.source.device is not None and sample.source.device.hardware == "Watch6,1"


def test_fall_back_hour_keeps_both_readings_with_their_own_offsets() -> None:
    xml = export_xml(
        record("HeartRate", "60", "count/min", start="2024-11-03 01:30:00 -0400"),
        record("HeartRate", "61", "count/min", start="2024-11-03 01:30:00 -0500"),
    )
    samples, _, _ = normalize(xml)
    assert len(samples) == 2
    assert [s.start.utcoffset() for s in samples] == [timedelta(hours=-4), timedelta(hours=-5)]
    assert samples[1].start - samples[0].start == timedelta(hours=1)


def test_spring_forward_offsets_are_kept() -> None:
    xml = export_xml(
        record("HeartRate", "60", "count/min", start="2024-03-10 01:59:00 -0500"),
        record("HeartRate", "61", "count/min", start="2024-03-10 03:01:00 -0400"),
    )
    samples, _, _ = normalize(xml)
    assert samples[1].start - samples[0].start == timedelta(minutes=2)


def test_glucose_from_a_cgm_source_is_a_sensor_reading() -> None:
    sample = one(export_xml(record("BloodGlucose", "140", "mg/dL", source="Dexcom G7", device=None)))
    assert sample.metric == "cgm_glucose"


def test_metadata_time_zone_and_user_entered_are_kept() -> None:
    meta = ('  <MetadataEntry key="HKTimeZone" value="Europe/Paris"/>\n'
            '  <MetadataEntry key="HKWasUserEntered" value="1"/>\n')
    sample = one(export_xml(record("BodyMass", "70", "kg", children=meta)))
    assert sample.timezone == "Europe/Paris" and sample.user_entered is True


def test_workout_statistics_become_components() -> None:
    xml = export_xml(
        ' <Workout workoutActivityType="HKWorkoutActivityTypeTraditionalStrengthTraining" duration="1800" '
        'durationUnit="s" sourceName="Apple Watch" startDate="2024-03-10 08:00:00 -0400" '
        'endDate="2024-03-10 08:30:00 -0400">\n'
        '  <WorkoutStatistics type="HKQuantityTypeIdentifierActiveEnergyBurned" sum="836.8" unit="kJ"/>\n'
        '  <WorkoutStatistics type="HKQuantityTypeIdentifierHeartRate" average="121.5" minimum="90" maximum="150" '
        'unit="count/min"/>\n'
        " </Workout>\n"
    )
    sample = one(xml)
    assert sample.code == "traditional_strength_training"
    assert dict(sample.components) == pytest.approx({"workout_duration": 30.0, "active_energy": 200.0,
                                                     "heart_rate": 121.5})


def test_me_element_feeds_the_patient() -> None:
    _, _, norm = normalize(export_xml(record("HeartRate", "60", "count/min")))
    assert norm.gender == "HKBiologicalSexFemale"
    assert norm.birth_date is not None and norm.birth_date.isoformat() == "1971-04-12"


def test_every_sample_carries_its_times_as_numbers() -> None:
    # records, a blood-pressure panel and a workout; ends in another offset (DST); a +05:30 zone
    workout = (' <Workout workoutActivityType="HKWorkoutActivityTypeWalking" duration="20" durationUnit="min" '
               'sourceName="Apple Watch" startDate="2024-11-03 01:50:00 -0400" endDate="2024-11-03 01:10:00 -0500">'
               '\n </Workout>\n')
    samples, rejections, _ = normalize(export_xml(
        record("HeartRate", "61", "count/min", start="2024-03-10 08:15:00 -0400"),
        record("StepCount", "120", "count", start="2024-03-10 01:58:00 -0500", end="2024-03-10 03:02:00 -0400"),
        record("HeartRate", "64", "count/min", start="2024-03-10 08:15:00 +0530"),
        BP_CORRELATION,
        workout,
    ))
    assert not rejections and len(samples) == 5
    for s in samples:
        assert (s.start_epoch, s.end_epoch) == (s.start.timestamp(), s.end.timestamp()), s.metric
        assert s.utc_offset == s.start.utcoffset().total_seconds(), s.metric
