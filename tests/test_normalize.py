"""HealthKit records → canonical samples: unit traps, bad values, blood pressure, DST, sources."""

from __future__ import annotations

from datetime import timedelta

import pytest

from connectors.healthkit.normalize import HealthKitNormalizer
from connectors.healthkit.xml_stream import HealthDataStream
from mappers.sample import local_times
from mappers.tables import healthkit_table, metrics
from tests.helpers import HEADER, WATCH, export_xml, normalize, record
from wearfhir.errors import ConfigError

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


def test_whole_numbers_written_as_such_stay_integers() -> None:
    sample = one(export_xml(record("StepCount", "812", "count")))
    assert isinstance(sample.value, int)
    assert one(export_xml(record("StepCount", "3.5", "count"))).value == 3.5  # never rounded


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


# ---- real-export behaviour (issue 9): zones, old formats, identity, values -------------------------------------

def normalize_in(xml: bytes, zone: str | None) -> tuple[list, list, HealthKitNormalizer]:
    """Like ``normalize``, with the patient's zone set."""
    norm = HealthKitNormalizer("Patient/p1", healthkit_table(), metrics(), zone)
    stream = HealthDataStream(norm)
    stream.feed(xml)
    stream.close()
    norm.finish()
    batches, rejections = norm.drain()
    assert all(b.timezone == zone for b in batches)
    return [s for b in batches for s in b.samples], rejections, norm


def test_the_written_offset_fixes_the_instant_and_the_zone_gives_the_local_clock() -> None:
    # an export made in winter writes -0500 on a July sample; the patient lives in New York (-04:00 in July)
    xml = export_xml(record("HeartRate", "60", "count/min", start="2024-05-17 08:00:00 -0500"))
    (written,), _, _ = normalize_in(xml, None)
    (local,), _, _ = normalize_in(xml, "America/New_York")
    assert local.start_epoch == written.start_epoch == written.start.timestamp() == local.start.timestamp()
    assert written.utc_offset == -5 * 3600 and written.timezone is None
    assert local.utc_offset == -4 * 3600 and local.timezone == "America/New_York"
    assert [t.isoformat() for t in local_times(local)] == ["2024-05-17T09:00:00-04:00"] * 2
    assert [t.isoformat() for t in local_times(written)] == ["2024-05-17T08:00:00-05:00"] * 2


def test_a_record_s_own_zone_wins_over_the_patient_s() -> None:
    meta = '  <MetadataEntry key="HKTimeZone" value="Asia/Jerusalem"/>\n'
    bad = '  <MetadataEntry key="HKTimeZone" value="Mars/Olympus_Mons"/>\n'
    xml = export_xml(record("BodyMass", "70", "kg", start="2017-05-17 08:00:00 +0200", children=meta),
                     record("BodyMass", "71", "kg", start="2017-05-18 08:00:00 +0200", children=bad),
                     record("BodyMass", "72", "kg", start="2017-05-19 08:00:00 +0200"))
    samples, rejections, _ = normalize_in(xml, "Europe/Berlin")
    assert not rejections
    assert [s.timezone for s in samples] == ["Asia/Jerusalem", "Europe/Berlin", "Europe/Berlin"]
    assert [local_times(s)[0].isoformat()[11:] for s in samples] == ["09:00:00+03:00", "08:00:00+02:00",
                                                                      "08:00:00+02:00"]


def test_an_unknown_patient_zone_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="IANA"):
        HealthKitNormalizer("Patient/p1", healthkit_table(), metrics(), "Europe/Atlantis")


def test_records_dated_after_the_export_are_rejected() -> None:
    xml = export_xml(record("HeartRate", "60", "count/min", start="2024-05-31 23:00:00 -0400"),
                     record("HeartRate", "61", "count/min", start="2030-01-06 10:00:00 -0500"))
    samples, rejections, _ = normalize(xml)
    assert [s.value for s in samples] == [60]
    assert [r.reason for r in rejections] == ["dated after the export"]


IOS8 = (' <Record type="HKQuantityTypeIdentifierStepCount" source="AppleHealthDevice" unit="count" '
        'startDate="20140107104300-0800" endDate="20140107114300-0800" value="142" recordCount="2"/>\n'
        ' <Record type="HKQuantityTypeIdentifierHeartRate" source="Sleep Cycle" unit="count/s" '
        'startDate="20150531161900+0100" endDate="20150601161900+0100" min="1.11667" max="1.11667" '
        'average="1.11667" recordCount="1"/>\n'
        ' <Record type="HKQuantityTypeIdentifierBodyMass" source="Health" unit="kg" creationDate="20150603050217+0100" '
        'startDate="20150603050200+0100" endDate="20150603050200+0100" HKWasUserEntered="1" value="71.1"/>\n'
        ' <Record type="HKCategoryTypeIdentifierSleepAnalysis" source="Sleep Cycle" unit="" '
        'startDate="20150601215104+0100" endDate="20150602043558+0100" value="1"/>\n')


def test_ios8_records_compact_dates_source_attribute_average_and_enum_values_are_read() -> None:
    header = HEADER.replace("2025-01-15 09:00:00 -0500", "20151107171924+0100")
    samples, rejections, _ = normalize(export_xml(IOS8, header=header))
    assert not rejections
    steps, heart, weight, sleep = sorted(samples, key=lambda s: ["steps", "heart_rate", "body_weight",
                                                                 "sleep"].index(s.metric))
    assert [t.isoformat() for t in local_times(steps)] == ["2014-01-07T10:43:00-08:00", "2014-01-07T11:43:00-08:00"]
    assert steps.value == 142
    assert steps.source.name == "AppleHealthDevice"
    assert heart.value == 67.0002 and heart.unit == "/min"  # 1.11667 count/s, no float noise
    assert weight.user_entered and weight.value == 71.1
    assert sleep.code == "asleep_unspecified"


