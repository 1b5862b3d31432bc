"""Health Auto Export push bodies → canonical samples: every real sample body, values by hand, identity, codec."""

from __future__ import annotations

import copy
import json
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.healthkit.hae import ORIGIN, HaeResult, hae_table, load_hae_table, normalize_hae
from connectors.streams.codec import decode_entry, encode_entry
from mappers.batch import VENDOR_SYSTEMS, BatchMapper
from mappers.context import FhirContext
from mappers.dedup import identity_keys, slot_key
from mappers.ids import sample_identifier_value
from mappers.sample import Sample, SampleBatch, local_times
from mappers.tables import metrics
from wearfhir.errors import ConfigError, DataError, TruncatedInputError, UnsupportedInputError
from wearfhir.validate import validate_resource

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples" / "health-auto-export"
PATIENT = "Patient/hae-1"
NY = "America/New_York"
TABLE_TEXT = (Path(__file__).resolve().parents[1] / "mappers" / "data" / "health_auto_export.toml").read_text()

# file → (points, samples per metric, unmapped names → points): counted by hand from the JSON
EXPECTED: dict[str, tuple[int, dict[str, int], dict[str, int]]] = {
    "a7d-metrics-workouts-start-end.json": (15, {"heart_rate": 5, "steps": 5, "resting_heart_rate": 3, "workout": 2},
                                            {}),
    "a7d-spo2-percent-whole-numbers.json": (2, {"oxygen_saturation": 2}, {}),
    "a7d-workouts-only.json": (1, {"workout": 1}, {}),
    "alexkrebiehl-unknown-metric-bad-date.json": (2, {}, {"future_metric": 1}),
    "alexkrebiehl-workouts-duration-object.json": (3, {"workout": 3}, {}),
    "benmurrell-workout-v1-walking.json": (1, {"workout": 1}, {}),
    "benmurrell-workouts-v1-two.json": (2, {"workout": 2}, {}),
    "irvinlim-active-energy-kj-empty-metric.json": (2, {"active_energy": 2}, {}),
    "irvinlim-sleep-aggregated-legacy.json": (1, {}, {"sleep_analysis:aggregated": 1}),
    "irvinlim-sleep-aggregated-phases-v6.6.2.json": (1, {}, {"sleep_analysis:aggregated": 1}),
    "irvinlim-sleep-unaggregated-date-null.json": (1, {"sleep": 1}, {}),
    "irvinlim-workout-v1-walking-route.json": (1, {"workout": 1}, {}),
    "ivailop7-step-count-2021.json": (6, {"steps": 6}, {}),
    "oboleto-minimal-mixed.json": (4, {"steps": 1, "heart_rate": 1, "workout": 1}, {"sleep_analysis:aggregated": 1}),
    "starbackr-sleep-unaggregated-2025-04.json": (741, {"sleep": 741}, {}),
}
RAISES = {"a7d-malformed-truncated.json": TruncatedInputError, "issue55-sleep-hume-stages-zero.json":
          UnsupportedInputError}
BIG = "samanthavbarron-27-metrics-2024-03.json"


