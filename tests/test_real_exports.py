"""Real Apple Health exports (../shared/samples/apple-health, read in place): per-file expectations checked by hand.

Every number below was derived from the XML itself, not from wearfhir: top-level elements counted with
``lxml.etree.iterparse`` (depth 1: ``Record``, ``Correlation``, ``Workout``); the malformed lines of the German
ericwolter file found by parsing each ``<Record …/>`` line on its own with ``lxml.etree.fromstring``; local days
and hours computed with ``zoneinfo``; cumulative values prorated by overlap in seconds; exact duplicates found as
records equal in type, source name, unit, value, start and end (SOURCES.md's count of 167 in ashtom). The scripts
were throw-away; each number's comment says how it was obtained. The files are never copied and no value they
hold is printed: assertion messages name files, dates and counts only.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import traceback
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from wearfhir.cli import main
from wearfhir.validate import validate_resource

SAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "samples" / "apple-health"

pytestmark = pytest.mark.skipif(not SAMPLES.is_dir(), reason=f"real Apple Health exports not found in {SAMPLES}")

APPLE = "http://developer.apple.com/documentation/healthkit"
LOINC = "http://loinc.org"
HR = "HKQuantityTypeIdentifierHeartRate"
STEPS = "HKQuantityTypeIdentifierStepCount"
DISTANCE = "HKQuantityTypeIdentifierDistanceWalkingRunning"
ACTIVE = "HKQuantityTypeIdentifierActiveEnergyBurned"
BASAL = "HKQuantityTypeIdentifierBasalEnergyBurned"
SLEEP = "HKCategoryTypeIdentifierSleepAnalysis"
BODY_MASS = "HKQuantityTypeIdentifierBodyMass"
BMI = "HKQuantityTypeIdentifierBodyMassIndex"
HRV = "HKQuantityTypeIdentifierHeartRateVariabilitySDNN"
RESTING_HR = "HKQuantityTypeIdentifierRestingHeartRate"
WALKING_HR = "HKQuantityTypeIdentifierWalkingHeartRateAverage"
VO2MAX = "HKQuantityTypeIdentifierVO2Max"
HEIGHT = "HKQuantityTypeIdentifierHeight"
GLUCOSE = "HKQuantityTypeIdentifierBloodGlucose"
SPO2 = "HKQuantityTypeIdentifierOxygenSaturation"
RESPIRATORY = "HKQuantityTypeIdentifierRespiratoryRate"
WORKOUT = "HKWorkoutTypeIdentifier"

MALFORMED = "malformed XML"
AFTER_EXPORT = "dated after the export"
UNKNOWN_UNIT = "unknown unit"
OUT_OF_RANGE = "value out of plausible range"

# Per-file expectations. Keys:
#   exit     the import's exit code
#   records  records read = top-level Record + Correlation + Workout elements (well-formed ones only)
#   types    records read per type, as the report lists them ("records per type"); all types unless noted
#   rejected reason fragment -> count of lines in rejected.ndjson (the whole list: no other reasons)
#   raw      raw Observations per Apple type (the HealthKit coding of Observation.code), with --raw all:
#            records of that type minus exact duplicates minus rejected ones; types left out are not asserted
EXPECTED: dict[str, dict[str, Any]] = {
    "ericwolter-2015-en_DE-export.xml": {
        "exit": 0,
        "records": 3_067,  # iterparse: 3,067 Record, nothing else; no ExportDate-later record, no duplicate
        "types": {ACTIVE: 1_171, DISTANCE: 534, STEPS: 534, "HKQuantityTypeIdentifierFlightsClimbed": 494,
                  SLEEP: 92, HR: 89, "HKQuantityTypeIdentifierBodyFatPercentage": 76, BODY_MASS: 76, HEIGHT: 1},
        "rejected": {},
        # every record of a mapped type lands (compact dates, source=, HR from average in count/s; the 92 sleep
        # records carry value="1", iOS 8's numeric HKCategoryValueSleepAnalysisAsleep)
        "raw": {ACTIVE: 1_171, DISTANCE: 534, STEPS: 534, SLEEP: 92, HR: 89, BODY_MASS: 76, HEIGHT: 1},
    },
    "ericwolter-2015-de_DE-Exportieren.xml": {
        "exit": 0,  # </HealthData> is there: a complete document whose late records are malformed
        # 2,819 <Record lines (lines 5-2823); lxml.etree.fromstring on each line alone: 1,499 parse, 1,320 do not
        # (runs of 14, 13, 12 and 1,281 lines; the last malformed one is line 2822, the next-to-last record)
        "records": 1_499,
        "types": {DISTANCE: 362, STEPS: 362, "HKQuantityTypeIdentifierFlightsClimbed": 306,
                  "HKQuantityTypeIdentifierNikeFuel": 186, BASAL: 127, HR: 80, ACTIVE: 59, SLEEP: 12, BODY_MASS: 2,
                  "HKQuantityTypeIdentifierDistanceCycling": 2, "HKCategoryTypeIdentifierSexualActivity": 1},
        # + the well-formed sleep record of line 1530 (source UP) has no value attribute at all: "missing value"
        "rejected": {MALFORMED: 1_320, "missing value": 1},
        # well-formed records of mapped types, no exact duplicates among them; 11 of the 12 well-formed sleep
        # records carry value="1" (iOS 8's numeric HKCategoryValueSleepAnalysisAsleep)
        "raw": {DISTANCE: 362, STEPS: 362, BASAL: 127, HR: 80, ACTIVE: 59, SLEEP: 11, BODY_MASS: 2},
    },
    "brianerdelyi-ios8-2015.xml": {
        "exit": 0,
        "records": 563,  # iterparse: 563 Record; all dates compact, all -0800, none after 2014-01-14 08:43:47
        "types": {DISTANCE: 267, STEPS: 267, "HKQuantityTypeIdentifierFlightsClimbed": 29},
        "rejected": {},
        "raw": {DISTANCE: 267, STEPS: 267},  # no duplicates (type/source/unit/value/start/end all distinct)
    },
    "rgosdin-v8-ios12.xml": {
        "exit": 0,
        "records": 3_352,  # iterparse: 3,352 Record
        "types": {STEPS: 1_588, DISTANCE: 1_587, "HKQuantityTypeIdentifierFlightsClimbed": 170, SLEEP: 4,
                  "HKCategoryTypeIdentifierMindfulSession": 1, "HKQuantityTypeIdentifierNumberOfTimesFallen": 1,
                  "HKQuantityTypeIdentifierUVExposure": 1},
        # startDate > ExportDate (2019-06-17 21:07:11 -0400): lines 1392 (steps) and 2980 (distance), 2030-01-06
        "rejected": {AFTER_EXPORT: 2},
        "raw": {STEPS: 1_587, DISTANCE: 1_586, SLEEP: 4},
    },
    "ashtom-hkimport-v3-2017.xml": {
        "exit": 0,
        "records": 11_034,  # iterparse: 10,939 Record + 34 Correlation (Food) + 61 Workout
        # a selection of the 44 types (the report lists them all)
        "types": {STEPS: 3_980, DISTANCE: 3_556, HR: 2_177, ACTIVE: 411, "HKQuantityTypeIdentifierFlightsClimbed": 191,
                  SLEEP: 121, WORKOUT: 61, BODY_MASS: 40, GLUCOSE: 35, "HKCorrelationTypeIdentifierFood": 34,
                  BASAL: 2, "HKQuantityTypeIdentifierNikeFuel": 2},
        "rejected": {},
        # exact duplicates (equal type, sourceName, unit, value, startDate, endDate; creationDate ignored):
        # distance 77, active energy 76, sleep 1 (167 in all with 13 of Dietary types: SOURCES.md's number).
        # If identity also includes sourceVersion and device (lark re-wrote 4+4 samples from newer versions)
        # these become 73 and 72: TODO(lead) confirm which attributes "matter".
        "raw": {STEPS: 3_980, DISTANCE: 3_556 - 77, HR: 2_177, ACTIVE: 411 - 76, SLEEP: 121 - 1, BODY_MASS: 40,
                GLUCOSE: 35, BASAL: 2, WORKOUT: 61},
    },
    "jdecool-v8-fr_FR-exporter.xml": {
        "exit": 0,
        "records": 13,  # one Record of each of 13 types
        "types": {t: 1 for t in (ACTIVE, "HKQuantityTypeIdentifierAppleExerciseTime", BASAL, BODY_MASS, DISTANCE,
                                 "HKQuantityTypeIdentifierFlightsClimbed", HR, HRV, HEIGHT, RESTING_HR, STEPS,
                                 VO2MAX, WALKING_HR)},
        "rejected": {},
        "raw": {t: 1 for t in (ACTIVE, BASAL, BODY_MASS, DISTANCE, HR, HRV, HEIGHT, RESTING_HR, STEPS, VO2MAX,
                               WALKING_HR)},
    },
    "tdda-v3-en_GB-6s.xml": {
        "exit": 0,
        "records": 16,  # 15 Record + 1 Workout (2 ActivitySummary are not records)
        "types": {STEPS: 10, DISTANCE: 5, WORKOUT: 1},
        "rejected": {},
        "raw": {STEPS: 10, DISTANCE: 5, WORKOUT: 1},
    },
    "h2s-tests-export.xml": {
        "exit": 0,
        "records": 3,  # 2 Record + 1 Workout
        "types": {BMI: 1, HR: 1, WORKOUT: 1},
        "rejected": {},
        "raw": {BMI: 1, HR: 1, WORKOUT: 1},
    },
    "h2s-zip-contents-export.xml": {
        "exit": 0,
        "records": 3,  # 2 Record + 1 Workout
        "types": {BMI: 1, HR: 1, WORKOUT: 1},
        "rejected": {},
        "raw": {BMI: 1, HR: 1, WORKOUT: 1},
    },
    "ahp-export.xml": {
        "exit": 0,
        "records": 8,  # 8 Record
        "types": {SLEEP: 2, ACTIVE: 2, HR: 2, "HKQuantityTypeIdentifierAppleExerciseTime": 1,
                  "HKQuantityTypeIdentifierAppleStandTime": 1},
        "rejected": {},
        "raw": {SLEEP: 2, ACTIVE: 2, HR: 2},
    },
    "opendroid-v11-clinical-hrv.xml": {
        "exit": 0,
        "records": 6,  # 5 Record + 1 Workout (6 ClinicalRecord, 17 ActivitySummary are not records)
        "types": {BMI: 4, HRV: 1, WORKOUT: 1},
        "rejected": {},
        "raw": {BMI: 4, HRV: 1, WORKOUT: 1},
    },
    "opendroid-v11-audiogram-units.xml": {
        "exit": 0,
        "records": 42,  # 37 Record + 5 Workout (the Audiogram element is not a Record)
        "types": {BODY_MASS: 7, WORKOUT: 5, "HKQuantityTypeIdentifierWalkingStepLength": 4, STEPS: 3,
                  "HKQuantityTypeIdentifierWalkingDoubleSupportPercentage": 3, WALKING_HR: 3,
                  "HKQuantityTypeIdentifierBodyFatPercentage": 2, BMI: 2, DISTANCE: 2,
                  "HKQuantityTypeIdentifierLeanBodyMass": 2, "HKQuantityTypeIdentifierWalkingAsymmetryPercentage": 2,
                  "HKQuantityTypeIdentifierWalkingSpeed": 2, "HKCategoryTypeIdentifierAppleStandHour": 1,
                  "HKQuantityTypeIdentifierEnvironmentalAudioExposure": 1, HEIGHT: 1, VO2MAX: 1, "c": 1},
        # TODO(lead): lines 217 (type "c") and 218 (EnvironmentalAudioExposure) start 2021-01-22 19:21:01 -0800,
        # after the ExportDate 17:37:58 -0800; both are of unmapped types. Whether they count as "dated after
        # the export" rejections depends on the order of the checks, so rejections are not asserted here.
        "raw": {BODY_MASS: 7, WORKOUT: 5, STEPS: 3, WALKING_HR: 3, BMI: 2, DISTANCE: 2, HEIGHT: 1, VO2MAX: 1},
    },
    "ahcd-v11-bp-correlation.xml": {
        "exit": 0,
        "records": 10,  # 9 Record + 1 Correlation
        "types": {"HKQuantityTypeIdentifierBloodPressureSystolic": 6, BMI: 2,
                  "HKCorrelationTypeIdentifierBloodPressure": 1, HR: 1},
        "rejected": {},
        "raw": {BMI: 2, HR: 1},
    },
    "grll-v14-mixed.xml": {
        "exit": 0,
        "records": 29,  # 26 Record + 1 Correlation + 2 Workout (3 ActivitySummary are not records)
        "types": {HR: 3, SLEEP: 2, GLUCOSE: 2, BODY_MASS: 2, BMI: 2, STEPS: 2, WORKOUT: 2,
                  "HKCategoryTypeIdentifierAppleStandHour": 1, "HKCategoryTypeIdentifierMindfulSession": 1,
                  "HKCorrelationTypeIdentifierBloodPressure": 1, ACTIVE: 1,
                  "HKQuantityTypeIdentifierAppleSleepingWristTemperature": 1, BASAL: 1,
                  "HKQuantityTypeIdentifierBodyFatPercentage": 1, DISTANCE: 1, HRV: 1, HEIGHT: 1, SPO2: 1,
                  RESPIRATORY: 1, RESTING_HR: 1, VO2MAX: 1},
        # SpO2 value="98" unit="%" is 9,800 % as HealthKit writes fractions (the file's author edited it): out of
        # range. VO2Max unit "mL/kg·min" is the same unit as "mL/min·kg" (both mL/min/kg): read.
        "rejected": {OUT_OF_RANGE: 1},
        "raw": {HR: 3, GLUCOSE: 2, BODY_MASS: 2, BMI: 2, STEPS: 2, WORKOUT: 2, ACTIVE: 1, BASAL: 1, DISTANCE: 1,
                HRV: 1, HEIGHT: 1, RESPIRATORY: 1, RESTING_HR: 1, VO2MAX: 1},
    },
    "nreyrolle-ios18-workouts.xml": {
        "exit": 0,
        "records": 50,  # 39 Record + 11 Workout
        "types": {HR: 14, BODY_MASS: 12, WORKOUT: 11, VO2MAX: 10, RESTING_HR: 3},
        # the running Workout of line 114 starts 2026-03-29 09:32:42 +0200, after the ExportDate 2026-01-20
        # 22:00:00 +0100 that SOURCES.md's envelope wrote: by the rule it is dated after the export
        "rejected": {AFTER_EXPORT: 1},
        "raw": {HR: 14, BODY_MASS: 12, WORKOUT: 10, VO2MAX: 10, RESTING_HR: 3},
    },
    "sensanalytics-readme-excerpt.xml": {
        "exit": 0,
        "records": 8,  # 8 Record, no ExportDate
        "types": {"HKQuantityTypeIdentifierEnvironmentalSoundReduction": 3, HR: 2, SPO2: 2, HRV: 1},
        "rejected": {},  # SpO2 "1" and "0.96" with unit % are fractions: 100 % and 96 %
        "raw": {HR: 2, SPO2: 2, HRV: 1},
    },
    "paulstaab-handwritten-workouts.xml": {
        "exit": 0,
        "records": 13,  # 8 Workout + 5 Record
        "types": {WORKOUT: 8, HR: 5},
        "rejected": {UNKNOWN_UNIT: 5},  # the 5 heart-rate records have no unit attribute (hand-written fixture)
        "raw": {WORKOUT: 8},
    },
}

# The zips hold byte-identical copies of these XML files (SOURCES.md): same exit code and records read.
ZIPS = {
    "ahp-export.zip": "ahp-export.xml",
    "ashtom-hkimport-v3-2017.zip": "ashtom-hkimport-v3-2017.xml",
    "ericwolter-2015-de_DE-Exportieren.zip": "ericwolter-2015-de_DE-Exportieren.xml",
    "h2s-zip-contents.zip": "h2s-zip-contents-export.xml",
    "jdecool-v8-fr_FR-exporter.zip": "jdecool-v8-fr_FR-exporter.xml",
    "rgosdin-v8-ios12.zip": "rgosdin-v8-ios12.xml",  # export_cda.xml comes first in this zip
}
NOT_HEALTH_DATA = "rgosdin-v8-ios12-export_cda.xml"  # an HL7 CDA document: not an Apple Health export


# ---------------------------------------------------------------------------------------------------------------
# Running the import once per (file, options)


@dataclass
class Run:
    """The outcome of one import: exit code, report text and what was written."""

    rc: int | None
    stdout: str
    stderr: str
    crash: str | None = None
    out: Path | None = None
    observations: list[dict[str, Any]] = field(default_factory=list)
    devices: list[dict[str, Any]] = field(default_factory=list)
    patients: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)

    def ok(self) -> None:
        """Fail with the crash (exception type only) when the import raised instead of returning."""
        assert self.crash is None, f"the import raised {self.crash}"

    @property
    def records_read(self) -> int:
        match = re.search(r"^Read ([\d,]+) records from", self.stdout, re.MULTILINE)
        assert match, "the report has no 'Read N records from' line"
        return int(match.group(1).replace(",", ""))

    @property
    def types_read(self) -> dict[str, int]:
        lines = self.stdout.splitlines()
        start = next(i for i, line in enumerate(lines) if line.strip() == "records per type:") + 1
        counts: dict[str, int] = {}
        for line in lines[start:]:
            match = re.fullmatch(r"\s+([\d,]+)\s+(\S+)", line)
            if not match:
                break
            counts[match.group(2)] = int(match.group(1).replace(",", ""))
        return counts


def _where_it_crashed(exc: BaseException) -> str:
    """The exception type and the innermost frame (never the message: it may quote a value)."""
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f" at {Path(frame.filename).name}:{frame.lineno}" if frame else ""
    detail = f" ({exc.name})" if isinstance(exc, ImportError) else ""
    return f"{type(exc).__name__}{detail}{where}"


def _read_ndjson(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """``run(name, *options)``: import a sample file (or a path) once per session and option set."""
    cache: dict[tuple[str, tuple[str, ...]], Run] = {}

    def do(name: str | Path, *options: str) -> Run:
        key = (str(name), options)
        if key in cache:
            return cache[key]
        source = name if isinstance(name, Path) else SAMPLES / name
        out = tmp_path_factory.mktemp("real") / "out"
        argv = ["import", str(source), "--patient", "Patient/p1", "--out", str(out), "--no-progress",
                "--raw", "all", *options]
        stdout, stderr = io.StringIO(), io.StringIO()
        rc: int | None = None
        crash = None
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                rc = main(argv)
            except SystemExit as exc:  # argparse: an option this wearfhir does not know yet
                rc = exc.code if isinstance(exc.code, int) else 2
            except Exception as exc:  # noqa: BLE001 - recorded so that each test fails with the cause named
                crash = _where_it_crashed(exc)
        result = Run(rc, stdout.getvalue(), stderr.getvalue(), crash, out,
                     _read_ndjson(out / "Observation.ndjson"), _read_ndjson(out / "Device.ndjson"),
                     _read_ndjson(out / "Patient.ndjson"), _read_ndjson(out / "rejected.ndjson"))
        cache[key] = result
        return result

    return do


# ---------------------------------------------------------------------------------------------------------------
# Reading what was written


def _codes(concept: dict[str, Any], system: str | None = None) -> list[str]:
    return [c.get("code", "") for c in concept.get("coding", []) if system is None or c.get("system") == system]


def _kind(obs: dict[str, Any]) -> str:
    """``sample`` (a raw Observation) or ``summary``, from the identifier system."""
    return obs["identifier"][0]["system"].rsplit("/", 1)[-1]


def raw(result: Run, apple_type: str | None = None) -> list[dict[str, Any]]:
    """Raw Observations, optionally only those of one Apple type."""
    return [o for o in result.observations if _kind(o) == "sample"
            and (apple_type is None or apple_type in _codes(o["code"], APPLE))]


def summaries(result: Run, metric: str, window: str) -> list[dict[str, Any]]:
    """Summary Observations of a metric and window (``hour``, ``day``, ``night``), from the identifier value
    ``patient|metric|window|start|statistics`` (DESIGN §3: the canonical value names metric and window)."""
    found = []
    for obs in result.observations:
        if _kind(obs) != "summary":
            continue
        parts = obs["identifier"][0]["value"].split("|")
        if len(parts) >= 3 and parts[1] == metric and parts[2] == window:
            found.append(obs)
    return found


def start(obs: dict[str, Any]) -> datetime:
    text = obs.get("effectiveDateTime") or obs["effectivePeriod"]["start"]
    return datetime.fromisoformat(text)


def end(obs: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(obs["effectivePeriod"]["end"]) if "effectivePeriod" in obs else start(obs)


def written(text: str) -> datetime:
    """A date as an export writes it (``2017-05-17 22:51:01 +0200``)."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S %z")


