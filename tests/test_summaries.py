"""Summary Observations: golden files, FHIR validation, the CGM panel, sleep, DST, late data, source de-dup."""

from __future__ import annotations

import base64
import dataclasses
import json
import pickle
import re
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregates import accumulate as accumulate_module
from aggregates.accumulate import AccumulatorSpec, SummaryAccumulator
from aggregates.cgm import GMI_INTERCEPT, GMI_SLOPE, PERIOD_ANCHOR_DAY, cgm_stats
from aggregates.columns import SampleColumns, source_id, source_priority
from aggregates.sleep import sleep_nights
from flows.summarise import accumulator_spec
from mappers.context import FhirContext
from mappers.invariants import html_checks, invariant_errors
from mappers.narrative import number, period_text
from mappers.sample import DeviceInfo, Sample, SourceInfo, epoch_times
from mappers.summary import CGM_BANDS, CGM_MEMBERS, STATISTICS_SYSTEM, SummaryBatch, SummaryBuilder
from mappers.tables import metrics
from tests.helpers import export_xml, normalize, record
from tests.test_fhir_output import check_golden
from wearfhir.cli import main
from wearfhir.validate import validate_resource

ALL = frozenset({"hour", "day", "night", "cgm"})
PHONE = ("&lt;&lt;HKDevice: 0x2&gt;, name:iPhone, manufacturer:Apple Inc., model:iPhone, "
         "hardware:iPhone14,2, software:17.1&gt;")
NY = ZoneInfo("America/New_York")
SLEEP = "HKCategoryTypeIdentifierSleepAnalysis"


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S %z")


def accumulate(samples: list[Sample], windows: frozenset[str] = ALL) -> dict[str, SummaryAccumulator]:
    table = metrics()
    accs: dict[str, SummaryAccumulator] = {}
    for metric, group in _by_metric(samples).items():
        m = table[metric]
        acc = accs[metric] = SummaryAccumulator(accumulator_spec(m, windows))
        acc.add(SampleColumns.from_samples(group, tuple(m.codes), m.source_priority))
    return accs


def _by_metric(samples: list[Sample]) -> dict[str, list[Sample]]:
    out: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        out[s.metric].append(s)
    return out


def flush(accs: dict[str, SummaryAccumulator], builder: SummaryBuilder | None = None,
          reports: list[dict] | None = None) -> list[dict]:
    """The summary Observations of every accumulator's flush (CGM reports, if any, go to ``reports``)."""
    builder = builder or SummaryBuilder(FhirContext())
    table = metrics()
    out = []
    for metric, acc in sorted(accs.items()):
        for resource in builder.build("Patient/p1", table[metric], acc.flush()):
            if resource["resourceType"] == "Observation":
                out.append(resource)
            elif reports is not None:
                reports.append(resource)
    return out


def summaries_for(*elements: str, windows: frozenset[str] = ALL) -> list[dict]:
    samples, rejections, _ = normalize(export_xml(*elements))
    assert not rejections
    return flush(accumulate(samples, windows))


def window_of(obs: dict) -> str:
    return obs["identifier"][0]["value"].split("|")[2]


# --- the example data of each summary kind ---------------------------------------------------------------

HEART_RATE = [record("HeartRate", v, "count/min", start=f"2024-03-12 {t} -0400")
              for v, t in (("61", "08:05:00"), ("75", "08:25:00"), ("92", "08:50:00"), ("70", "09:10:00"))]
STEPS = [
    record("StepCount", "1000", "count", start="2024-03-12 10:00:00 -0400", end="2024-03-12 10:10:00 -0400"),
    record("StepCount", "950", "count", start="2024-03-12 10:00:00 -0400", end="2024-03-12 10:10:00 -0400",
           source="Zoë’s iPhone", device=PHONE),
    record("StepCount", "300", "count", start="2024-03-12 12:00:00 -0400", end="2024-03-12 12:05:00 -0400",
           source="Zoë’s iPhone", device=PHONE),
]
ENERGY = [
    record("ActiveEnergyBurned", "120", "Cal", start="2024-03-12 07:00:00 -0400", end="2024-03-12 07:30:00 -0400"),
    record("ActiveEnergyBurned", "418.4", "kJ", start="2024-03-12 18:00:00 -0400", end="2024-03-12 18:20:00 -0400"),
]
SLEEP_NIGHT = [
    record(SLEEP, "HKCategoryValueSleepAnalysisInBed", start="2024-03-12 22:30:00 -0400",
           end="2024-03-13 06:45:00 -0400", source="Zoë’s iPhone", device=PHONE),
    record(SLEEP, "HKCategoryValueSleepAnalysisAsleepCore", start="2024-03-12 23:00:00 -0400",
           end="2024-03-13 01:00:00 -0400"),
    record(SLEEP, "HKCategoryValueSleepAnalysisAsleepDeep", start="2024-03-13 01:00:00 -0400",
           end="2024-03-13 02:00:00 -0400"),
    record(SLEEP, "HKCategoryValueSleepAnalysisAwake", start="2024-03-13 02:00:00 -0400",
           end="2024-03-13 02:15:00 -0400"),
    record(SLEEP, "HKCategoryValueSleepAnalysisAsleepREM", start="2024-03-13 02:15:00 -0400",
           end="2024-03-13 03:45:00 -0400"),
    record(SLEEP, "HKCategoryValueSleepAnalysisAsleepCore", start="2024-03-13 03:45:00 -0400",
           end="2024-03-13 06:30:00 -0400"),
    # a third-party app recording the same night must not add to it
    record(SLEEP, "HKCategoryValueSleepAnalysisAsleepUnspecified", start="2024-03-12 23:00:00 -0400",
           end="2024-03-13 06:30:00 -0400", source="SleepCycle", device=None),
]


def cgm_readings(days: int = 2, start: datetime = datetime(2024, 3, 12, tzinfo=NY)) -> list[str]:
    """Dexcom readings every 5 minutes with values cycling through all five bands."""
    values = [45, 62, 100, 140, 175, 200, 260, 120]
    out = []
    for i in range(days * 288):
        moment = start + timedelta(minutes=5 * i)
        out.append(record("BloodGlucose", str(values[i % len(values)]), "mg/dL", start=stamp(moment),
                          source="Dexcom G7", device=None))
    return out


GOLDEN_KINDS = {
    "summary_heart_rate": (HEART_RATE, ALL),
    "summary_steps_watch_and_iphone": (STEPS, ALL),
    "summary_active_energy": (ENERGY, frozenset({"day"})),
    "summary_sleep_night": (SLEEP_NIGHT, ALL),
    "summary_cgm_panel": (cgm_readings(), frozenset({"cgm"})),
    "summary_cgm_glucose_day": (cgm_readings(days=1), frozenset({"day"})),
    "summary_cgm_glucose_hour": (cgm_readings(days=1)[:12], frozenset({"hour"})),
    "summary_cgm_panel_sufficient": (cgm_readings(days=14, start=datetime(2024, 3, 4, tzinfo=NY)), frozenset({"cgm"})),
    "summary_sleep_in_bed_only": ([record(SLEEP, "HKCategoryValueSleepAnalysisInBed", start="2024-03-12 22:30:00 -0400",
                                          end="2024-03-13 06:45:00 -0400", source="Zoë’s iPhone", device=PHONE)], ALL),
}