def body(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def run(name: str, zone: str | None = NY) -> HaeResult:
    return normalize_hae(body(name), PATIENT, zone)


def by_metric(result: HaeResult) -> dict[str, list[Sample]]:
    return {b.metric: b.samples for b in result.batches}


def same(a: Sample, b: Sample) -> bool:
    """Equal field for field, including the written offsets and int/float (NamedTuple == ignores both)."""
    return (a == b and a.start.utcoffset() == b.start.utcoffset() and a.end.utcoffset() == b.end.utcoffset()
            and type(a.value) is type(b.value))


def accounted(result: HaeResult) -> int:
    point_rejections = sum(r.where.endswith("]") for r in result.rejections)
    return sum(len(b.samples) for b in result.batches) + point_rejections + sum(result.unmapped.values())


# ---- every real body ---------------------------------------------------------------------------------------------
def test_every_sample_body_is_covered() -> None:
    assert {p.name for p in SAMPLES.glob("*.json")} == {*EXPECTED, *RAISES, BIG}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_body_points_and_metrics(name: str) -> None:
    points, per_metric, unmapped = EXPECTED[name]
    result = run(name)
    assert result.points == points
    assert {m: len(s) for m, s in by_metric(result).items()} == per_metric
    assert result.unmapped == unmapped
    assert accounted(result) == points  # every point became a sample, a rejection or an unmapped count
    for batch in result.batches:
        assert batch.patient == PATIENT and batch.timezone == NY
        for s in batch.samples:
            assert s.origin == ORIGIN and s.metric == batch.metric and s.timezone == NY
            assert s.start.utcoffset() is not None and s.end_epoch >= s.start_epoch


def test_big_capture_counts_against_the_json() -> None:
    doc = json.loads(body(BIG))
    names = {m["name"]: len(m["data"]) for m in doc["data"]["metrics"]}
    result = run(BIG)
    assert result.points == sum(names.values()) == 16341
    assert not result.rejections
    got = {m: len(s) for m, s in by_metric(result).items()}
    mapped = {"step_count": "steps", "heart_rate": "heart_rate", "resting_heart_rate": "resting_heart_rate",
              "walking_heart_rate_average": "walking_heart_rate_average", "heart_rate_variability": "hrv_sdnn",
              "active_energy": "active_energy", "basal_energy_burned": "basal_energy",
              "walking_running_distance": "distance_walking_running", "blood_oxygen_saturation": "oxygen_saturation",
              "respiratory_rate": "respiratory_rate"}
    assert got == {mapped[n]: names[n] for n in mapped}
    unmapped = {n: k for n, k in names.items() if n not in mapped and n != "sleep_analysis"}
    assert result.unmapped == {**unmapped, "sleep_analysis:aggregated": names["sleep_analysis"]}
    assert len(result.unmapped) == 17 and all(hae_table().unmapped_reason(n) for n in result.unmapped)


def test_every_name_in_the_samples_is_mapped_or_known() -> None:
    table = hae_table()
    unknown = set()
    for path in SAMPLES.glob("*.json"):
        if path.name in RAISES:
            continue
        result = normalize_hae(path.read_bytes(), PATIENT, NY)
        unknown |= {n for n in result.unmapped if table.unmapped_reason(n) is None}
    assert unknown == {"future_metric"}  # the fixture's made-up name, and nothing else


# ---- values checked by hand ----------------------------------------------------------------------------------
def test_step_count_values_as_written() -> None:
    steps = by_metric(run("a7d-metrics-workouts-start-end.json"))["steps"]
    third = steps[2]  # {"qty": 3456, "source": "Simon's iPhone", start 11:00 +0000, end 12:00 +0000}
    assert third.value == 3456 and type(third.value) is int and third.unit == "{steps}"
    assert third.source.name == "Simon's iPhone" and third.vendor_type == "step_count"
    assert third.start == datetime(2026, 3, 14, 11, tzinfo=UTC) and third.end == datetime(2026, 3, 14, 12, tzinfo=UTC)
    assert third.utc_offset == -4 * 3600  # New York is on EDT from 8 March 2026
    fractional = by_metric(run("ivailop7-step-count-2021.json"))["steps"]
    assert fractional[2].value == 8.2796763649358063  # kept as written, no rounding
    assert fractional[2].start == fractional[2].end == datetime(2021, 3, 14, 1, 13, tzinfo=UTC)
    assert fractional[2].source.name == "unknown source"  # the 2021 app wrote no source


def test_heart_rate_bucket_is_its_average() -> None:
    hr = by_metric(run("a7d-metrics-workouts-start-end.json"))["heart_rate"]
    assert [s.value for s in hr] == [59, 62, 58, 61, 63]  # the Avg fields; Min/Max are not kept
    assert hr[1].unit == "/min" and hr[1].components == ()
    bpm = by_metric(run("oboleto-minimal-mixed.json"))["heart_rate"][0]  # units "bpm", Min 65 Avg 72 Max 85
    assert bpm.value == 72 and bpm.start == datetime(2026, 7, 6, 14, 30, tzinfo=timezone(timedelta(hours=-3)))
    assert bpm.source.name == "unknown source"


def test_spo2_whole_percent_stays_percent() -> None:
    spo2 = by_metric(run("a7d-spo2-percent-whole-numbers.json"))["oxygen_saturation"]
    assert [(s.value, s.unit) for s in spo2] == [(96, "%"), (97, "%")]
    # a fraction sent as "%" is not rescaled by guess: it fails the plausible range
    doc = json.loads(body("a7d-spo2-percent-whole-numbers.json"))
    doc["data"]["metrics"][0]["data"][0]["qty"] = 0.96
    result = normalize_hae(doc, PATIENT, NY)
    assert [(r.reason, r.where) for r in result.rejections] == [("value out of plausible range",
                                                                  "data.metrics[0].data[0]")]
    assert "0.96" not in repr(result.rejections)


def test_kilojoules_become_kilocalories() -> None:
    energy = by_metric(run("irvinlim-active-energy-kj-empty-metric.json"))["active_energy"]
    assert energy[0].value == pytest.approx(0.76856774374845116 / 4.184, rel=1e-11) and energy[0].unit == "kcal"
    assert energy[0].utc_offset == -5 * 3600  # 24 Dec 2021 in New York; written +0800
    assert energy[0].start.utcoffset() == timedelta(hours=8)  # the instant keeps its written offset


def test_sleep_segments() -> None:
    sleep = by_metric(run("starbackr-sleep-unaggregated-2025-04.json"))["sleep"]
    core, in_bed = sleep[0], sleep[1]  # both 2025-04-18 23:16:55 → 23:20:55 -0400, "arun’s Apple\xa0Watch"
    edt = timezone(timedelta(hours=-4))
    assert (core.code, core.vendor_code, core.value) == ("asleep_core", "Core", None)
    assert (in_bed.code, in_bed.vendor_code) == ("in_bed", "InBed")
    assert core.start == datetime(2025, 4, 18, 23, 16, 55, tzinfo=edt)
    assert core.end == datetime(2025, 4, 18, 23, 20, 55, tzinfo=edt)
    assert core.source.name == "arun’s Apple Watch"  # whitespace normalised (no-break space)
    assert slot_key(core) == slot_key(in_bed)  # same slot, so sleep must use value identity:
    assert run("starbackr-sleep-unaggregated-2025-04.json").identity == {"sleep": "value"}
    assert len(set(identity_keys([core, in_bed]).tolist())) == 2
    expected = {"Core": 303, "InBed": 124, "REM": 123, "Awake": 96, "Deep": 94, "Asleep": 1}  # SOURCES.md
    assert Counter(s.vendor_code for s in sleep) == expected
    null_date = by_metric(run("irvinlim-sleep-unaggregated-date-null.json"))["sleep"][0]
    assert null_date.code == "asleep_core" and null_date.end_epoch - null_date.start_epoch == 6.6 * 3600


def test_workouts_v2_v1_and_duration_object() -> None:
    run_, ride = by_metric(run("a7d-metrics-workouts-start-end.json"))["workout"]
    assert (run_.code, run_.vendor_code, run_.record_id) == ("outdoor_run", "Outdoor Run",
                                                             "CFC954D6-AAAA-BBBB-CCCC-DDDDDDDDDDDD")
    parts = dict(run_.components)
    assert parts["workout_duration"] == pytest.approx(2735.044116973877 / 60)
    assert parts["distance_walking_running"] == pytest.approx(3153.7)
    assert parts["active_energy"] == pytest.approx(694.66 / 4.184)
    assert parts["heart_rate"] == 170.27
    assert dict(ride.components)["distance_cycling"] == pytest.approx(18400)
    strength = by_metric(run("alexkrebiehl-workouts-duration-object.json"))["workout"][2]
    assert dict(strength.components) == {"workout_duration": 38, "active_energy": 120, "heart_rate": 98}  # 0 mi out
    v1 = by_metric(run("benmurrell-workout-v1-walking.json"))["workout"][0]
    assert dict(v1.components) == pytest.approx({"active_energy": 67.53800000000005, "heart_rate": 98.05344827586207,
                                                 "distance_walking_running": 0.5915495370532968 * 1609.344})
    assert v1.record_id is None and v1.code == "walking"


# ---- bad input --------------------------------------------------------------------------------------------------
def test_truncated_body_raises_and_says_where() -> None:
    with pytest.raises(TruncatedInputError, match=r"line 2, column 1 \(byte 77 of 77\)"):
        run("a7d-malformed-truncated.json")
    with pytest.raises(UnsupportedInputError, match="not valid JSON at line 1, column 9"):
        normalize_hae(b'{"data":,}', PATIENT, NY)
    with pytest.raises(UnsupportedInputError, match="empty"):
        normalize_hae(b"  ", PATIENT, NY)


def test_one_metric_object_is_not_a_body() -> None:
    with pytest.raises(DataError, match="one metric object"):
        run("issue55-sleep-hume-stages-zero.json")


def test_bad_date_rejected_with_path_rest_kept() -> None:
    result = run("alexkrebiehl-unknown-metric-bad-date.json")
    assert [(r.reason, r.where, r.vendor_type) for r in result.rejections] == [
        ("unparsable date", "data.metrics[0].data[1]", "future_metric")]
    assert result.unmapped == {"future_metric": 1}
    # the same in a mapped metric: the point is rejected, its neighbours land
    doc = json.loads(body("a7d-metrics-workouts-start-end.json"))
    points = doc["data"]["metrics"][1]["data"]
    points[1]["start"] = "invalid-date"
    points[3]["start"] = "2026-03-14 12:00:00"  # no offset
    points[4]["start"] = "20260314130000+0000"  # iOS 8's compact shape is not HAE's
    result = normalize_hae(doc, PATIENT, NY)
    assert [(r.reason, r.where) for r in result.rejections] == [
        ("unparsable date", "data.metrics[1].data[1]"), ("date without UTC offset", "data.metrics[1].data[3]"),
        ("unparsable date", "data.metrics[1].data[4]")]
    assert [s.value for s in by_metric(result)["steps"]] == [1234, 3456]
    assert "2026" not in repr(result.rejections)


def test_unknown_unit_and_bad_values_rejected() -> None:
    doc = json.loads(body("a7d-metrics-workouts-start-end.json"))
    doc["data"]["metrics"][2]["units"] = "furlongs"
    doc["data"]["metrics"][0]["data"][0]["Avg"] = "59"
    doc["data"]["metrics"][0]["data"][1]["Avg"] = True
    del doc["data"]["metrics"][0]["data"][2]["Avg"]
    doc["data"]["workouts"][0]["distance"]["units"] = "leagues"
    result = normalize_hae(doc, PATIENT, NY)
    reasons = [(r.reason, r.where) for r in result.rejections]
    assert reasons[:3] == [("non-numeric value", "data.metrics[0].data[0]"),
                           ("non-numeric value", "data.metrics[0].data[1]"),
                           ("missing value", "data.metrics[0].data[2]")]
    assert reasons[3:6] == [("unknown unit", f"data.metrics[2].data[{i}]") for i in range(3)]
    assert reasons[6] == ("unknown unit", "data.workouts[0].distance")
    workout = by_metric(result)["workout"][0]  # kept, without its distance
    assert "distance_walking_running" not in dict(workout.components) and len(workout.components) == 3
    assert accounted(result) == result.points == 15


def test_zone_is_checked_and_none_keeps_written_offset() -> None:
    with pytest.raises(ConfigError):
        run("a7d-spo2-percent-whole-numbers.json", zone="Mars/Olympus")
    spo2 = by_metric(run("a7d-spo2-percent-whole-numbers.json", zone=None))["oxygen_saturation"][0]
    assert spo2.utc_offset == 0 and spo2.timezone is None
    berlin = by_metric(run("a7d-spo2-percent-whole-numbers.json", zone="Europe/Berlin"))["oxygen_saturation"][0]
    assert berlin.utc_offset == 3600  # CET on 14 March 2026
    assert local_times(berlin)[0].isoformat() == "2026-03-14T01:21:00+01:00"


def test_arrays_beside_data_and_other_types() -> None:
    doc = {"data": {"metrics": [], "stateOfMind": [{"id": "x"}, {"id": "y"}]},
           "workouts": [json.loads(body("a7d-workouts-only.json"))["data"]["workouts"][0]]}
    result = normalize_hae(doc, PATIENT, NY)
    assert result.points == 3 and result.unmapped == {"stateOfMind": 2}
    assert len(by_metric(result)["workout"]) == 1
    assert hae_table().unmapped_reason("stateOfMind")


def test_blood_pressure_panel_and_glucose() -> None:
    # hand-written to the documented shapes (no public body has them: SOURCES.md)
    doc = {"data": {"metrics": [
        {"name": "blood_pressure", "units": "mmHg",
         "data": [{"date": "2024-02-06 14:30:00 -0800", "systolic": 121, "diastolic": 79, "source": "Omron"}]},
        {"name": "blood_glucose", "units": "mmol/L",
         "data": [{"date": "2024-02-06 14:30:00 -0800", "qty": 5.5, "mealTime": "Before Meal"},
                  {"date": "2024-02-06 14:35:00 -0800", "qty": 6.0, "source": "Dexcom G7"}]}]}}
    got = by_metric(normalize_hae(doc, PATIENT, "America/Los_Angeles"))
    bp = got["blood_pressure"][0]
    assert bp.value is None and bp.components == (("blood_pressure_systolic", 121), ("blood_pressure_diastolic", 79))
    assert got["blood_glucose"][0].value == pytest.approx(5.5 * 18.0156) and got["blood_glucose"][0].unit == "mg/dL"
    assert [s.value for s in got["cgm_glucose"]] == [pytest.approx(6.0 * 18.0156)]


# ---- identity ---------------------------------------------------------------------------------------------------
def test_same_body_twice_identical() -> None:
    first, second = run(BIG), run(BIG)
    assert first.points == second.points and first.unmapped == second.unmapped
    for a, b in zip(first.batches, second.batches, strict=True):
        assert a.metric == b.metric and all(same(x, y) for x, y in zip(a.samples, b.samples, strict=True))
    as_dict = normalize_hae(json.loads(body(BIG)), PATIENT, NY)
    assert all(same(x, y) for a, b in zip(first.batches, as_dict.batches, strict=True)
               for x, y in zip(a.samples, b.samples, strict=True))


def test_resent_bucket_same_slot_new_value() -> None:
    doc = json.loads(body("a7d-metrics-workouts-start-end.json"))
    later = copy.deepcopy(doc)
    later["data"]["metrics"][1]["data"][4]["qty"] = 1050  # the open hour had 987 steps, now 1050
    later["data"]["metrics"][0]["data"][0]["source"] = "Simon's Apple Watch|Simon's Apple Watch"  # repeated name
    a, b = normalize_hae(doc, PATIENT, NY), normalize_hae(later, PATIENT, NY)
    assert a.identity["steps"] == "slot" and a.identity["heart_rate"] == "slot"
    old, new = by_metric(a)["steps"][4], by_metric(b)["steps"][4]
    assert (old.value, new.value) == (987, 1050)
    assert slot_key(old) == slot_key(new) and identity_keys([old])[0] != identity_keys([new])[0]
    assert sample_identifier_value(old, with_value=False) == sample_identifier_value(new, with_value=False)
    assert same(by_metric(a)["heart_rate"][0], by_metric(b)["heart_rate"][0])
    # the FHIR side: under slot identity both name the same Observation
    mapper = BatchMapper(metrics(), FhirContext(), "all")
    ids = [mapper(SampleBatch(PATIENT, "steps", [s], NY), slot_identity=True).resources[-1] for s in (old, new)]
    assert ids[0]["id"] == ids[1]["id"] and ids[0]["valueQuantity"]["value"] != ids[1]["valueQuantity"]["value"]
    coding = ids[0]["code"]["coding"][-1]
    assert coding == {"system": VENDOR_SYSTEMS["health_auto_export"], "code": "step_count"}


def test_source_set_is_order_free() -> None:
    doc = json.loads(body("oboleto-minimal-mixed.json"))
    other = copy.deepcopy(doc)
    doc["data"]["metrics"][0]["data"][0]["source"] = "Watch|iPhone"
    other["data"]["metrics"][0]["data"][0]["source"] = "iPhone| Watch|Watch"
    a = by_metric(normalize_hae(doc, PATIENT, NY))["steps"][0]
    b = by_metric(normalize_hae(other, PATIENT, NY))["steps"][0]
    assert a.source.name == b.source.name == "Watch|iPhone" and slot_key(a) == slot_key(b)


# ---- codec round trip -------------------------------------------------------------------------------------------
def roundtrip(result: HaeResult, zone: str | None) -> None:
    for batch in result.batches:
        identity = result.identity[batch.metric]
        fields = encode_entry(PATIENT, batch.samples, timezone=zone, origin=ORIGIN, producer="test", identity=identity)
        decoded = decode_entry(fields)
        assert decoded.identity == identity and decoded.origin == ORIGIN and decoded.timezone == zone
        back = [s for b in decoded.batches for s in b.samples]
        assert len(back) == len(batch.samples)
        assert all(same(x, y) for x, y in zip(batch.samples, back, strict=True))


@pytest.mark.parametrize("name", sorted({*EXPECTED, BIG}))
def test_codec_round_trip_real_bodies(name: str) -> None:
    roundtrip(run(name), NY)


_OFFSETS = st.sampled_from(["+0000", "-0400", "-0500", "+0530", "+0800", "+1345", "-0930"])
_SOURCES = st.lists(st.sampled_from(["Watch", "iPhone", "Ann’s Apple\u00a0Watch", "Oura"]), max_size=3)
_POINT = st.tuples(st.datetimes(min_value=datetime(2015, 1, 1), max_value=datetime(2035, 1, 1)), _OFFSETS,
                   st.one_of(st.integers(0, 5000), st.floats(0, 5000, allow_nan=False)), _SOURCES)


def _date(moment: datetime, offset: str) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S} {offset}"