def one_raw(result: Run, apple_type: str, begins: datetime, ends: datetime | None = None) -> dict[str, Any]:
    """The single raw Observation of a type starting (and ending) at these instants."""
    found = [o for o in raw(result, apple_type) if start(o) == begins and (ends is None or end(o) == ends)]
    assert len(found) == 1, f"{len(found)} raw {apple_type} Observations at {begins.astimezone(UTC)}"
    return found[0]


def value(obs: dict[str, Any]) -> float:
    return float(obs["valueQuantity"]["value"])


def stat(obs: dict[str, Any], code: str) -> Any:
    """The value of the component coded with observation-statistics ``code`` (``count``, ``minimum`` …)."""
    for comp in obs.get("component", []):
        if code in _codes(comp["code"], "http://terminology.hl7.org/CodeSystem/observation-statistics"):
            return comp.get("valueInteger", comp.get("valueQuantity", {}).get("value"))
    raise AssertionError(f"no {code} component")


def local_day(obs: dict[str, Any], zone: Any) -> date:
    """The local day a day-long summary covers (its start is local midnight in ``zone``)."""
    begins = start(obs).astimezone(zone)
    assert begins.time() == datetime.min.time(), f"a day window starting at {begins.isoformat()}"
    assert end(obs).astimezone(zone) == datetime.combine(begins.date() + timedelta(days=1), begins.time(), zone)
    return begins.date()


