"""Google Fit: the shared point parser, the mapping table, stream choice and Takeout reading, on the real samples.

Expected numbers come from the files themselves, read by hand (``jq``/``awk`` over the JSON and CSV): the 2025
export's 2025-02-18 quarter-hour step cells sum to 10711 over 23 non-empty cells, the summary CSV's 25 step cells sum
to 152635 with 10711 on 2025-02-18; the 2018 summary has step cells only from 2018-07-02 (5297) to 2018-07-26; the
walking session runs 12:45:26.344Z-13:52:47.041Z with ``duration`` 3809.426 s and distance 3788.9296893835644 m.
float32 values were checked with ``numpy.float32(x)``'s shortest repr. Files are read in place, never copied into
the project (the zip tests build archives under tmp_path).
"""

from __future__ import annotations

import json
import zipfile
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from connectors.google_fit.points import (
    FitPointParser,
    choose_streams,
    float32_shortest,
    google_fit_table,
    load_google_fit,
)
from connectors.google_fit.takeout import _iter_points, looks_like_takeout, read_takeout
from mappers.sample import Rejection, Sample, SampleBatch, SourceReport
from mappers.tables import metrics
from wearfhir.errors import ConfigError, UnsafeInputError, UnsupportedInputError

FIT = Path(__file__).resolve().parents[1].parent / "shared" / "samples" / "google-fit"
T2025 = FIT / "takeout" / "2025-vivo-en-IN"
T2018 = FIT / "takeout" / "2018-en-US-old-layout"
REST = FIT / "rest"
DATA_TOML = Path(__file__).resolve().parents[1] / "mappers" / "data" / "google_fit.toml"

pytestmark = pytest.mark.skipif(not FIT.is_dir(), reason=f"Google Fit samples not found in {FIT}")

GMS = "com.google.android.gms"
EST_STEPS = f"derived:com.google.step_count.delta:{GMS}:estimated_steps"
MERGE_STEPS = f"derived:com.google.step_count.delta:{GMS}:merge_step_deltas"


def read_all(path: Path, tz: str | None = "Asia/Kolkata") -> tuple[list[Sample], list[Rejection], SourceReport]:
    samples: list[Sample] = []
    rejections: list[Rejection] = []
    reports: list[SourceReport] = []
    for item in read_takeout(path, "patient-1", tz):
        if isinstance(item, SampleBatch):
            assert all(s.metric == item.metric and s.patient == item.patient for s in item.samples)
            samples.extend(item.samples)
        elif isinstance(item, Rejection):
            rejections.append(item)
        else:
            reports.append(item)
    assert len(reports) == 1
    return samples, rejections, reports[0]