@pytest.mark.parametrize("kind", sorted(GOLDEN_KINDS))
def test_summary_matches_golden_file_and_validates(kind: str) -> None:
    elements, windows = GOLDEN_KINDS[kind]
    resources = summaries_for(*elements, windows=windows)
    assert resources
    check_golden(kind, resources)
    for resource in resources:
        assert validate_resource(resource) == [], resource["identifier"][0]["value"]
        assert resource["id"].startswith("m") and resource["identifier"][0]["system"].endswith("/summary")


@pytest.mark.parametrize("kind", sorted(GOLDEN_KINDS))
@pytest.mark.parametrize("absorb", [1, 5, 64])
def test_batches_gathered_and_folded_in_chunks_give_the_same_summaries(kind: str, absorb: int,
                                                                       monkeypatch) -> None:
    # small batches, folded every `absorb` samples (instead of every ABSORB_SAMPLES), in shuffled order
    elements, windows = GOLDEN_KINDS[kind]
    samples, _, _ = normalize(export_xml(*elements))
    expected = flush(accumulate(samples, windows))
    monkeypatch.setattr(accumulate_module, "ABSORB_SAMPLES", absorb)
    table = metrics()
    shuffled = list(reversed(samples[1::2])) + samples[::2]
    accs: dict[str, SummaryAccumulator] = {}
    for metric, group in _by_metric(shuffled).items():
        m = table[metric]
        acc = accs[metric] = SummaryAccumulator(accumulator_spec(m, windows))
        for i in range(0, len(group), 3):
            acc.add(SampleColumns.from_samples(group[i:i + 3], tuple(m.codes), m.source_priority))
        assert acc._incoming_samples < absorb  # gathered batches are folded as soon as they reach the bar
    assert flush(accs) == expected


def test_sampled_summary_values_and_components() -> None:
    hour, day = [r for r in summaries_for(*HEART_RATE) if window_of(r) == "hour"], \
        [r for r in summaries_for(*HEART_RATE) if window_of(r) == "day"]
    assert len(hour) == 2 and len(day) == 1
    first = hour[0]
    assert first["effectivePeriod"] == {"start": "2024-03-12T08:00:00-04:00", "end": "2024-03-12T09:00:00-04:00"}
    assert first["valueQuantity"]["value"] == pytest.approx((61 + 75 + 92) / 3, abs=0.005)
    stats = {c["code"]["coding"][-1]["code"]: c for c in first["component"]}
    assert stats["minimum"]["valueQuantity"]["value"] == 61 and stats["maximum"]["valueQuantity"]["value"] == 92
    assert stats["count"]["valueInteger"] == 3
    for comp in first["component"]:  # observation-statistics alone: never the Observation's own code (obs-7)
        assert [c["system"] for c in comp["code"]["coding"]] == [STATISTICS_SYSTEM]
        assert comp["code"]["text"].startswith("Heart rate, ")
    assert day[0]["component"][2]["valueInteger"] == 4


def test_watch_and_iphone_overlap_yields_the_deduplicated_daily_total() -> None:
    resources = summaries_for(*STEPS)
    day = [r for r in resources if window_of(r) == "day"]
    assert len(day) == 1
    # the iPhone's 950 steps of the same ten minutes are the Watch's 1000: only the Watch counts there
    assert day[0]["valueQuantity"] == {"value": 1300, "unit": "steps/day", "system": "http://unitsofmeasure.org",
                                       "code": "/d"}
    assert day[0]["code"]["coding"][0]["code"] == "41950-7"
    hours = {r["effectivePeriod"]["start"]: r["valueQuantity"]["value"] for r in resources if window_of(r) == "hour"}
    assert hours == {"2024-03-12T10:00:00-04:00": 1000, "2024-03-12T12:00:00-04:00": 300}


def test_source_priority_is_configurable_per_metric() -> None:
    watch = SourceInfo("Zoë’s Apple Watch", "10.1", DeviceInfo("Apple Watch", "Apple Inc.", "Watch", None, None))
    phone = SourceInfo("Zoë’s iPhone", "17.1", DeviceInfo("iPhone", "Apple Inc.", "iPhone", None, None))
    other = SourceInfo("Garmin Connect", "5", None)
    assert source_priority(watch, ("Watch", "iPhone")) > source_priority(phone, ("Watch", "iPhone")) > \
        source_priority(other, ("Watch", "iPhone")) == 0
    assert source_priority(other, ("Garmin", "Watch")) > source_priority(watch, ("Garmin", "Watch"))


def test_daily_energy_uses_the_24_hour_code_and_converts_units() -> None:
    (day,) = summaries_for(*ENERGY, windows=frozenset({"day"}))
    assert day["code"]["coding"][0]["code"] == "41979-6"
    assert day["valueQuantity"]["code"] == "kcal/d"
    assert day["valueQuantity"]["value"] == pytest.approx(120 + 100, abs=0.001)  # 418.4 kJ = 100 kcal


def test_sleep_night_counts_each_stage_once_from_the_best_source() -> None:
    (night,) = summaries_for(*SLEEP_NIGHT)
    minutes = {c["code"]["coding"][0]["code"]: c["valueQuantity"]["value"] for c in night["component"]}
    assert minutes == {"in_bed": 495.0, "asleep_core": 120.0 + 165.0, "asleep_deep": 60.0, "asleep_rem": 90.0,
                       "awake": 15.0}
    # total sleep = the Watch's asleep stages (the third-party app's overlapping record is not added)
    assert night["valueQuantity"]["value"] == 120 + 60 + 90 + 165
    assert night["code"]["coding"][0]["code"] == "93832-4"
    assert night["effectivePeriod"] == {"start": "2024-03-12T22:30:00-04:00", "end": "2024-03-13T06:45:00-04:00"}


def test_sleep_from_a_single_third_party_app_still_counts() -> None:
    (night,) = summaries_for(SLEEP_NIGHT[-1])
    assert night["valueQuantity"]["value"] == 450.0