def no_float_noise(number: float) -> bool:
    """True when the shortest repr of the number has no run of 0s or 9s that a float product leaves behind."""
    return not re.search(r"\.\d*(0000000|9999999)\d*$", repr(number))


# ---------------------------------------------------------------------------------------------------------------
# 11. Every file: exit code, records read, rejections by reason, raw Observations, valid FHIR


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_exit_code_records_and_rejections(run: Any, name: str) -> None:
    expected = EXPECTED[name]
    result = run(name)
    result.ok()
    assert result.rc == expected["exit"], f"{name}: exit {result.rc}"
    assert result.records_read == expected["records"], name
    types = result.types_read
    assert {t: types.get(t, 0) for t in expected["types"]} == expected["types"], name
    if name != "ashtom-hkimport-v3-2017.xml":  # the table lists a selection of ashtom's types
        assert set(types) == set(expected["types"]), name
    if "rejected" in expected:
        reasons = Counter(r["reason"] for r in result.rejected)
        got = {fragment: sum(c for reason, c in reasons.items() if fragment in reason)
               for fragment in expected["rejected"]}
        assert got == expected["rejected"], f"{name}: rejections {dict(reasons)}"
        assert sum(reasons.values()) == sum(expected["rejected"].values()), f"{name}: rejections {dict(reasons)}"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_raw_observations_per_type(run: Any, name: str) -> None:
    result = run(name)
    result.ok()
    got = Counter(code for o in raw(result) for code in _codes(o["code"], APPLE))
    assert {t: got.get(t, 0) for t in EXPECTED[name]["raw"]} == EXPECTED[name]["raw"], name


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_written_resource_is_valid_fhir(run: Any, name: str) -> None:
    result = run(name)
    result.ok()
    assert result.observations, f"{name}: no Observation written"
    problems = []
    for resource in [*result.observations, *result.devices, *result.patients]:
        problems.extend(f"{resource['resourceType']}/{resource.get('id')}: {p}" for p in validate_resource(resource))
    assert not problems, f"{name}: {len(problems)} problems, e.g. {problems[:3]}"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_rejections_name_a_line_never_a_value(run: Any, name: str) -> None:
    result = run(name)
    result.ok()
    for rejection in result.rejected:
        assert re.fullmatch(r"line \d+", rejection["where"]), rejection["where"]