def test_a_date_that_does_not_round_trip_is_rejected_not_guessed() -> None:
    xml = export_xml(record("HeartRate", "60", "count/min", start="20140107254300-0800"),
                     record("HeartRate", "61", "count/min", start="2024-02-30 08:00:00 -0500"))
    samples, rejections, _ = normalize(xml)
    assert not samples and [r.reason for r in rejections] == ["unparsable date"] * 2


@pytest.mark.parametrize(("raw", "unit", "expected"), [
    ("40.6122", "kg", 40.6122),  # no conversion: exactly as written
    ("0.153", "%", None),  # body fat: not mapped
    ("0.97", "%", 97),  # a fraction × 100 without float noise (97.00000000000001)
    ("165.3", "lb", 74.978818761),  # keeps the source's precision, drops the noise
])
def test_values_are_kept_as_measured(raw: str, unit: str, expected: float | None) -> None:
    rtype = {"kg": "BodyMass", "lb": "BodyMass", "%": "OxygenSaturation" if raw == "0.97" else "BodyFatPercentage"}
    samples, rejections, _ = normalize(export_xml(record(rtype[unit], raw, unit)))
    assert not rejections
    if expected is None:
        assert not samples
    else:
        assert samples[0].value == expected and repr(samples[0].value) == repr(float(expected))


def test_one_watch_whose_maker_was_written_two_ways_is_one_device() -> None:
    old = WATCH.replace("manufacturer:Apple Inc.", "manufacturer:Apple")
    samples, _, _ = normalize(export_xml(record("HeartRate", "60", "count/min", device=old),
                                         record("HeartRate", "61", "count/min", device=WATCH,
                                                start="2024-03-10 09:00:00 -0400")))
    assert samples[0].source.device == samples[1].source.device
    assert samples[0].source.device is not None and samples[0].source.device.manufacturer == "Apple"


def test_source_names_with_odd_whitespace_are_one_source() -> None:
    samples, _, _ = normalize(export_xml(record("HeartRate", "60", "count/min", source="Apple Watch "),
                                         record("HeartRate", "61", "count/min", source="Apple\u00a0Watch")))
    assert {s.source.name for s in samples} == {"Apple Watch"}


def test_old_and_nutrition_types_are_known_not_mapped() -> None:
    _, _, norm = normalize(export_xml(record("DietaryVitaminK", "1", "mcg"), record("NikeFuel", "12", "count"),
                                      record("UVExposure", "3", "count")))
    assert not norm.unknown_types
    assert set(norm.unmapped_types) == {"HKQuantityTypeIdentifierDietaryVitaminK", "HKQuantityTypeIdentifierNikeFuel",
                                        "HKQuantityTypeIdentifierUVExposure"}


def _workout(activity: str, stats: str = "", total: str = "") -> str:
    return (f' <Workout workoutActivityType="HKWorkoutActivityType{activity}" duration="30" durationUnit="min" '
            f'{total}sourceName="Apple Watch" startDate="2024-03-10 08:00:00 -0400" '
            f'endDate="2024-03-10 08:30:00 -0400">\n{stats} </Workout>\n')


@pytest.mark.parametrize(("workout", "distance"), [
    (_workout("Cycling", '  <WorkoutStatistics type="HKQuantityTypeIdentifierDistanceCycling" sum="12.5" '
                         'unit="km"/>\n'), ("distance_cycling", 12500)),
    (_workout("Swimming", '  <WorkoutStatistics type="HKQuantityTypeIdentifierDistanceSwimming" sum="1000" '
                          'unit="m"/>\n'), ("distance_swimming", 1000)),
    (_workout("Cycling", total='totalDistance="10" totalDistanceUnit="mi" '), ("distance_cycling", 16093.44)),
    (_workout("Running", total='totalDistance="5" totalDistanceUnit="km" '), ("distance_walking_running", 5000)),
    (_workout("Rowing", total='totalDistance="2000" totalDistanceUnit="m" '), ("workout_distance", 2000)),
    (_workout("TraditionalStrengthTraining", total='totalDistance="0" totalDistanceUnit="m" '), None),
])
def test_workout_distance_is_coded_by_activity_and_zero_is_left_out(workout: str, distance) -> None:
    sample = one(export_xml(workout))
    distances = {k: v for k, v in sample.components if k.startswith("distance") or k == "workout_distance"}
    assert distances == ({} if distance is None else {distance[0]: pytest.approx(distance[1])})


def test_local_times_cross_a_dst_change_inside_one_sample() -> None:
    # written in the export's -0500; the sample starts before and ends after the fall-back change in New York
    xml = export_xml(record("StepCount", "300", "count", start="2024-11-03 00:30:00 -0500",
                            end="2024-11-03 01:30:00 -0500"))
    (sample,), _, _ = normalize_in(xml, "America/New_York")
    start, end = local_times(sample)
    assert (start.isoformat(), end.isoformat()) == ("2024-11-03T01:30:00-04:00", "2024-11-03T01:30:00-05:00")
    assert (start.timestamp(), end.timestamp()) == (sample.start_epoch, sample.end_epoch)


def test_a_workout_duration_in_minutes_is_kept_to_the_last_digit() -> None:
    workout = (' <Workout workoutActivityType="HKWorkoutActivityTypeCycling" duration="72.54702780048052" '
               'durationUnit="min" sourceName="Apple Watch" startDate="2024-03-10 08:00:00 -0400" '
               'endDate="2024-03-10 09:12:33 -0400">\n </Workout>\n')
    assert dict(one(export_xml(workout)).components) == {"workout_duration": 72.54702780048052}