def test_cgm_panel_codes_members_and_values_follow_the_ig() -> None:
    readings = cgm_readings(days=2)
    resources = summaries_for(*readings, windows=frozenset({"cgm"}))
    panel = resources[-1]
    members = {r["id"]: r for r in resources[:-1]}
    assert panel["code"]["coding"][0]["code"] == "107931-8"
    assert panel["meta"]["profile"] == ["http://hl7.org/fhir/uv/cgm/StructureDefinition/cgm-summary"]
    assert [m["reference"] for m in panel["hasMember"]] == [f"Observation/{i}" for i in members]
    codes = {m["code"]["coding"][0]["code"]: m for m in members.values()}
    assert set(codes) == {code for code, _, _ in CGM_MEMBERS.values()}
    for m in members.values():
        assert m["effectivePeriod"] == panel["effectivePeriod"]
        assert m["category"][0]["coding"][0]["code"] == "laboratory"
    values = np.array([45, 62, 100, 140, 175, 200, 260, 120] * (2 * 288 // 8), dtype=float)
    mean = values.mean()
    assert codes["97507-8"]["valueQuantity"]["value"] == round(mean, 1)
    assert codes["97506-0"]["valueQuantity"]["value"] == round(GMI_INTERCEPT + GMI_SLOPE * mean, 2)
    assert codes["104638-2"]["valueQuantity"]["value"] == round(100 * values.std(ddof=1) / mean, 2)
    assert codes["104636-6"]["valueQuantity"] == {"value": 2, "unit": "days", "system": "http://unitsofmeasure.org",
                                                  "code": "d"}
    # two days of readings in the 14-day block: active against the whole period, not the two days worn
    assert codes["104637-4"]["valueQuantity"]["value"] == round(100 * 2 / 14, 2) == 14.29
    tir = codes["106793-3"]["component"]
    assert [c["code"]["coding"][0]["code"] for c in tir] == [code for code, _ in CGM_BANDS]
    shares = [c["valueQuantity"]["value"] for c in tir]
    assert shares == [12.5, 12.5, 50.0, 12.5, 12.5]  # 45 | 62 | 100,140,175,120 | 200 | 260
    # the whole block (Monday 4 to Sunday 17 March) as dates, the last day inclusive
    assert panel["effectivePeriod"] == {"start": "2024-03-04", "end": "2024-03-17"}


def test_cgm_percentages_have_two_decimals_and_wear_reflects_gaps() -> None:
    readings = cgm_readings(days=3)
    kept = readings[:288] + readings[2 * 288:2 * 288 + 100]  # day 2 missing, day 3 partly worn
    resources = summaries_for(*kept, windows=frozenset({"cgm"}))
    codes = {r["code"]["coding"][0]["code"]: r for r in resources}
    assert codes["104636-6"]["valueQuantity"]["value"] == 2
    active = codes["104637-4"]["valueQuantity"]["value"]
    assert active == round(100 * 388 / (14 * 288), 2)  # readings x 5 min over the whole 14-day period
    for comp in codes["106793-3"]["component"]:
        assert round(comp["valueQuantity"]["value"], 2) == comp["valueQuantity"]["value"]


def hourly_heart_rate(day_start: datetime, day_end: datetime) -> list[str]:
    """A reading every 10 minutes of real time (arithmetic in UTC: aware-datetime "+" is wall-clock time)."""
    out, moment, stop = [], day_start.astimezone(UTC), day_end.astimezone(UTC)
    while moment < stop:
        out.append(record("HeartRate", "70", "count/min", start=stamp(moment.astimezone(NY))))
        moment += timedelta(minutes=10)
    return out


@pytest.mark.parametrize(
    ("day", "hours", "start", "end"),
    [
        ("2024-11-03", 25, "2024-11-03T00:00:00-04:00", "2024-11-04T00:00:00-05:00"),  # fall back
        ("2024-03-10", 23, "2024-03-10T00:00:00-05:00", "2024-03-11T00:00:00-04:00"),  # spring forward
    ],
)
def test_dst_days_have_25_and_23_hourly_observations(day, hours, start, end) -> None:
    local = datetime.fromisoformat(day).replace(tzinfo=NY)
    elements = hourly_heart_rate(local - timedelta(hours=2), local + timedelta(days=1, hours=2))
    resources = summaries_for(*elements, windows=frozenset({"hour", "day"}))
    on_day = [r for r in resources if window_of(r) == "hour" and r["effectivePeriod"]["start"].startswith(day)]
    assert len(on_day) == hours
    assert len({r["id"] for r in on_day}) == hours
    (daily,) = [r for r in resources if window_of(r) == "day" and r["effectivePeriod"]["start"].startswith(day)]
    assert daily["effectivePeriod"] == {"start": start, "end": end}
    assert daily["component"][-1]["valueInteger"] == hours * 6
    if hours == 25:
        repeated = [r["effectivePeriod"] for r in on_day if r["effectivePeriod"]["start"][11:13] == "01"]
        assert repeated == [
            {"start": "2024-11-03T01:00:00-04:00", "end": "2024-11-03T02:00:00-04:00"},
            {"start": "2024-11-03T01:00:00-05:00", "end": "2024-11-03T02:00:00-05:00"},
        ]


def test_late_data_re_emits_the_same_window_as_amended() -> None:
    samples, _, _ = normalize(export_xml(*HEART_RATE))
    accs = accumulate(samples, frozenset({"hour", "day"}))
    builder = SummaryBuilder(FhirContext())
    first = {r["id"]: r for r in flush(accs, builder)}
    assert {r["status"] for r in first.values()} == {"final"}
    assert flush(accs, builder) == []  # nothing changed, nothing emitted
    late, _, _ = normalize(export_xml(record("HeartRate", "120", "count/min", start="2024-03-12 08:40:00 -0400"),
                                      record("HeartRate", "66", "count/min", start="2024-03-12 15:00:00 -0400")))
    m = metrics()["heart_rate"]
    accs["heart_rate"].add(SampleColumns.from_samples(late, (), m.source_priority))
    second = flush(accs, builder)
    by_id = {r["id"]: r for r in second}
    amended = [r for r in second if r["id"] in first]
    assert {r["status"] for r in amended} == {"amended"} and len(amended) == 2  # the 08:00 hour and the day
    eight = next(r for r in amended if window_of(r) == "hour")
    assert eight["valueQuantity"]["value"] == pytest.approx((61 + 75 + 92 + 120) / 4, abs=0.005)
    assert eight["component"][2]["valueInteger"] == 4
    new = [r for r in by_id.values() if r["id"] not in first]
    assert len(new) == 1 and new[0]["status"] == "final"


def test_late_steps_from_a_better_source_amend_the_day_total() -> None:
    samples, _, _ = normalize(export_xml(*STEPS[1:]))  # the iPhone first: 950 + 300
    accs = accumulate(samples, frozenset({"day"}))
    (before,) = flush(accs)
    assert before["valueQuantity"]["value"] == 1250
    watch, _, _ = normalize(export_xml(STEPS[0]))
    m = metrics()["steps"]
    accs["steps"].add(SampleColumns.from_samples(watch, (), m.source_priority))
    (after,) = flush(accs)
    assert after["id"] == before["id"] and after["status"] == "amended"
    assert after["valueQuantity"]["value"] == 1300


def test_import_cli_writes_summaries_by_default_and_honours_the_summaries_option(tmp_path, capsys) -> None:
    export = tmp_path / "export.xml"
    export.write_bytes(export_xml(*HEART_RATE, *STEPS, *SLEEP_NIGHT))

    def run(*extra: str) -> dict[str, int]:
        out = tmp_path / f"out{len(extra)}{'-'.join(extra)}"
        assert main(["import", str(export), "--patient", "Patient/p1", "--out", str(out), "--no-progress",
                     *extra]) == 0
        counts: dict[str, int] = defaultdict(int)
        written = out / "Observation.ndjson"
        for line in (written.read_text(encoding="utf-8").splitlines() if written.exists() else []):
            obs = json.loads(line)
            if obs["identifier"][0]["system"].endswith("/summary"):
                counts[window_of(obs)] += 1
        return dict(counts)

    assert run() == {"hour": 4, "day": 2, "night": 1}
    assert run("--summaries", "day") == {"day": 2}
    capsys.readouterr()
    assert run("--summaries", "none") == {}
    assert "4 dense samples not written raw nor summarised" in capsys.readouterr().out
    assert main(["import", str(export), "--patient", "Patient/p1", "--out", str(tmp_path / "x"),
                 "--summaries", "weekly"]) == 2
    assert "--summaries" in capsys.readouterr().err


# --- properties of the accumulator ----------------------------------------------------------------------

@st.composite
def cumulative_samples(draw):
    n = draw(st.integers(1, 60))
    start = np.array(draw(st.lists(st.integers(0, 3 * 86400), min_size=n, max_size=n)), dtype=np.float64)
    length = np.array(draw(st.lists(st.integers(0, 1800), min_size=n, max_size=n)), dtype=np.float64)
    value = np.array(draw(st.lists(st.integers(0, 2000), min_size=n, max_size=n)), dtype=np.float64)
    priority = np.array(draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)), dtype=np.int64)
    offset = np.full(n, -4 * 3600, dtype=np.int64)
    base = 1.71e9
    return SampleColumns(start + base, start + base + length, offset, value, priority, np.full(n, -1),
                         priority.astype(np.uint32))