@pytest.mark.parametrize("zip_name", sorted(ZIPS))
def test_zip_reads_like_its_xml(run: Any, zip_name: str) -> None:
    xml = EXPECTED[ZIPS[zip_name]]
    result = run(zip_name)
    result.ok()
    assert result.rc == xml["exit"], zip_name
    assert result.records_read == xml["records"], zip_name


def test_a_cda_document_is_not_an_export(run: Any) -> None:
    result = run(NOT_HEALTH_DATA)
    result.ok()
    assert result.rc == 2
    assert "HealthData" in result.stderr


# ---------------------------------------------------------------------------------------------------------------
# 1. Time zones

JERUSALEM = ZoneInfo("Asia/Jerusalem")

# HR records of ashtom (all Connect, all instants, no HKTimeZone on any of them; the export's records name
# Asia/Jerusalem 19 times and no other zone) counted per Asia/Jerusalem day of their startDate with zoneinfo.
# No exact duplicates among them. Israel's DST ended 2017-10-27 02:00, so days up to the 26th are +03:00:
# by the written +0200 the 23rd, 24th and 25th would hold 414, 718 and 262.
ASHTOM_HR_PER_DAY = {
    "2017-10-09": 19, "2017-10-10": 4, "2017-10-11": 2, "2017-10-15": 6, "2017-10-16": 37, "2017-10-17": 2,
    "2017-10-18": 20, "2017-10-19": 3, "2017-10-22": 176, "2017-10-23": 412, "2017-10-24": 690, "2017-10-25": 292,
    "2017-10-27": 58, "2017-10-28": 2, "2017-10-29": 160, "2017-10-30": 294,
}
# Steps of ashtom around 17 May 2017: one source only ("Jonathan's iPhone": no Watch, no other app on these days,
# no overlap, no duplicate). Four records written 2017-05-17 23:00:59-23:30:00 +0200 (1,108 + 879 + 759 + 87 =
# 2,833 steps) are on 18 May in Jerusalem (+03:00). The record of line 3622 (22:51:01-23:00:59 +0200, 597 steps)
# crosses local midnight: 539 of its 598 s are on the 17th. Totals prorated by seconds with zoneinfo:
ASHTOM_STEPS_PER_DAY = {
    "2017-05-16": 1_997.0,  # no record near midnight
    "2017-05-17": 12_454.099,  # 12,513 by local start - 597 * 59 / 598 (15,346 by the written offset)
    "2017-05-18": 3_804.901,
}