@settings(max_examples=60, deadline=None)
@given(points=st.lists(_POINT, min_size=1, max_size=30),
       zone=st.sampled_from([None, "America/New_York", "Europe/London", "Australia/Lord_Howe", "Asia/Kolkata"]))
def test_codec_round_trip_slot_property(points: list[Any], zone: str | None) -> None:
    data: list[dict[str, Any]] = []
    for moment, offset, value, sources in points:
        point: dict[str, Any] = {"date": _date(moment, offset), "qty": value}
        if sources:
            point["source"] = "|".join(sources)
        data.append(point)
    hr = [{"date": p["date"], "Min": p["qty"], "Avg": p["qty"], "Max": p["qty"]} for p in data if 10 <= p["qty"] <= 350]
    doc = {"data": {"metrics": [{"name": "step_count", "units": "count", "data": data},
                                {"name": "heart_rate", "units": "count/min", "data": hr}]}}
    result = normalize_hae(json.dumps(doc).encode(), PATIENT, zone)
    assert not result.rejections and result.points == len(data) + len(hr)
    steps = by_metric(result)["steps"]
    for sample, (moment, offset, value, _) in zip(steps, points, strict=True):
        assert sample.value == value and type(sample.value) is type(value)
        assert sample.start.replace(tzinfo=None) == moment.replace(microsecond=0)
        assert sample.start.strftime("%z") == offset  # the written offset is kept on the instant
        local = sample.start if zone is None else datetime.fromtimestamp(sample.start_epoch, ZoneInfo(zone))
        assert sample.utc_offset == local.utcoffset().total_seconds()  # type: ignore[union-attr]
    roundtrip(result, zone)