def _totals(flushed_stats) -> dict[int, float]:
    return dict(zip(flushed_stats.keys.tolist(), flushed_stats.total.tolist(), strict=True))


@settings(max_examples=100, deadline=None)
@given(cumulative_samples(), st.integers(0, 60))
def test_cumulative_totals_roll_up_from_hours_to_days_and_ignore_batching(cols, cut) -> None:
    spec = AccumulatorSpec(windows=frozenset({"hour", "day"}), cumulative=True)
    whole = SummaryAccumulator(spec)
    whole.add(cols)
    a = whole.flush()
    split = SummaryAccumulator(spec)
    cut = min(cut, len(cols))
    split.add(cols.take(np.arange(cut)))
    split.add(cols.take(np.arange(cut, len(cols))))
    b = split.flush()
    assert a.hour is not None and a.day is not None and b.day is not None
    assert _totals(a.day) == pytest.approx(_totals(b.day))
    assert a.hour.total.sum() == pytest.approx(a.day.total.sum())
    # de-duplication never adds: the total is at most the plain sum, at least the best source's own sum
    assert a.day.total.sum() <= cols.value.sum() + 1e-6
    top = cols.priority == cols.priority.max()
    assert a.day.total.sum() >= cols.value[top].sum() - 1e-6


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(min_value=20, max_value=500), min_size=1, max_size=400), st.integers(1, 5))
def test_cgm_shares_sum_to_100_and_mean_is_bounded(values, step_minutes) -> None:
    n = len(values)
    start = 1.71e9 + np.arange(n) * step_minutes * 60.0
    cols = SampleColumns(start, start, np.full(n, -4 * 3600), np.array(values), np.zeros(n, dtype=np.int64),
                         np.full(n, -1), np.zeros(n, dtype=np.uint32))
    acc = SummaryAccumulator(AccumulatorSpec(windows=frozenset({"cgm"}), edges=(54, 70, 181, 251)))
    acc.add(cols)
    cgm = acc.flush().cgm
    assert cgm is not None and cgm.count.sum() == n
    assert np.allclose(cgm.band_percent.sum(axis=1), 100.0)
    assert np.all(cgm.mean >= min(values) - 1e-9) and np.all(cgm.mean <= max(values) + 1e-9)
    assert np.all((cgm.active_percent > 0) & (cgm.active_percent <= 100))
    assert np.all(cgm.days_worn >= 1)


@st.composite
def column_parts(draw) -> list[SampleColumns]:
    """Chunks whose columns are sometimes constant and whose samples are sometimes instants."""
    parts = []
    for _ in range(draw(st.integers(1, 5))):
        n = draw(st.integers(0, 20))
        start = np.sort(np.array(draw(st.lists(st.integers(0, 10**6), min_size=n, max_size=n)), dtype=np.float64))
        instants = draw(st.booleans())
        end = start.copy() if instants else start + draw(st.integers(1, 600))

        def small(choices: list[int], dtype: type, n: int = n) -> np.ndarray:
            if draw(st.booleans()):
                return np.full(n, draw(st.sampled_from(choices)), dtype=dtype)
            return np.array(draw(st.lists(st.sampled_from(choices), min_size=n, max_size=n)), dtype=dtype)

        parts.append(SampleColumns(start, end, small([-18000, -14400, 19800], np.int32),
                                   np.array(draw(st.lists(st.floats(0, 500), min_size=n, max_size=n))),
                                   small([0, 1, 2], np.int16), small([-1, 0, 3], np.int16),
                                   small([0, 7, 4_000_000_000], np.uint32)))
    return parts


@settings(max_examples=150, deadline=None)
@given(column_parts())
def test_compact_columns_hold_the_same_rows_read_only(parts) -> None:
    plain = SampleColumns.concat(parts) if len(parts) > 1 else parts[0]
    compact = SampleColumns.concat([p.compact() for p in parts])
    for name in SampleColumns.__slots__:
        assert getattr(compact, name).tolist() == getattr(plain, name).tolist(), name
        array = getattr(compact, name)
        if len(array) > 1 and array.strides[0] == 0:
            assert not array.flags.writeable  # a shared zero-stride view can never be written through
    index = np.arange(len(plain))[::2]
    assert compact.take(index).value.tolist() == plain.take(index).value.tolist()


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 60 * 86400), st.sampled_from([-5 * 3600, -4 * 3600, 19800]),
                          st.floats(min_value=20, max_value=500)), min_size=1, max_size=300,
                unique_by=lambda r: r[0]),  # one reading per instant (a tie's offset would depend on order)
       st.randoms(use_true_random=False))