def test_ashtom_daily_heart_rate_counts_per_jerusalem_day(run: Any) -> None:
    result = run("ashtom-hkimport-v3-2017.xml")
    result.ok()
    days = [o for o in summaries(result, "heart_rate", "day") if "8867-4" in _codes(o["code"], LOINC)]
    got = {local_day(o, JERUSALEM).isoformat(): stat(o, "count") for o in days}
    assert got == ASHTOM_HR_PER_DAY


def test_ashtom_daily_steps_on_the_right_day(run: Any) -> None:
    result = run("ashtom-hkimport-v3-2017.xml")
    result.ok()
    days = [o for o in summaries(result, "steps", "day") if "41950-7" in _codes(o["code"], LOINC)]
    got = {local_day(o, JERUSALEM).isoformat(): value(o) for o in days}
    for day, total in ASHTOM_STEPS_PER_DAY.items():
        assert got.get(day) == pytest.approx(total, abs=0.51), day  # steps may be written as whole numbers


def test_ashtom_raw_times_in_jerusalem_offset(run: Any) -> None:
    result = run("ashtom-hkimport-v3-2017.xml")
    result.ok()
    # line 3622: startDate 2017-05-17 22:51:01 +0200, endDate 2017-05-17 23:00:59 +0200, 597 steps
    obs = one_raw(result, STEPS, written("2017-05-17 22:51:01 +0200"), written("2017-05-17 23:00:59 +0200"))
    assert obs["effectivePeriod"] == {"start": "2017-05-17T23:51:01+03:00", "end": "2017-05-18T00:00:59+03:00"}
    assert value(obs) == 597


def test_opendroid_summer_sample_written_in_pacific_daylight_time(run: Any) -> None:
    # line 207: BodyMass from Renpho, 2020-04-18 05:52:26 -0800, 138 lb; the file names America/Los_Angeles
    # (HKTimeZone on two workouts) and no other zone: in April that is -07:00
    result = run("opendroid-v11-audiogram-units.xml")
    result.ok()
    obs = one_raw(result, BODY_MASS, written("2020-04-18 05:52:26 -0800"))
    assert obs["effectiveDateTime"] == "2020-04-18T06:52:26-07:00"


def test_ahp_sleep_in_its_own_zone(run: Any) -> None:
    # line 40: InBed 2024-01-01 00:55:28 +0200 with HKTimeZone=Europe/Amsterdam: 23:55:28+01:00 on New Year's Eve
    result = run("ahp-export.xml")
    result.ok()
    obs = one_raw(result, SLEEP, written("2024-01-01 00:55:28 +0200"))
    assert obs["effectivePeriod"]["start"] == "2023-12-31T23:55:28+01:00"


def test_no_zone_uses_the_written_offset_and_says_how_to_pass_one(run: Any) -> None:
    result = run("brianerdelyi-ios8-2015.xml")
    result.ok()
    fallback = [line for line in result.stdout.splitlines() if "--timezone" in line and "offset" in line]
    assert fallback, "no report line saying windows follow the written offset and how to pass --timezone"
    # ashtom's records name Asia/Jerusalem: no such warning there
    named = run("ashtom-hkimport-v3-2017.xml")
    named.ok()
    assert not [line for line in named.stdout.splitlines() if "--timezone" in line and "offset" in line]


def test_timezone_option_gives_the_local_clock(run: Any) -> None:
    # ericwolter en_DE writes +0100 on every date (no HKTimeZone anywhere); line 82: heart rate
    # 2015-05-31 16:19:00 +0100 -> 2015-06-01 16:19:00 +0100: with --timezone Europe/Berlin that is 17:19+02:00
    result = run("ericwolter-2015-en_DE-export.xml", "--timezone", "Europe/Berlin")
    result.ok()
    assert result.rc == 0
    begins = datetime(2015, 5, 31, 15, 19, tzinfo=UTC)
    obs = one_raw(result, HR, begins, begins + timedelta(days=1))
    assert obs["effectivePeriod"] == {"start": "2015-05-31T17:19:00+02:00", "end": "2015-06-01T17:19:00+02:00"}