def of(samples: list[Sample], metric: str) -> list[Sample]:
    return [s for s in samples if s.metric == metric]


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def rest_body(name: str) -> dict[str, Any]:
    return json.loads((REST / "datasets" / name).read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def only_samples(items: list[Sample | Rejection]) -> list[Sample]:
    assert all(isinstance(i, Sample) for i in items), [i for i in items if isinstance(i, Rejection)]
    return [i for i in items if isinstance(i, Sample)]


# ---- the table ------------------------------------------------------------------------------------------------------
def test_table_loads_and_every_feed_targets_an_existing_metric_in_its_unit() -> None:
    table, table_metrics = google_fit_table(), metrics()
    for feed in table.feeds.values():
        assert feed.metric in table_metrics
        assert all(stream.split(":")[1] == feed.data_type for stream in feed.streams)
    assert table.feeds["body_height"].factor == 100.0  # metres -> cm
    assert table.feeds["blood_glucose"].factor == pytest.approx(18.0156)  # mmol/L -> mg/dL
    assert table.feeds["oxygen_saturation"].factor == 1.0  # already percent: no x100
    assert table.feeds["blood_glucose"].alternate == ("blood_glucose_specimen_source", frozenset({1}), "cgm_glucose")
    assert table.feeds["sleep"].codes == {1: "awake", 2: "asleep_unspecified", 3: "out_of_bed", 4: "asleep_core",
                                          5: "asleep_deep", 6: "asleep_rem"}


def test_completeness_names_what_is_not_mapped_and_why() -> None:
    mapped, unmapped = google_fit_table().covered()
    for data_type in ("com.google.calories.expended", "com.google.calories.bmr", "com.google.distance.delta",
                      "com.google.heart_minutes", "com.google.active_minutes", "com.google.activity.segment"):
        assert data_type in unmapped and data_type not in mapped
    assert "total" in google_fit_table().known_unmapped["com.google.calories.expended"]
    assert {"com.google.step_count.delta", "com.google.weight", "com.google.height",
            "com.google.heart_rate.bpm"} <= set(mapped)
    # no feed reads calories as active energy
    assert all(f.metric not in ("active_energy", "basal_energy") for f in google_fit_table().feeds.values())


@pytest.mark.parametrize(("old", "new", "message"), [
    ('unit = "m"  # metres', 'unit = "mmol/L"  # metres', "no conversion"),
    ('metric = "body_weight"', 'metric = "weight"', "not in metrics.toml"),
    ('field = "bpm"\nunit = "/min"\nstreams = ["derived:com.google.heart_rate.bpm:com.google.android.gms:merge_heart',
     'field = "beats"\nunit = "/min"\nstreams = ["derived:com.google.heart_rate.bpm:com.google.android.gms:merge_heart',
     "not a field"),
    ('5 = "asleep_deep"', '5 = "deep"', "not a code"),
    ('"com.google.speed" = ', '"com.google.weight" = ', "both mapped and listed"),
    ('fallback = "none"\nunless', 'fallback = "union"\nunless', "fallback"),
])
def test_a_bad_table_fails_at_load_naming_the_row(old: str, new: str, message: str) -> None:
    text = DATA_TOML.read_text(encoding="utf-8")
    assert old in text
    with pytest.raises(ConfigError, match=message):
        load_google_fit(text.replace(old, new, 1), metrics())


@pytest.mark.parametrize(("written", "expected"), [
    (72.0999984741211, 72.1),  # the REST weight sample
    (1.7525999546051025, 1.7526),  # the 2025 Takeout height
    (49.2147331237793, 49.214733),  # the 2025 Takeout weight (numpy.float32 repr)
    (72.1, 72.1),  # a true double stays as it is
    (58.0, 58.0),
])
def test_float32_artefacts_become_the_shortest_float32_decimal(written: float, expected: float) -> None:
    assert float32_shortest(written) == expected
    assert np.float32(float32_shortest(written)) == np.float32(written)


# ---- stream choice --------------------------------------------------------------------------------------------------
def listing() -> list[str]:
    body = json.loads((REST / "dataSources" / "list_multi_device_fitbit_strava_fittofit.json").read_text("utf-8"))
    return [source["dataStreamId"] for source in body["dataSource"]]


def test_stream_choice_on_the_real_88_stream_listing_picks_exactly_the_designated_streams() -> None:
    streams = listing()
    assert len(streams) == 88
    chosen = choose_streams(streams, google_fit_table())
    assert {name: (c.stream, c.rule) for name, c in chosen.items()} == {
        "steps": (EST_STEPS, "designated"),
        "heart_rate": (f"derived:com.google.heart_rate.bpm:{GMS}:merge_heart_rate_bpm", "designated"),
        "resting_heart_rate": (f"derived:com.google.heart_rate.bpm:{GMS}:resting_heart_rate<-merge_heart_rate_bpm",
                               "designated"),
        "sleep": (f"derived:com.google.sleep.segment:{GMS}:merged", "designated"),
    }
    # legacy sleep (activity 72) is not read: the listing has a sleep-segment stream
    assert "sleep_legacy" not in chosen
    # 9 step_count.delta streams overlap in this listing; exactly one is read
    assert sum(s.split(":")[1] == "com.google.step_count.delta" for s in streams) == 9


def test_stream_choice_falls_back_by_the_documented_rule_never_to_a_union() -> None:
    table = google_fit_table()
    without_estimated = [s for s in listing() if s != EST_STEPS]
    assert choose_streams(without_estimated, table)["steps"] == ("steps", MERGE_STEPS, "designated")
    no_merged = [s for s in without_estimated if s != MERGE_STEPS]
    raw = choose_streams(no_merged, table)["steps"]
    # no gms merge stream left: one raw stream (by id without sizes); never a device's derived top_level or a union
    assert raw.rule == "raw" and raw.stream == "raw:com.google.step_count.delta:com.fitbit.FitbitMobile:health_platform"
    bigger = "raw:com.google.step_count.delta:fitapp.fittofit:FitToFit - step count"
    assert choose_streams(no_merged, table, {bigger: 10})["steps"].stream == bigger
    only_legacy = [s for s in listing() if ":com.google.sleep.segment:" not in s]
    legacy = choose_streams(only_legacy, table)
    assert "sleep" not in legacy
    assert legacy["sleep_legacy"].stream == f"derived:com.google.activity.segment:{GMS}:merge_activity_segments"


# ---- the point parser on REST bodies ------------------------------------------------------------------------------
def test_rest_weight_body_parses_with_the_same_parser() -> None:
    parser = FitPointParser("patient-1", zone="Europe/Berlin")
    out = parser.parse_dataset(rest_body("weight_merge_weight.json"), google_fit_table().feeds["body_weight"])
    samples = only_samples(out)
    assert samples[0].value == 72.1 and samples[0].unit == "kg"
    assert samples[1].value == 72  # written as 72: kept as measured
    assert samples[0].start == datetime(2015, 2, 13, tzinfo=UTC)  # 1423785600000000000 ns
    assert samples[0].utc_offset == 3600  # Berlin in February
    assert samples[0].source.name == f"derived:com.google.weight:{GMS}:merge_weight"
    assert not samples[0].user_entered  # origin com.fatsecret.android


def test_rest_heart_rate_height_and_steps() -> None:
    parser, feeds = FitPointParser("patient-1", zone="UTC"), google_fit_table().feeds
    hr = only_samples(parser.parse_dataset(rest_body("heart_rate_merge_heart_rate_bpm.json"), feeds["heart_rate"]))
    assert [(s.value, s.metric, s.unit) for s in hr] == [(54, "heart_rate", "/min"), (58.0, "heart_rate", "/min")]
    height = only_samples(parser.parse_dataset(rest_body("height_merge_height.json"), feeds["body_height"]))
    # 1.8287990093231201 is float32 1.828799; 1.828800082206726 is float32 1.8288001 (float32(1.8288) is 1.82879996)
    assert [s.value for s in height] == [182.8799, 182.88001]
    assert all(s.user_entered for s in height)
    steps = only_samples(parser.parse_dataset(rest_body("steps_merge_step_deltas.json"), feeds["steps"]))
    assert [s.value for s in steps][:2] == [4146, 0]  # the 0-step manual entry is kept
    assert [s.user_entered for s in steps][:2] == [False, True]


def test_a_nanosecond_timestamp_survives_exactly() -> None:
    body = rest_body("steps_merge_step_deltas.json")
    odd = next(p for p in body["point"] if p["startTimeNanos"] == "1436565497687316406")
    sample = FitPointParser("patient-1").parse(odd, google_fit_table().feeds["steps"], body["dataSourceId"], "t")
    assert isinstance(sample, Sample)
    start_ns, end_ns = int(odd["startTimeNanos"]), int(odd["endTimeNanos"])
    assert start_ns > 2**53
    assert sample.start_epoch == start_ns // 1000 / 1e6
    assert sample.end_epoch == end_ns // 1000 / 1e6
    assert sample.record_id == f"{start_ns}-{end_ns}"  # the exact nanos, for ids and deletions
    assert sample.start == datetime(2015, 7, 10, 21, 58, 17, 687316, tzinfo=UTC)
    # the float path this guards against loses the nanos
    assert int(float(odd["startTimeNanos"])) != start_ns


def test_empty_dataset_without_point_key_and_legacy_sleep() -> None:
    parser, feeds = FitPointParser("patient-1"), google_fit_table().feeds
    assert parser.parse_dataset(rest_body("empty_estimated_steps_no_point_key.json"), feeds["steps"]) == []
    sleep = only_samples(parser.parse_dataset(rest_body("activity_segment_sleep72_merge_activity_segments.json"),
                                              feeds["sleep_legacy"]))
    assert [(s.metric, s.code, s.vendor_code, s.value) for s in sleep] == [("sleep", "asleep_unspecified", "72", None)]
    assert sleep[0].end_epoch - sleep[0].start_epoch == 1800
    mixed = parser.parse_dataset(rest_body("activity_segments_merge_activity_segments.json"), feeds["sleep_legacy"])
    assert mixed == []  # activities 7 walking, 9 aerobics, 8 running: skipped and counted
    assert parser.skipped_values["com.google.activity.segment"] == 3


def test_health_types_in_the_documented_shape() -> None:
    parser, feeds = FitPointParser("patient-1"), google_fit_table().feeds

    def point(*values: dict[str, Any]) -> dict[str, Any]:
        return {"startTimeNanos": "1700000000000000000", "endTimeNanos": "1700000000000000000",
                "originDataSourceId": "raw:x:com.google.android.apps.fitness:user_input", "value": list(values)}

    capillary = parser.parse(point({"fpVal": 5.5}, {"intVal": 1}, {"intVal": 2}, {}, {"intVal": 2}),
                             feeds["blood_glucose"], "s", "t")
    cgm = parser.parse(point({"fpVal": 5.5}, {}, {}, {}, {"intVal": 1}), feeds["blood_glucose"], "s", "t")
    assert isinstance(capillary, Sample) and isinstance(cgm, Sample)
    assert (capillary.metric, capillary.value, capillary.unit) == ("blood_glucose", 99.0858, "mg/dL")  # 5.5 x 18.0156
    assert (cgm.metric, cgm.value) == ("cgm_glucose", 99.0858)
    spo2 = parser.parse(point({"fpVal": 97.0}, {"fpVal": 0.0}), feeds["oxygen_saturation"], "s", "t")
    assert isinstance(spo2, Sample) and spo2.value == 97.0 and spo2.unit == "%"
    bp = parser.parse(point({"fpVal": 120.0}, {"fpVal": 80.0}, {"intVal": 2}), feeds["blood_pressure"], "s", "t")
    assert isinstance(bp, Sample) and bp.components == (("blood_pressure_systolic", 120.0),
                                                        ("blood_pressure_diastolic", 80.0))
    assert bp.user_entered
    sleep = [parser.parse(point({"intVal": n}), feeds["sleep"], "s", "t") for n in range(1, 7)]
    assert [s.code for s in sleep if isinstance(s, Sample)] == ["awake", "asleep_unspecified", "out_of_bed",
                                                                "asleep_core", "asleep_deep", "asleep_rem"]
    bad = parser.parse(point({"fpVal": 0.97}), feeds["oxygen_saturation"], "s", "t")  # a fraction is out of range
    assert isinstance(bad, Rejection) and bad.reason == "value out of plausible range"
    late = parser.parse({**point({"fpVal": 60.0}), "startTimeNanos": 1.7e18}, feeds["heart_rate"], "s", "t")
    assert isinstance(late, Rejection) and late.reason == "unparsable time"  # a float time is refused
    assert parser.parse(point({"blob": "AAE="}), feeds["heart_rate"], "s", "t") is None
    assert parser.blob_points["com.google.heart_rate.bpm"] == 1


# ---- Takeout ------------------------------------------------------------------------------------------------------
def test_takeout_2025_weight_once_and_height_in_cm() -> None:
    samples, rejections, report = read_all(T2025)
    assert rejections == []
    weights = of(samples, "body_weight")
    assert len(weights) == 1  # the derived merge_weight and the raw user_input files carry the same reading
    assert weights[0].value == 49.214733 and weights[0].user_entered
    assert weights[0].start_epoch == 1738156690340000000 // 1000 / 1e6
    assert weights[0].utc_offset == 19800 and weights[0].timezone == "Asia/Kolkata"
    heights = of(samples, "body_height")
    assert [(h.value, h.unit) for h in heights] == [(175.26, "cm")]
    assert of(samples, "active_energy") == [] and of(samples, "basal_energy") == []  # calories.bmr is a rate
    assert report.unmapped_types["com.google.calories.bmr"] == 1
    assert report.other_elements["streams not designated"] == 1  # the raw weight file


def test_takeout_2025_steps_from_quarter_hours_on_the_csv_only_day_never_both() -> None:
    samples, _, report = read_all(T2025)
    steps = of(samples, "steps")
    day_start, day_end = utc("2025-02-18T00:00:00+05:30"), utc("2025-02-19T00:00:00+05:30")
    on_day = [s for s in steps if day_start <= s.start and s.end <= day_end]
    assert len(on_day) == 23 and sum(s.value or 0 for s in on_day) == 10711  # = the summary row of 2025-02-18
    assert all(s.end_epoch - s.start_epoch == 900 for s in on_day)
    assert not any(s.start < day_end and s.end > day_start and s not in on_day for s in steps)  # no day row too
    # days without a quarter-hour file come from their summary row, as one local day
    day_rows = [s for s in steps if s.end_epoch - s.start_epoch == 86400]
    assert len(day_rows) == 24
    first = min(day_rows, key=lambda s: s.start_epoch)
    assert (first.value, first.start, first.end) == (3952, utc("2025-01-29T00:00:00+05:30"),
                                                     utc("2025-01-30T00:00:00+05:30"))
    assert sum(s.value or 0 for s in steps) == 152635  # the summary's 25 step cells, each day counted once
    assert report.records_by_type["com.google.step_count.delta (daily CSV)"] == 47
    assert report.written_offset == "+0530"


def test_takeout_2025_walking_session_becomes_one_workout() -> None:
    samples, _, _ = read_all(T2025)
    workouts = of(samples, "workout")
    assert len(workouts) == 1
    walk = workouts[0]
    assert (walk.code, walk.vendor_code, walk.vendor_type) == ("walking", "walking", "session")
    assert walk.start == utc("2025-02-18T12:45:26.344Z") and walk.end == utc("2025-02-18T13:52:47.041Z")
    parts = dict(walk.components)
    assert parts["workout_duration"] == pytest.approx(3809.426 / 60, abs=1e-9)
    assert parts["distance_walking_running"] == 3788.9296893835644
    assert "active_energy" not in parts  # the session's calories are total energy


def test_takeout_2018_old_layout_is_recognised() -> None:
    assert looks_like_takeout(T2018)
    samples, rejections, report = read_all(T2018, "America/New_York")
    assert rejections == []
    assert report.other_elements["daily CSV files"] == 2  # Daily Summaries.csv + 2018-06-18.csv
    assert report.other_elements["TCX activity files (not read)"] == 1
    assert report.unmapped_types["csv:calories"] == 2 and report.written_offset == "-0400"
    steps = of(samples, "steps")
    assert len(steps) == 25  # step cells 2018-07-02 .. 2018-07-26
    first = min(steps, key=lambda s: s.start_epoch)
    assert (first.value, first.start, first.end) == (5297, utc("2018-07-02T00:00:00-04:00"),
                                                     utc("2018-07-03T00:00:00-04:00"))


def test_the_same_takeout_read_twice_gives_identical_samples() -> None:
    assert read_all(T2025) == read_all(T2025)


def test_without_a_zone_the_written_offset_is_the_clock_and_said_so() -> None:
    samples, _, report = read_all(T2025, None)
    assert report.timezone is None and report.timezone_origin == "offset"
    assert {s.utc_offset for s in samples} == {19800} and {s.timezone for s in samples} == {None}


def test_not_a_takeout() -> None:
    assert not looks_like_takeout(REST)
    assert not looks_like_takeout(FIT / "FORMAT.md")
    with pytest.raises(UnsupportedInputError):
        list(read_takeout(REST, "patient-1"))


# ---- zip, names, blobs, streaming -------------------------------------------------------------------------------
def zip_of(folder: Path, target: Path, extra: dict[str, bytes] | None = None) -> Path:
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                archive.write(file, file.relative_to(folder).as_posix())
        for name, data in (extra or {}).items():
            archive.writestr(name, data)
    return target


def test_a_zip_reads_like_its_folder(tmp_path: Path) -> None:
    archive = zip_of(T2025, tmp_path / "takeout-20250222.zip")
    assert looks_like_takeout(archive)
    from_zip, _, zip_report = read_all(archive)
    from_dir, _, _ = read_all(T2025)
    assert from_zip == from_dir and zip_report.description.startswith("takeout-20250222.zip")


def test_unsafe_zips_are_refused(tmp_path: Path) -> None:
    traversal = zip_of(T2018, tmp_path / "t.zip", {"../evil.json": b"{}"})
    with pytest.raises(UnsafeInputError, match="unsafe path"):
        list(read_takeout(traversal, "patient-1"))
    assert not looks_like_takeout(traversal)
    bomb = b'{"Data Source": "derived:com.google.weight:com.google.android.gms:merge_weight", "Data Points": [' + \
        b" " * 5_000_000 + b"]}"
    bomby = zip_of(T2018, tmp_path / "b.zip", {"Takeout/Fit/All Data/w.json": bomb})
    with pytest.raises(UnsafeInputError, match="compression bomb"):
        list(read_takeout(bomby, "patient-1"))


def fit_point(start_ns: int, value: dict[str, Any], origin: str = "") -> dict[str, Any]:
    return {"fitValue": [{"value": value}], "originDataSourceId": origin, "startTimeNanos": start_ns,
            "endTimeNanos": start_ns + 60 * 10**9, "dataTypeName": "x", "modifiedTimeMillis": 1, "rawTimestampNanos": 0}


def test_the_data_source_inside_decides_the_stream_not_the_file_name(tmp_path: Path) -> None:
    data = tmp_path / "Takeout" / "Fit" / "Alle Daten"  # a localized folder name
    data.mkdir(parents=True)
    points = [fit_point(1738156690340000000 + i * 60 * 10**9, {"intVal": 100 + i}) for i in range(3)]

    def stream_file(name: str, stream: str, body_points: list[dict[str, Any]]) -> None:
        (data / name).write_text(json.dumps({"Data Source": stream, "Data Points": body_points}), encoding="utf-8")

    # Takeout truncates names to 46 characters and suffixes (1), (2): the names say nothing about the stream
    stream_file("derived_com.google.step_count.delta_com.google.json",
                "derived:com.google.step_count.delta:com.google.android.fit:Google:Pixel 6a:53f7246b:top_level", points)
    stream_file("derived_com.google.step_count.delta_com.google(1).json", EST_STEPS, points)
    stream_file("derived_com.google.step_count.delta_com.google(2).json", MERGE_STEPS, points)
    stream_file("derived_com.google.internal.goal_com.google.an.json",
                "derived:com.google.internal.goal:com.google.android.gms:merged",
                [{"fitValue": [{"value": {"blob": "CAES"}}], "startTimeNanos": 1, "endTimeNanos": 1}])
    stream_file("raw_com.example.unknown.json", "raw:com.example.unknown:app:", points)
    samples, rejections, report = read_all(tmp_path)
    assert rejections == []
    assert [s.value for s in samples] == [100, 101, 102]  # one stream, not three
    assert {s.source.name for s in samples} == {EST_STEPS}
    assert report.other_elements["streams not designated"] == 2
    assert report.unmapped_types == {"com.google.internal.goal": 1}
    assert report.unknown_types == {"com.example.unknown": 1}


@pytest.mark.parametrize("chunk", [1, 7, 64, 1 << 20])
def test_stream_files_are_parsed_point_by_point_at_any_chunk_size(chunk: int) -> None:
    path = T2025 / "Takeout" / "Fit" / "All Data" / "derived_com.google.calories.bmr_com.google.and.json"
    with path.open("rb") as fh:
        streamed = list(_iter_points(fh, chunk))
    assert streamed == json.loads(path.read_text(encoding="utf-8"))["Data Points"]
    assert len(streamed) == 2


def test_a_cut_stream_file_is_rejected_and_the_rest_still_lands(tmp_path: Path) -> None:
    data = tmp_path / "Fit" / "All Data"
    data.mkdir(parents=True)
    whole = json.dumps({"Data Source": EST_STEPS,
                        "Data Points": [fit_point(1738156690340000000, {"intVal": 5}),
                                        fit_point(1738156750340000000, {"intVal": 6})]})
    (data / "steps.json").write_text(whole[: whole.rindex("{") + 20], encoding="utf-8")
    samples, rejections, _ = read_all(tmp_path)
    assert [s.value for s in samples] == [5]
    assert [(r.reason, r.vendor_type) for r in rejections] == [("unreadable stream file",
                                                                "com.google.step_count.delta")]
    assert Counter(r.where for r in rejections) == Counter({"steps.json": 1})


def test_wearfhir_import_recognises_a_takeout_and_writes_valid_fhir(tmp_path: Path) -> None:
    """`wearfhir import DIR` on the real 2025 Takeout: recognised by content, height and weight as raw
    Observations (175.26 cm, 49.214733 kg), the CSV steps as day summaries totalling the 25 days once."""
    import json

    from wearfhir.cli import main
    from wearfhir.validate import validate_resource

    out = tmp_path / "out"
    assert main(["import", str(FIT / "takeout" / "2025-vivo-en-IN"), "--patient", "Patient/gfit", "--out",
                 str(out), "--timezone", "Asia/Kolkata", "--no-progress"]) == 0
    observations = [json.loads(line) for line in (out / "Observation.ndjson").read_text().splitlines()]
    for obs in observations:
        assert not validate_resource(obs), obs["id"]
    values = {o["code"]["coding"][0]["code"]: o["valueQuantity"] for o in observations
              if "valueQuantity" in o and "effectiveDateTime" in o}
    assert values["8302-2"]["value"] == 175.26 and values["8302-2"]["code"] == "cm"  # body height
    assert values["29463-7"]["value"] == 49.214733  # body weight
    days = [o for o in observations if o["code"]["coding"][0]["code"] == "41950-7"
            and o["effectivePeriod"]["start"].endswith("T00:00:00+05:30")
            and o["effectivePeriod"]["end"].endswith("T00:00:00+05:30")]
    assert len(days) == 25 and sum(o["valueQuantity"]["value"] for o in days) == 152635