def test_cgm_stats_ignore_input_order_and_count_each_worn_day_once(readings, rnd) -> None:
    epoch = 1.7e9 + np.array([r[0] for r in readings], dtype=np.float64)
    offset = np.array([r[1] for r in readings], dtype=np.int32)
    value = np.array([r[2] for r in readings])
    edges = np.array([54.0, 70.0, 181.0, 251.0])
    in_time_order = np.argsort(epoch, kind="stable")
    shuffled = np.arange(len(epoch))
    rnd.shuffle(shuffled)
    a = cgm_stats(epoch[in_time_order], offset[in_time_order], value[in_time_order], edges)
    b = cgm_stats(epoch[shuffled], offset[shuffled], value[shuffled], edges)
    for name in ("keys", "count", "start", "end", "days_worn"):
        assert getattr(a, name).tolist() == getattr(b, name).tolist(), name
    for name in ("mean", "cv", "gmi", "band_percent", "active_percent"):
        assert np.allclose(getattr(a, name), getattr(b, name)), name
    local_days: dict[int, set[int]] = defaultdict(set)
    for t, o in zip(epoch.tolist(), offset.tolist(), strict=True):
        day = int((t + o) // 86400)
        local_days[(day - PERIOD_ANCHOR_DAY) // 14].add(day)
    assert a.days_worn.tolist() == [len(local_days[k]) for k in a.keys.tolist()]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2060, 1, 1)),
                          st.sampled_from([NY, ZoneInfo("Asia/Kolkata"), UTC]), st.integers(0, 7200)),
                min_size=1, max_size=30))
def test_sample_columns_epochs_and_offsets_match_datetime(moments) -> None:
    samples = []
    for naive, zone, length in moments:
        start = naive.replace(tzinfo=zone)
        fixed = start.astimezone(timezone(start.utcoffset()))  # parsed exports carry fixed offsets
        for moment in (start, fixed):
            end = moment + timedelta(seconds=length)
            samples.append(Sample("Patient/p1", "heart_rate", 60.0, None, "/min", moment, end,
                                  SourceInfo("x", None, None), "healthkit", "t", *epoch_times(moment, end)))
    # the numeric clock is timestamp() bit for bit (microseconds included), so ids and duplicate keys
    # computed from it equal those computed from the datetimes
    assert [s.start_epoch for s in samples] == [s.start.timestamp() for s in samples]
    assert [s.end_epoch for s in samples] == [s.end.timestamp() for s in samples]
    cols = SampleColumns.from_samples(samples)
    assert cols.start.tolist() == [s.start.timestamp() for s in samples]
    assert cols.end.tolist() == [s.end.timestamp() for s in samples]
    assert cols.offset.tolist() == [int(s.start.utcoffset().total_seconds()) for s in samples]


def _arrays(obj: object) -> list[np.ndarray]:
    """Every numpy array reachable from ``obj`` through dicts, lists and dataclasses."""
    if isinstance(obj, np.ndarray):
        return [obj]
    if isinstance(obj, dict):
        return [a for v in obj.values() for a in _arrays(v)]
    if isinstance(obj, list | tuple):
        return [a for v in obj for a in _arrays(v)]
    if dataclasses.is_dataclass(obj):
        return [a for f in dataclasses.fields(obj) for a in _arrays(getattr(obj, f.name))]
    return []


def test_an_accumulator_snapshot_is_independent_and_shares_no_array_that_is_written() -> None:
    # Bytewax snapshots the state at every epoch end; the snapshot shares arrays with the live state,
    # so no update may write into an existing array: freeze them all, keep going, compare with a restore
    table = metrics()
    elements = HEART_RATE + STEPS + SLEEP_NIGHT + cgm_readings(days=1)
    samples, _, _ = normalize(export_xml(*elements))
    first, second = samples[::2], samples[1::2]
    live = accumulate(first)
    for acc in live.values():
        acc.flush()  # some windows emitted: later data amends them
    snapshots = {metric: acc.snapshot() for metric, acc in live.items()}
    pickled = pickle.dumps(snapshots)  # what recovery stores (compacted zero-stride columns included)
    for acc in live.values():
        for array in _arrays(acc):
            array.flags.writeable = False
    def finish(accs: dict[str, SummaryAccumulator]) -> list[dict]:
        for metric, group in _by_metric(second).items():
            m = table[metric]
            accs.setdefault(metric, SummaryAccumulator(accumulator_spec(m, ALL))).add(
                SampleColumns.from_samples(group, tuple(m.codes), m.source_priority))
        return flush(accs)
    from_live = finish(live)
    assert from_live and any(r["status"] == "amended" for r in from_live)
    assert finish(snapshots) == from_live
    assert finish(pickle.loads(pickled)) == from_live


@pytest.mark.parametrize("size", [1, 7, 1000])
def test_flushed_windows_cut_into_parts_build_the_same_observations(size: int) -> None:
    # the summarise step emits parts of at most SUMMARY_PART_WINDOWS windows, built one at a time by sinks
    table = metrics()
    samples, _, _ = normalize(export_xml(*cgm_readings(days=3)))
    acc = accumulate(samples)["cgm_glucose"]
    flushed = acc.flush()
    builder = SummaryBuilder(FhirContext())
    whole = builder.build("Patient/p1", table["cgm_glucose"], flushed)
    parts = flushed.chunks(size)
    assert all(0 < len(part) <= size and len(part.counts()) == 1 for part in parts)
    assert sum((Counter(part.counts()) for part in parts), Counter()) == Counter(flushed.counts())
    batches = [SummaryBatch("Patient/p1", table["cgm_glucose"], part, builder) for part in parts]
    assert [r for batch in batches for r in batch.resources()] == whole


# --- sleep: one source per night, noon splits, in-bed-only nights ---------------------------------------------

def sleep_record(stage: str, start: str, end: str, source: str) -> str:
    return record(SLEEP, f"HKCategoryValueSleepAnalysis{stage}", start=f"2024-03-{start} -0400",
                  end=f"2024-03-{end} -0400", source=source, device=None)


def test_equal_priority_sleep_apps_are_not_unioned_the_one_with_most_sleep_counts() -> None:
    # two third-party apps (same priority) watched overlapping parts of one night: 480 and 420 minutes asleep,
    # 540 minutes as a union: the night is the 480 minutes of the app that recorded more sleep
    elements = [sleep_record("AsleepUnspecified", "12 23:00:00", "13 07:00:00", "SleepCycle"),
                sleep_record("AsleepUnspecified", "13 01:00:00", "13 08:00:00", "Pillow")]
    for ordered in (elements, elements[::-1]):
        (night,) = summaries_for(*ordered)
        assert night["valueQuantity"]["value"] == 480.0
        assert night["effectivePeriod"] == {"start": "2024-03-12T23:00:00-04:00", "end": "2024-03-13T07:00:00-04:00"}