# ---------------------------------------------------------------------------------------------------------------
# 2. A run of malformed records


def test_ericwolter_de_malformed_records_listed_with_their_lines(run: Any) -> None:
    result = run("ericwolter-2015-de_DE-Exportieren.xml")
    result.ok()
    lines = sorted(int(r["where"].split()[1]) for r in result.rejected if MALFORMED in r["reason"])
    # by hand (each <Record line parsed alone with lxml): 5-18, 21-33, 114-125, 1542-2822, then line 2823 is fine
    expected = [*range(5, 19), *range(21, 34), *range(114, 126), *range(1542, 2823)]
    assert len(expected) == 1_320
    assert lines == expected


# ---------------------------------------------------------------------------------------------------------------
# 3. iOS 8/9 compact dates and attributes


def test_brianerdelyi_compact_dates(run: Any) -> None:
    # line 11: startDate="20140107104300-0800" endDate="20140107114300-0800" value="142"
    result = run("brianerdelyi-ios8-2015.xml")
    result.ok()
    begins = datetime(2014, 1, 7, 10, 43, tzinfo=timezone(timedelta(hours=-8)))
    obs = one_raw(result, STEPS, begins, begins + timedelta(hours=1))
    assert obs["effectivePeriod"] == {"start": "2014-01-07T10:43:00-08:00", "end": "2014-01-07T11:43:00-08:00"}
    assert value(obs) == 142


def test_ericwolter_en_heart_rate_from_average_count_per_second(run: Any) -> None:
    # line 82: source="Sleep Cycle" unit="count/s" average="1.11667", 2015-05-31 16:19:00 +0100 for 24 h
    result = run("ericwolter-2015-en_DE-export.xml")
    result.ok()
    begins = datetime(2015, 5, 31, 16, 19, tzinfo=timezone(timedelta(hours=1)))
    obs = one_raw(result, HR, begins, begins + timedelta(days=1))
    assert obs["valueQuantity"]["code"] == "/min"
    assert value(obs) == pytest.approx(67.0002, abs=1e-9)  # 1.11667 * 60
    assert no_float_noise(value(obs))
    assert "Sleep Cycle" in json.dumps(obs.get("extension", []), ensure_ascii=False)  # source= is the source name


def test_ericwolter_en_writes_observations_and_reads_me(run: Any) -> None:
    result = run("ericwolter-2015-en_DE-export.xml")
    result.ok()
    assert result.rc == 0
    assert len(raw(result)) == sum(EXPECTED["ericwolter-2015-en_DE-export.xml"]["raw"].values())
    # Me: BiologicalSex="2" (HKBiologicalSexMale), DateOfBirth="19881029"
    assert [(p.get("gender"), p.get("birthDate")) for p in result.patients] == [("male", "1988-10-29")]


# ---------------------------------------------------------------------------------------------------------------
# 4. A run that writes nothing is a failure (synthetic exports written here)


def _tiny_export(path: Path, units: list[str]) -> Path:
    records = "\n".join(
        f' <Record type="{HR}" sourceName="Test" unit="{unit}" creationDate="2024-03-10 09:00:00 -0500" '
        f'startDate="2024-03-10 08:{i:02d}:00 -0500" endDate="2024-03-10 08:{i:02d}:00 -0500" value="{60 + i}"/>'
        for i, unit in enumerate(units))
    path.write_text('<?xml version="1.0" encoding="UTF-8"?>\n<HealthData locale="en_US">\n'
                    ' <ExportDate value="2024-03-11 08:00:00 -0500"/>\n' + records + "\n</HealthData>\n",
                    encoding="utf-8")
    return path


def test_all_rejected_is_a_failure(run: Any, tmp_path: Path) -> None:
    result = run(_tiny_export(tmp_path / "export.xml", ["furlong/fortnight"] * 3))
    result.ok()
    assert result.rc not in (0, None)
    assert UNKNOWN_UNIT in result.stdout  # the report says why


def test_more_than_half_rejected_is_a_failure(run: Any, tmp_path: Path) -> None:
    result = run(_tiny_export(tmp_path / "export.xml", ["count/min", "furlong/fortnight", "furlong/fortnight"]))
    result.ok()
    assert result.rc not in (0, None)
    assert UNKNOWN_UNIT in result.stdout


def test_a_few_rejected_is_a_success(run: Any, tmp_path: Path) -> None:
    result = run(_tiny_export(tmp_path / "export.xml", ["count/min"] * 3 + ["furlong/fortnight"]))
    result.ok()
    assert result.rc == 0
    assert len(raw(result, HR)) == 3


# ---------------------------------------------------------------------------------------------------------------
# 5. Long samples are prorated

# jdecool line 143: BasalEnergyBurned 18,087.8 kcal from 2018-10-28 02:25:14 +0100 to 2018-11-09 13:18:27 +0100
# (1,075,993 s). No record names a zone, so days follow the written +01:00: 13 days, 11 of them whole.
JDECOOL_BASAL = 18_087.8
JDECOOL_SECONDS = 1_075_993
JDECOOL_FULL_DAY = JDECOOL_BASAL * 86_400 / JDECOOL_SECONDS  # 1,452.4127
JDECOOL_FIRST_DAY = JDECOOL_BASAL * (86_400 - (2 * 3600 + 25 * 60 + 14)) / JDECOOL_SECONDS  # 1,305.93 (from 02:25:14)


def test_jdecool_basal_energy_spread_over_its_days(run: Any) -> None:
    result = run("jdecool-v8-fr_FR-exporter.xml")
    result.ok()
    plus_one = timezone(timedelta(hours=1))
    days = {local_day(o, plus_one): value(o) for o in summaries(result, "basal_energy", "day")}
    assert days, "no daily basal-energy summary"
    assert all(v != pytest.approx(JDECOOL_BASAL, abs=0.5) for v in days.values())
    assert len(days) == 13
    assert days[date(2018, 11, 1)] == pytest.approx(JDECOOL_FULL_DAY, abs=0.01)
    assert days[date(2018, 10, 28)] == pytest.approx(JDECOOL_FIRST_DAY, abs=0.01)
    assert sum(days.values()) == pytest.approx(JDECOOL_BASAL, abs=0.01)


