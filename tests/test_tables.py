"""The mapping tables: every row valid, the baseline covered, bad tables fail at load."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mappers.tables import healthkit_table, load_healthkit, load_metrics, metrics
from mappers.units import KNOWN_UNITS, conversion, convert
from wearfhir.errors import ConfigError

METRICS_TEXT = (Path(__file__).resolve().parents[1] / "mappers" / "data" / "metrics.toml").read_text()
HK_TEXT = (Path(__file__).resolve().parents[1] / "mappers" / "data" / "healthkit.toml").read_text()

# Every HealthKit row of the research baseline (shared/mapping-baseline.md), by Apple identifier: the primary LOINC
# code of a raw sample. Distance has none: 41953-1 is a 24-hour code and codes the daily total only (issue 9).
BASELINE_TYPES = {
    "HKQuantityTypeIdentifierHeartRate": "8867-4",
    "HKQuantityTypeIdentifierRestingHeartRate": "40443-4",
    "HKQuantityTypeIdentifierHeartRateVariabilitySDNN": "80404-7",
    "HKQuantityTypeIdentifierStepCount": "55423-8",
    "HKQuantityTypeIdentifierDistanceWalkingRunning": None,
    "HKQuantityTypeIdentifierActiveEnergyBurned": "41981-2",
    "HKQuantityTypeIdentifierBasalEnergyBurned": None,
    "HKQuantityTypeIdentifierRespiratoryRate": "9279-1",
    "HKQuantityTypeIdentifierOxygenSaturation": "2708-6",
    "HKQuantityTypeIdentifierBodyTemperature": "8310-5",
    "HKQuantityTypeIdentifierBloodGlucose": "41653-7",
    "HKQuantityTypeIdentifierBodyMass": "29463-7",
    "HKQuantityTypeIdentifierHeight": "8302-2",
    "HKQuantityTypeIdentifierBodyMassIndex": "39156-5",
    "HKQuantityTypeIdentifierBloodPressureSystolic": "8480-6",
    "HKQuantityTypeIdentifierBloodPressureDiastolic": "8462-4",
    "HKQuantityTypeIdentifierWalkingHeartRateAverage": None,
    "HKQuantityTypeIdentifierVO2Max": "94122-9",
    "HKCategoryTypeIdentifierSleepAnalysis": "93832-4",
}


@pytest.mark.parametrize(("identifier", "loinc"), sorted(BASELINE_TYPES.items()))
def test_every_baseline_type_is_mapped_with_its_code(identifier: str, loinc: str | None) -> None:
    table, table_metrics = healthkit_table(), metrics()
    spec = table.types[identifier]
    metric = table_metrics[spec.metric]
    assert (metric.codings[0].code if metric.codings else None) == loinc


def test_24_hour_loinc_codes_code_daily_totals_only() -> None:
    table_metrics = metrics()
    daily = {key: m.daily.codings[0].code for key, m in table_metrics.items() if m.daily is not None}
    assert daily == {"steps": "41950-7", "distance_walking_running": "41953-1", "active_energy": "41979-6"}
    for metric in table_metrics.values():
        assert not {c.code for c in metric.codings} & set(daily.values()), metric.key


def test_blood_pressure_correlation_and_workout_are_mapped() -> None:
    table, table_metrics = healthkit_table(), metrics()
    panel, members = table.correlations["HKCorrelationTypeIdentifierBloodPressure"]
    assert table_metrics[panel].codings[0].code == "85354-9"
    assert set(members.values()) == {"blood_pressure_systolic", "blood_pressure_diastolic"}
    assert table_metrics[table.workout_metric].codings[0].code == "73985-4"


@pytest.mark.parametrize("key", sorted(metrics()))
def test_every_metric_row_is_consistent(key: str) -> None:
    metric = metrics()[key]
    assert metric.unit in KNOWN_UNITS
    assert metric.display and metric.unit_display
    if metric.kind == "quantity":
        assert metric.value_range is not None
    for code in metric.codings:
        if code.system == "http://loinc.org":
            assert re.fullmatch(r"\d{1,7}-\d", code.code), code.code


@pytest.mark.parametrize("identifier", sorted(healthkit_table().types))
def test_every_healthkit_type_has_a_convertible_export_unit(identifier: str) -> None:
    table, table_metrics = healthkit_table(), metrics()
    spec = table.types[identifier]
    metric = table_metrics[spec.metric]
    if metric.kind != "quantity":
        return
    convertible = [u for u in table.units if _converts(table, spec, u, metric.unit)]
    assert convertible, f"{identifier}: no export unit converts to {metric.unit}"


def _converts(table, spec, unit, to):
    try:
        table.unit_conversion(spec, unit, to)
    except ConfigError:
        return False
    return True


def test_completeness_report_counts_mapped_and_known() -> None:
    mapped, unmapped = healthkit_table().covered()
    assert set(BASELINE_TYPES) <= set(mapped)
    assert not set(mapped) & set(unmapped)
    assert len(mapped) + len(unmapped) > 60


@pytest.mark.parametrize(
    ("mutation", "message"),
    [
        (lambda t: t.replace('unit = "/min"\nunit_display = "beats/minute"', 'unit = "bpm"\nunit_display = "x"', 1),
         "not a UCUM unit"),
        (lambda t: t.replace('code = "40443-4"', 'code = "8867-4"'), "share the primary code"),
        (lambda t: t.replace('category = "vital-signs"', 'category = "vitals"', 1), "category 'vitals'"),
        (lambda t: t.replace('range = [10, 350]', 'range = [350, 10]'), "range must be"),
        (lambda t: t + "\n[broken]\ndisplay = 1\n", "missing field"),
        (lambda t: t.replace("[heart_rate]", "[heart_rate", 1), "metrics.toml"),
    ],
)
def test_a_bad_metric_table_fails_at_load(mutation, message) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_metrics(mutation(METRICS_TEXT))


@pytest.mark.parametrize(
    ("mutation", "message"),
    [
        (lambda t: t.replace('metric = "heart_rate"', 'metric = "heart_rhythm"', 1), "not in metrics.toml"),
        (lambda t: t.replace('"count/min" = "/min"', '"count/min" = "beats"'), "unknown UCUM"),
        (lambda t: t.replace('HKCategoryValueSleepAnalysisAwake = "awake"', 'HKCategoryValueSleepAnalysisAwake = "x"'),
         "value code 'x'"),
        (lambda t: t.replace('HKQuantityTypeIdentifierFlightsClimbed = ', 'HKQuantityTypeIdentifierHeartRate = ', 1),
         "both mapped and listed"),
    ],
)
def test_a_bad_healthkit_table_fails_at_load(mutation, message) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_healthkit(mutation(HK_TEXT), metrics())


def test_conversions() -> None:
    assert convert(212, "[degF]", "Cel") == pytest.approx(100)
    assert convert(32, "[degF]", "Cel") == pytest.approx(0)
    assert convert(1, "[lb_av]", "kg") == pytest.approx(0.45359237)
    assert convert(4.184, "kJ", "kcal") == pytest.approx(1)
    assert convert(5.5, "mmol/L", "mg/dL") == pytest.approx(99.0858)
    assert conversion("kg", "kg") == (1.0, 0.0)
    with pytest.raises(ConfigError, match="no conversion"):
        conversion("kg", "m")


def test_summary_windows_of_the_table_are_the_windows_the_accumulator_knows() -> None:
    from aggregates.accumulate import WINDOWS
    from mappers.tables import SUMMARY_WINDOWS

    assert set(SUMMARY_WINDOWS) == set(WINDOWS)