def test_equal_sleep_from_equal_priority_apps_is_decided_by_the_lowest_source_id() -> None:
    names = ("SleepCycle", "Pillow")
    elements = [sleep_record("AsleepUnspecified", "12 23:00:00", "13 07:00:00", names[0]),
                sleep_record("AsleepUnspecified", "13 00:00:00", "13 08:00:00", names[1])]
    winner = min(names, key=lambda name: source_id(SourceInfo(name, None, None)))
    start = "2024-03-12T23:00:00-04:00" if winner == "SleepCycle" else "2024-03-13T00:00:00-04:00"
    for ordered in (elements, elements[::-1]):
        (night,) = summaries_for(*ordered)
        assert night["valueQuantity"]["value"] == 480.0 and night["effectivePeriod"]["start"] == start


def test_a_night_with_only_in_bed_time_is_a_time_in_bed_observation() -> None:
    (night,) = summaries_for(sleep_record("InBed", "12 22:30:00", "13 06:45:00", "Zoë’s iPhone"))
    assert night["code"] == {"coding": [{"system": "https://wearfhir.dev/fhir/CodeSystem/sleep", "code": "in_bed",
                                         "display": "In bed"}], "text": "Time in bed"}
    assert night["valueQuantity"] == {"value": 495.0, "unit": "min", "system": "http://unitsofmeasure.org",
                                      "code": "min"}
    assert "component" not in night  # the in-bed minutes are the value: no component repeats the code (obs-7)
    assert validate_resource(night) == []


def test_a_segment_across_local_noon_is_split_between_the_two_nights() -> None:
    # a nap recorded from 10:00 to 14:00: two hours belong to the night before, two to the night after noon
    nights = summaries_for(sleep_record("AsleepUnspecified", "12 10:00:00", "12 14:00:00", "SleepCycle"))
    assert [(n["code"]["text"], n["valueQuantity"]["value"], n["effectivePeriod"]) for n in nights] == [
        ("Sleep, night of 2024-03-11", 120.0, {"start": "2024-03-12T10:00:00-04:00",
                                               "end": "2024-03-12T12:00:00-04:00"}),
        ("Sleep, night of 2024-03-12", 120.0, {"start": "2024-03-12T12:00:00-04:00",
                                               "end": "2024-03-12T14:00:00-04:00"}),
    ]


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(1, 40 * 3600), min_size=1, max_size=12), st.sampled_from([None, "America/New_York"]))
def test_sleep_minutes_are_kept_when_segments_are_split_at_noon(lengths, zone) -> None:
    # back-to-back asleep segments of one source, from minutes to a day and a half long
    stages = ("in_bed", "asleep_core", "awake")
    start = 1_710_000_000.0 + np.r_[0, np.cumsum(lengths[:-1])].astype(np.float64)
    end = start + np.array(lengths, dtype=np.float64)
    tz = ZoneInfo(zone) if zone else timezone(timedelta(hours=-4))
    offset = np.array([datetime.fromtimestamp(s, tz).utcoffset().total_seconds() for s in start], dtype=np.int32)
    n = len(start)
    nights = sleep_nights(start, end, offset, np.ones(n, dtype=np.int16), np.zeros(n, dtype=np.int16),
                          np.zeros(n, dtype=np.uint32), stages, zone)
    assert nights.minutes[:, -1].sum() == pytest.approx(sum(lengths) / 60.0)
    assert np.all(nights.minutes[:, -1] <= 24 * 60 + 60)  # a night is one local noon to the next (25 h at most)


# --- zone-aware windows and values as measured ---------------------------------------------------------------

def test_day_and_cgm_windows_start_at_true_local_midnight_when_the_zone_is_known() -> None:
    # the first reading of 10 March 2024 (New York springs forward at 02:00) comes after the change
    samples, _, _ = normalize(export_xml(*cgm_readings(days=1, start=datetime(2024, 3, 10, 6, tzinfo=NY))[:100]))
    table = metrics()
    m = table["cgm_glucose"]
    periods = {}
    for zone in ("America/New_York", None):
        acc = SummaryAccumulator(dataclasses.replace(accumulator_spec(m, frozenset({"day", "cgm"})), zone=zone))
        acc.add(SampleColumns.from_samples(samples, (), m.source_priority))
        resources = SummaryBuilder(FhirContext()).build("Patient/p1", m, acc.flush())
        periods[zone] = {window_of(r): r["effectivePeriod"] for r in resources}
    right = {"start": "2024-03-10T00:00:00-05:00", "end": "2024-03-11T00:00:00-04:00"}
    assert periods["America/New_York"] == {"day": right, "cgm": {"start": "2024-03-04", "end": "2024-03-17"}}
    assert periods[None]["day"]["start"] == "2024-03-10T00:00:00-04:00"  # without a zone: the first sample's offset


def test_minimum_and_maximum_are_the_sample_values_unrounded() -> None:
    m = metrics()["heart_rate"]  # means are shown with 2 decimals
    start = np.array([1_710_245_100.0, 1_710_246_300.0])  # 2024-03-12 08:05 and 08:25 -04:00
    n = len(start)
    cols = SampleColumns(start, start, np.full(n, -4 * 3600, dtype=np.int32), np.array([61.4567, 92.123456]),
                         np.zeros(n, dtype=np.int16), np.full(n, -1, dtype=np.int16), np.zeros(n, dtype=np.uint32))
    acc = SummaryAccumulator(accumulator_spec(m, frozenset({"hour"})))
    acc.add(cols)
    (hour,) = SummaryBuilder(FhirContext()).build("Patient/p1", m, acc.flush())
    stats = {c["code"]["coding"][-1]["code"]: c for c in hour["component"]}
    assert stats["minimum"]["valueQuantity"]["value"] == 61.4567
    assert stats["maximum"]["valueQuantity"]["value"] == 92.123456
    assert hour["valueQuantity"]["value"] == round((61.4567 + 92.123456) / 2, 2)  # the mean is for display


@st.composite
def long_and_short_cumulative_samples(draw):
    """Steps-like samples of two sources: minutes long, with a few that last hours or days."""
    n = draw(st.integers(1, 80))
    start = np.sort(np.array(draw(st.lists(st.integers(0, 6 * 86400), min_size=n, max_size=n)), dtype=np.float64))
    length = np.array(draw(st.lists(st.sampled_from([0, 60, 600, 3000, 5 * 3600, 2 * 86400]), min_size=n,
                                    max_size=n)), dtype=np.float64)
    value = np.array(draw(st.lists(st.integers(0, 2000), min_size=n, max_size=n)), dtype=np.float64)
    priority = np.array(draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)), dtype=np.int16)
    base = 1.7099e9  # 2024-03-09: the spring-forward night of New York is in the range
    return SampleColumns(start + base, start + base + length, np.full(n, -5 * 3600, dtype=np.int32), value,
                         priority, np.full(n, -1, dtype=np.int16), priority.astype(np.uint32))