# rgosdin line 144: 150 steps 2019-05-15 13:59:05 -> 14:07:38 -0400 (513 s, 55 s before 14:00). One source
# ("Ryan Phone"), no overlapping step samples. Hourly totals prorated by seconds over every step record; the
# zone is America/New_York (named by the 3 sleep records), -04:00 in May like every written date.
RGOSDIN_HOURS = {
    datetime(2019, 5, 15, 13, tzinfo=timezone(timedelta(hours=-4))): 1_155.0819,  # 1,289 by start hour
    datetime(2019, 5, 15, 14, tzinfo=timezone(timedelta(hours=-4))): 176.9181,  # 43 by start hour
}


def test_rgosdin_hourly_steps_prorated(run: Any) -> None:
    result = run("rgosdin-v8-ios12.xml")
    result.ok()
    hours = {start(o): value(o) for o in summaries(result, "steps", "hour")}
    for hour, total in RGOSDIN_HOURS.items():
        assert hours.get(hour) == pytest.approx(total, abs=0.51), hour.isoformat()


# ---------------------------------------------------------------------------------------------------------------
# 6. Distinct vs duplicate (ashtom)


def test_ashtom_same_time_distances_are_distinct(run: Any) -> None:
    # lines 6733 and 6736: Health, km, 2017-03-05 16:47:00 +0200 (instant), values 8 and 9
    result = run("ashtom-hkimport-v3-2017.xml")
    result.ok()
    at = written("2017-03-05 16:47:00 +0200")
    found = [o for o in raw(result, DISTANCE) if start(o) == at]
    assert sorted(value(o) for o in found) == [8_000, 9_000]
    assert len({o["id"] for o in found}) == 2


def test_ashtom_in_bed_and_asleep_of_one_interval_both_kept(run: Any) -> None:
    # Pillow, 2017-06-19 21:41:16 -> 2017-06-20 06:27:51 +0200: one InBed and one Asleep record
    result = run("ashtom-hkimport-v3-2017.xml")
    result.ok()
    found = [o for o in raw(result, SLEEP) if start(o) == written("2017-06-19 21:41:16 +0200")]
    values = sorted(c for o in found for c in _codes(o["valueCodeableConcept"], APPLE))
    assert values == ["HKCategoryValueSleepAnalysisAsleep", "HKCategoryValueSleepAnalysisInBed"]
    assert len({o["id"] for o in found}) == 2


def test_ashtom_report_counts_duplicates_and_same_time_records_apart(run: Any) -> None:
    # exact duplicates dropped / distinct records sharing type, source and times with another record:
    # distance 77 / 5, active energy 76 / 2, sleep 1 / 1 (counted by hand, see EXPECTED)
    # (the report's wording: "77 exact duplicates dropped; 5 same-time records with another value kept as distinct")
    result = run("ashtom-hkimport-v3-2017.xml")
    result.ok()
    for metric, dropped, distinct in (("distance_walking_running", 77, 5), ("active_energy", 76, 2),
                                      ("sleep", 1, 1)):
        line = next((x for x in result.stdout.splitlines() if re.search(rf"\s{metric}\b", x) and "duplicate" in x),
                    "")
        assert re.search(rf"\b{dropped} [^;)]*duplicates? dropped", line), f"{metric}: {line.strip()!r}"
        assert re.search(rf"\b{distinct} [^;)]*distinct", line), f"{metric}: {line.strip()!r}"


# ---------------------------------------------------------------------------------------------------------------
# 7. Future-dated records


def test_rgosdin_records_of_2030_rejected(run: Any) -> None:
    result = run("rgosdin-v8-ios12.xml")
    result.ok()
    later = sorted(r["where"] for r in result.rejected if AFTER_EXPORT in r["reason"])
    assert later == ["line 1392", "line 2980"]  # grep 2030-01-06: a step and a distance record
    assert not [o for o in raw(result) if start(o).year == 2030]


# ---------------------------------------------------------------------------------------------------------------
# 8. Workouts


def _workout(result: Run, begins: datetime) -> dict[str, Any]:
    return one_raw(result, WORKOUT, begins)


def _distances(obs: dict[str, Any]) -> list[tuple[dict[str, Any], float]]:
    """Distance components of a workout Observation, in metres."""
    factor = {"m": 1.0, "km": 1000.0}
    return [(c, float(c["valueQuantity"]["value"]) * factor[c["valueQuantity"]["code"]])
            for c in obs.get("component", []) if c.get("valueQuantity", {}).get("code") in factor]


def _names(component: dict[str, Any]) -> str:
    concept = component["code"]
    return " ".join([concept.get("text", ""), *(f"{c.get('code', '')} {c.get('display', '')}"
                                               for c in concept.get("coding", []))]).lower()


@pytest.mark.parametrize(("name", "when", "activity", "metres"), [
    # nreyrolle line 182: Cycling, WorkoutStatistics DistanceCycling sum 18.9895 km
    ("nreyrolle-ios18-workouts.xml", "2025-07-14 16:39:21 +0100", "cycling", 18_989.5),
    # nreyrolle line 1350: Swimming, WorkoutStatistics DistanceSwimming sum 750 m
    ("nreyrolle-ios18-workouts.xml", "2025-09-13 15:39:17 +0100", "swimming", 750.0),
    # grll line 294: Cycling, totalDistance 12.5 km
    ("grll-v14-mixed.xml", "2020-05-28 14:55:22 +0100", "cycling", 12_500.0),
])
def test_workout_distance_coded_by_activity(run: Any, name: str, when: str, activity: str, metres: float) -> None:
    result = run(name)
    result.ok()
    distances = _distances(_workout(result, written(when)))
    assert len(distances) == 1, f"{len(distances)} distance components"
    component, got = distances[0]
    assert got == pytest.approx(metres, abs=1e-6)
    assert activity in _names(component)
    assert "41953-1" not in _codes(component["code"]) and "walking" not in _names(component)