# ---- the table --------------------------------------------------------------------------------------------------
def test_table_system_matches_vendor_systems() -> None:
    assert hae_table().system == VENDOR_SYSTEMS[ORIGIN]


@pytest.mark.parametrize(("old", "new", "message"), [
    ('metric = "steps"', 'metric = "stepz"', r"\[metrics.step_count\]: metric 'stepz' is not in metrics.toml"),
    ('"kJ" = "kJ"', '"kJ" = "kilojoule"', r"\[units\] 'kJ': 'kilojoule' is not a UCUM unit"),
    ('unit = { "count" = "kg/m2" }', 'unit = { "count" = "kg/m3" }', r"\[metrics.body_mass_index\]"),
    ('metric = "body_weight"', 'metric = "sleep"', r"shape 'quantity' needs a quantity metric"),
    ('"Core" = "asleep_core"', '"Core" = "asleep_light"', r"value code 'asleep_light'"),
    ('flights_climbed = "no LOINC', 'step_count = "no LOINC', r"both mapped and listed as unmapped"),
    ('["swim", "distance_swimming"]', '["swim", "steps"]', r"'steps' is not a component of 'workout'"),
])
def test_table_errors_are_clear(old: str, new: str, message: str) -> None:
    assert old in TABLE_TEXT
    with pytest.raises(ConfigError, match=message):
        load_hae_table(TABLE_TEXT.replace(old, new, 1), metrics())