@settings(max_examples=100, deadline=None)
@given(long_and_short_cumulative_samples(), st.integers(1, 9), st.sampled_from([None, "America/New_York"]))
def test_cumulative_windows_folded_in_chunks_equal_one_fold(cols, chunk, zone) -> None:
    """The flush folds cumulative samples FOLD_CHUNK at a time with overlapping context: same windows as at once."""
    import aggregates.accumulate as accumulate

    spec = AccumulatorSpec(windows=frozenset({"hour", "day"}), cumulative=True, zone=zone)
    results = []
    saved = accumulate.FOLD_CHUNK
    try:
        for size in (10**9, chunk):
            accumulate.FOLD_CHUNK = size
            acc = SummaryAccumulator(spec)
            acc.add(cols)
            results.append(acc.flush())
    finally:
        accumulate.FOLD_CHUNK = saved
    whole, chunked = results
    for window in ("hour", "day"):
        a, b = getattr(whole, window), getattr(chunked, window)
        assert a.keys.tolist() == b.keys.tolist()
        assert a.total == pytest.approx(b.total) and a.count.tolist() == b.count.tolist()
        assert a.tag.tolist() == b.tag.tolist()


# --- issue 13: conformant, self-describing summaries ------------------------------------------------------------

IG = "http://hl7.org/fhir/uv/cgm/StructureDefinition/"
UCUM = "http://unitsofmeasure.org"
IG_ORDER = [("97507-8", "cgm-summary-mean-glucose-mass-per-volume"), ("106793-3", "cgm-summary-times-in-ranges"),
            ("97506-0", "cgm-summary-gmi"), ("104638-2", "cgm-summary-coefficient-of-variation"),
            ("104636-6", "cgm-summary-days-of-wear"), ("104637-4", "cgm-summary-sensor-active-percentage")]


def cgm_report(readings: list[str]) -> tuple[dict, dict[str, dict]]:
    resources = summaries_for(*readings, windows=frozenset({"cgm"}))
    (panel,) = [r for r in resources if r["code"]["coding"][0]["code"] == "107931-8"]
    by_id = {r["id"]: r for r in resources}
    members = {by_id[m["reference"].split("/")[1]]["code"]["coding"][0]["code"]: by_id[m["reference"].split("/")[1]]
               for m in panel["hasMember"]}
    return panel, members


def div_text(resource: dict) -> str:
    return "".join(ET.fromstring(resource["text"]["div"]).itertext())


def test_cgm_panel_follows_the_ig_point_by_point() -> None:
    panel, members = cgm_report(cgm_readings(days=2))
    # cgm-summary: LOINC 107931-8, laboratory, subject, effectivePeriod start and end as YYYY-MM-DD, 6 members
    assert panel["meta"]["profile"] == [IG + "cgm-summary"]
    assert panel["code"]["coding"][0]["system"] == "http://loinc.org"
    assert panel["category"][0]["coding"][0]["code"] == "laboratory" and panel["subject"] == {"reference": "Patient/p1"}
    assert panel["effectivePeriod"] == {"start": "2024-03-04", "end": "2024-03-17"}
    assert all(re.fullmatch(r"\d{4}-\d{2}-\d{2}", d) for d in panel["effectivePeriod"].values())
    # members in the IG's order, each with its profile, its LOINC code and the panel's period
    ordered = [(m["code"]["coding"][0]["code"], m["meta"]["profile"][0].removeprefix(IG)) for m in members.values()]
    assert ordered == IG_ORDER
    for member in members.values():
        assert member["effectivePeriod"] == panel["effectivePeriod"] and member["status"] == panel["status"]
        assert member["category"] == panel["category"] and member["subject"] == panel["subject"]
    # the profiles' quantity patterns: mean 'mg/dL' "mg/dl"; percentages '%' "%"; days of wear 'd' "days"
    mean = members["97507-8"]["valueQuantity"]
    assert {k: mean[k] for k in ("unit", "system", "code")} == {"unit": "mg/dl", "system": UCUM, "code": "mg/dL"}
    for code in ("97506-0", "104638-2", "104637-4"):
        q = members[code]["valueQuantity"]
        assert (q["unit"], q["system"], q["code"]) == ("%", UCUM, "%")
    q = members["104636-6"]["valueQuantity"]
    assert (q["unit"], q["system"], q["code"]) == ("days", UCUM, "d")
    tir = members["106793-3"]
    assert "valueQuantity" not in tir
    assert [c["code"]["coding"][0]["code"] for c in tir["component"]] == [code for code, _ in CGM_BANDS]
    assert all((c["valueQuantity"]["unit"], c["valueQuantity"]["code"]) == ("%", "%") for c in tir["component"])
    for resource in (panel, *members.values()):
        assert validate_resource(resource) == []


def test_two_days_in_fourteen_read_14_percent_active_and_insufficient_data() -> None:
    panel, members = cgm_report(cgm_readings(days=2))
    active = members["104637-4"]
    assert active["valueQuantity"]["value"] == pytest.approx(100 * 2 / 14, abs=0.01)  # ≈14 %, not 100 %
    assert members["104636-6"]["valueQuantity"]["value"] == 2
    assert panel["note"][0]["text"].startswith("Insufficient data") and active["note"] == panel["note"]
    assert active["interpretation"][0]["coding"][0]["code"] == "L"
    assert active["referenceRange"][0]["low"]["value"] == 70
    assert "insufficient data" in div_text(panel).lower() and "14.29 %" in div_text(panel)
    assert "4–17 Mar 2024 (14 days)" in div_text(panel)
    for member in members.values():
        assert "Insufficient data" in div_text(member)


def test_fourteen_worn_days_are_sufficient_data() -> None:
    panel, members = cgm_report(cgm_readings(days=14, start=datetime(2024, 3, 4, tzinfo=NY)))
    assert members["104637-4"]["valueQuantity"]["value"] >= 99
    assert members["104636-6"]["valueQuantity"]["value"] == 14
    assert "note" not in panel and "interpretation" not in members["104637-4"]
    assert "Sufficient data" in div_text(panel)


def test_sensor_active_is_measured_against_the_zones_real_length_of_the_period() -> None:
    # the block of 4-17 March 2024 holds New York's spring-forward day: 14 x 24 - 1 hours
    samples, _, _ = normalize(export_xml(*cgm_readings(days=1, start=datetime(2024, 3, 12, tzinfo=NY))))
    m = metrics()["cgm_glucose"]
    acc = SummaryAccumulator(dataclasses.replace(accumulator_spec(m, frozenset({"cgm"})), zone="America/New_York"))
    acc.add(SampleColumns.from_samples(samples, (), m.source_priority))
    flushed = acc.flush()
    assert flushed.cgm is not None
    assert float(flushed.cgm.end[0] - flushed.cgm.start[0]) == (14 * 24 - 1) * 3600
    assert float(flushed.cgm.active_percent[0]) == pytest.approx(100 * 288 * 300 / ((14 * 24 - 1) * 3600))