@pytest.mark.parametrize(("name", "when"), [
    ("nreyrolle-ios18-workouts.xml", "2025-09-15 18:28:29 +0100"),  # line 1334: FunctionalStrengthTraining
])
def test_strength_workout_has_no_distance(run: Any, name: str, when: str) -> None:
    result = run(name)
    result.ok()
    assert _distances(_workout(result, written(when))) == []


def test_no_zero_distance_component_anywhere(run: Any) -> None:
    # ashtom: 2 FunctionalStrength and other workouts with totalDistance="0" (not measured); opendroid: 3 Lose It!
    # workouts with totalDistance="0"; tdda: an "Other" workout with totalDistance="0"
    for name in ("ashtom-hkimport-v3-2017.xml", "opendroid-v11-audiogram-units.xml", "tdda-v3-en_GB-6s.xml"):
        result = run(name)
        result.ok()
        zero = [o["id"] for o in raw(result, WORKOUT) for _, metres in _distances(o) if metres == 0]
        assert not zero, f"{name}: {len(zero)} workouts with a 0 m distance"


# ---------------------------------------------------------------------------------------------------------------
# 9. Codes and devices


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_24_hour_distance_code_only_on_daily_totals(run: Any, name: str) -> None:
    result = run(name)
    result.ok()
    for obs in result.observations:
        if "41953-1" in _codes(obs["code"], LOINC):
            parts = obs["identifier"][0]["value"].split("|")
            assert _kind(obs) == "summary" and parts[2] == "day", f"{name}: 41953-1 on {obs['code'].get('text')}"
        for comp in obs.get("component", []):
            assert "41953-1" not in _codes(comp["code"], LOINC) or _kind(obs) == "summary", name


def test_one_watch_one_device(run: Any) -> None:
    # opendroid clinical-hrv: lines 185 (manufacturer:Apple, software 5.1.2) and 213 (manufacturer:Apple Inc.,
    # software 7.1) are the same Watch4,2; no other device= attribute in the file
    result = run("opendroid-v11-clinical-hrv.xml")
    result.ok()
    assert len(result.devices) == 1
    device = {o["device"]["reference"] for o in result.observations if "device" in o}
    assert device == {f"Device/{result.devices[0]['id']}"}


@pytest.mark.parametrize(("name", "old_types"), [
    ("ashtom-hkimport-v3-2017.xml", ["Dietary", "NikeFuel"]),
    ("ericwolter-2015-de_DE-Exportieren.xml", ["NikeFuel"]),
    ("rgosdin-v8-ios12.xml", ["UVExposure"]),
])
def test_old_types_are_known_not_mapped(run: Any, name: str, old_types: list[str]) -> None:
    result = run(name)
    result.ok()
    lines = result.stdout.splitlines()
    unknown: list[str] = []
    for i, line in enumerate(lines):
        if "unknown type" in line:
            unknown.extend(x for x in lines[i + 1:] if re.fullmatch(r"\s+[\d,]+\s+\S+", x))
            break
    assert not [x for x in unknown if any(t in x for t in old_types)], f"{name}: old types reported as unknown"
    assert "not mapped" in result.stdout


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_no_sleep_duration_without_a_value(run: Any, name: str) -> None:
    result = run(name)
    result.ok()
    empty = [o["id"] for o in result.observations
             if "93832-4" in _codes(o["code"], LOINC) and "valueQuantity" not in o]
    assert not empty, f"{name}: {len(empty)} sleep-duration Observations without a value"


# ---------------------------------------------------------------------------------------------------------------
# 10. Values as measured


@pytest.mark.parametrize(("name", "apple_type", "when", "source_value"), [
    ("jdecool-v8-fr_FR-exporter.xml", HRV, "2018-11-19 08:33:39 +0100", 25.5526),  # ms, line with value="25.5526"
    ("nreyrolle-ios18-workouts.xml", BODY_MASS, "2021-06-09 21:39:00 +0100", 77.8002),  # kg
    ("ashtom-hkimport-v3-2017.xml", BODY_MASS, "2017-03-16 09:57:00 +0200", 70.3068),  # kg
    ("grll-v14-mixed.xml", BMI, "2023-12-03 22:38:45 +0100", 21.3294),  # count = kg/m2
    ("brianerdelyi-ios8-2015.xml", DISTANCE, None, 108.65),  # m, line 278 (10:43-11:43 on 7 Jan 2014)
    ("sensanalytics-readme-excerpt.xml", HRV, "2021-03-27 16:17:11 +1100", 45.1937),  # ms
])
def test_unconverted_value_written_exactly(run: Any, name: str, apple_type: str, when: str | None,
                                          source_value: float) -> None:
    result = run(name)
    result.ok()
    begins = written(when) if when else datetime(2014, 1, 7, 10, 43, tzinfo=timezone(timedelta(hours=-8)))
    assert value(one_raw(result, apple_type, begins)) == source_value


@pytest.mark.parametrize(("name", "apple_type", "when", "exact", "resolution"), [
    # opendroid line 207: 138 lb (resolution 1 lb) = 62.59574706 kg (0.45359237 kg/lb, exact by definition)
    ("opendroid-v11-audiogram-units.xml", BODY_MASS, "2020-04-18 05:52:26 -0800", 62.59574706, 0.45359237),
    # opendroid line 208: 138.8 lb (resolution 0.1 lb) = 62.958221 kg
    ("opendroid-v11-audiogram-units.xml", BODY_MASS, "2020-04-17 05:57:55 -0800", 62.958220956, 0.045359237),
    # ashtom (lark, 2017-07-11 10:12-10:14 +0200): 0.0134083 km = 13.4083 m; 0.0947522 km = 94.7522 m
    ("ashtom-hkimport-v3-2017.xml", DISTANCE, "2017-07-11 10:12:00 +0200", 13.4083, 1e-4),
])
def test_converted_value_without_float_noise(run: Any, name: str, apple_type: str, when: str, exact: float,
                                            resolution: float) -> None:
    result = run(name)
    result.ok()
    found = [o for o in raw(result, apple_type) if start(o) == written(when)]
    assert found, "no Observation at that time"
    closest = min((value(o) for o in found), key=lambda v: abs(v - exact))
    assert abs(closest - exact) <= resolution / 2  # no coarser than the source's own last digit
    assert no_float_noise(closest)