def test_every_mapped_row_converts_its_units() -> None:
    table, metric_table = hae_table(), metrics()
    for spec in table.metrics.values():
        metric = metric_table[spec.metric]
        assert spec.name not in table.known_unmapped
        if spec.shape == "quantity":
            assert any(table.ucum(spec, u) for u in table.units), spec.name
        if spec.shape == "sleep":
            assert set(spec.values.values()) <= set(metric.codes)


def test_end_before_start_rejected() -> None:
    doc = json.loads(body("starbackr-sleep-unaggregated-2025-04.json"))
    row = doc["data"]["metrics"][0]["data"][5]
    row["startDate"], row["endDate"] = row["endDate"], row["startDate"]
    result = normalize_hae(doc, PATIENT, NY)
    assert [(r.reason, r.where) for r in result.rejections] == [("end before start", "data.metrics[0].data[5]")]
    assert len(by_metric(result)["sleep"]) == 740


def test_observations_of_every_mapped_metric_validate() -> None:
    mapper = BatchMapper(metrics(), FhirContext(), "all")
    seen: set[str] = set()
    for name in sorted({*EXPECTED, BIG}):
        result = run(name)
        for batch in result.batches:
            first = SampleBatch(PATIENT, batch.metric, batch.samples[:3], NY)
            for resource in mapper(first, slot_identity=result.identity[batch.metric] == "slot").resources:
                assert validate_resource(resource) == [], (name, batch.metric)
            seen.add(batch.metric)
    assert seen >= {"steps", "heart_rate", "oxygen_saturation", "sleep", "workout", "active_energy", "basal_energy"}