def test_hourly_and_daily_glucose_summaries_are_mean_glucose_not_readings() -> None:
    resources = summaries_for(*cgm_readings(days=1)[:24], windows=frozenset({"hour", "day"}))
    assert {window_of(r) for r in resources} == {"hour", "day"}
    for obs in resources:
        assert [c["code"] for c in obs["code"]["coding"]] == ["97507-8"]  # average glucose over a stated period
        assert "99504-3" not in json.dumps(obs)  # the reading code is for one sensor reading only
        assert obs["code"]["text"] in ("CGM glucose, hourly mean", "CGM glucose, daily mean")
        assert "meta" not in obs  # not a CGM IG summary member: no profile claimed


@pytest.mark.parametrize(("kind", "expected"), [
    ("summary_heart_rate", ["Heart rate, hourly mean: 76 beats/minute", "Tue 12 Mar 2024, 08:00–09:00",
                            "Minimum 61, maximum 92 beats/minute", "From 3 samples"]),
    ("summary_steps_watch_and_iphone", ["Steps, hourly total: 1,000 steps", "Tue 12 Mar 2024, 10:00–11:00",
                                        "From 1 sample", "Watch preferred over iPhone"]),
    ("summary_active_energy", ["Active energy burned, daily total: 220 kcal/day", "Tue 12 Mar 2024",
                               "From 2 samples"]),
    ("summary_sleep_night", ["Sleep, night of Tue 12 Mar 2024: 435 min (7 h 15 min) asleep", "22:30 to Wed 13 Mar",
                             "Asleep (deep): 60 min (1 h)"]),
    ("summary_cgm_glucose_day", ["CGM glucose, daily mean: 137.8 mg/dL", "Tue 12 Mar 2024", "From 288 samples",
                                 "Time in ranges: very low 12.5 %, low 12.5 %, target 50 %"]),
])
def test_each_summary_kind_has_a_narrative_with_value_unit_window_and_count(kind: str, expected: list[str]) -> None:
    elements, windows = GOLDEN_KINDS[kind]
    first = summaries_for(*elements, windows=windows)[0]
    assert first["text"]["status"] == "generated"
    text = div_text(first)
    for fragment in expected:
        assert fragment in text, (fragment, text)
    assert html_checks(first["text"]["div"]) == []


def test_every_summary_has_a_safe_narrative() -> None:
    for kind, (elements, windows) in GOLDEN_KINDS.items():
        for obs in summaries_for(*elements, windows=windows):
            root = ET.fromstring(obs["text"]["div"])
            assert {e.tag.split("}")[1] for e in root.iter()} <= {"div", "p", "b", "ul", "li"}, kind
            assert invariant_errors(obs, warnings=True) == [], kind


def test_a_day_window_names_its_own_local_day_never_the_next() -> None:
    # 23:55 local on 12 March: the day is Tue 12 Mar in the narrative, though it is 13 March in UTC
    late = record("HeartRate", "70", "count/min", start="2024-03-12 23:55:00 -0400")
    (hour, day) = summaries_for(late, windows=frozenset({"hour", "day"}))
    assert "Tue 12 Mar 2024" in div_text(day) and "13 Mar" not in div_text(day)
    assert "Tue 12 Mar 2024, 23:00–00:00" in div_text(hour)


def test_an_amended_window_carries_the_narrative_of_its_new_values() -> None:
    samples, _, _ = normalize(export_xml(*HEART_RATE))
    accs = accumulate(samples, frozenset({"hour"}))
    builder = SummaryBuilder(FhirContext())
    first = {r["id"]: r for r in flush(accs, builder)}
    late, _, _ = normalize(export_xml(record("HeartRate", "120", "count/min", start="2024-03-12 08:40:00 -0400")))
    accs["heart_rate"].add(SampleColumns.from_samples(late, (), metrics()["heart_rate"].source_priority))
    (amended,) = flush(accs, builder)
    assert amended["status"] == "amended" and amended["id"] in first
    assert "From 3 samples" in div_text(first[amended["id"]])
    assert "Heart rate, hourly mean: 87 beats/minute" in div_text(amended)  # (61 + 75 + 92 + 120) / 4
    assert "maximum 120" in div_text(amended) and "From 4 samples" in div_text(amended)


@pytest.mark.parametrize(("first", "last", "text"), [
    ("2024-03-04", "2024-03-17", "4–17 Mar 2024"),
    ("2024-02-26", "2024-03-10", "26 Feb – 10 Mar 2024"),
    ("2023-12-25", "2024-01-07", "25 Dec 2023 – 7 Jan 2024"),
])
def test_periods_are_written_with_an_inclusive_last_day(first: str, last: str, text: str) -> None:
    assert period_text(first, last) == text


def test_numbers_are_written_for_people() -> None:
    assert [number(8412), number(1234567.891, 2), number(76.25, 1), number(131.0, 1), number(0.5)] == \
        ["8,412", "1,234,567.89", "76.2", "131", "0.5"]


def test_the_repeated_fall_back_hour_names_its_offset_in_the_narrative() -> None:
    local = datetime(2024, 11, 3, tzinfo=NY)
    samples, _, _ = normalize(export_xml(*hourly_heart_rate(local, local + timedelta(days=1))))
    m = metrics()["heart_rate"]
    acc = SummaryAccumulator(dataclasses.replace(accumulator_spec(m, frozenset({"hour"})), zone="America/New_York"))
    acc.add(SampleColumns.from_samples(samples, (), m.source_priority))
    texts = [div_text(r) for r in SummaryBuilder(FhirContext()).build("Patient/p1", m, acc.flush())]
    assert len(texts) == 25
    assert [t for t in texts if "(UTC" in t] == [t for t in texts if "01:00–02:00" in t]
    assert any("Sun 3 Nov 2024, 01:00–02:00 (UTC-04:00)" in t for t in texts)
    assert any("Sun 3 Nov 2024, 01:00–02:00 (UTC-05:00)" in t for t in texts)


def test_each_cgm_period_gets_its_report_right_after_its_panel() -> None:
    samples, rejections, _ = normalize(export_xml(*cgm_readings(days=3)))
    assert not rejections
    accs = accumulate(samples)
    reports: list[dict] = []
    observations = flush(accs, reports=reports)
    (panel,) = [o for o in observations if o["code"]["coding"][0]["code"] == "107931-8"]
    (report,) = reports
    assert report["resourceType"] == "DiagnosticReport"
    assert report["result"] == [{"reference": f"Observation/{panel['id']}"}]
    assert report["effectivePeriod"] == panel["effectivePeriod"] and report["status"] == panel["status"]
    last_reading = max(s.start_epoch for s in samples if s.metric == "cgm_glucose")
    assert report["issued"] == datetime.fromtimestamp(last_reading, UTC).isoformat().replace("+00:00", "Z")
    assert base64.b64decode(report["presentedForm"][0]["data"]).startswith(b"%PDF-")
    assert validate_resource(report) == []
