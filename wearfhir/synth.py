"""A realistic synthetic Apple Health export, with the traps real exports have (for demo, tests, bench).

Shapes follow real ``export.xml`` files: a DTD header (iOS 16's broken one by default), ``Me``, dense
Watch streams (heart rate, energy, steps, distance), iPhone steps overlapping the Watch's, spot
measurements (weight in lb, temperature in °F, SpO₂ as a fraction, glucose in ``mmol<…>/L`` and a
Dexcom CGM in mg/dL), blood-pressure correlations whose children also appear at top level, sleep stages,
workouts with ``WorkoutStatistics``, and local times with offsets across both DST changes. A small share
of records carries bad input: unknown types, empty and non-numeric values, reversed dates, duplicates,
stray U+000B characters. No real person's data is in it.
"""

from __future__ import annotations

import io
import random
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import IO
from xml.sax.saxutils import quoteattr
from zoneinfo import ZoneInfo

__all__ = ["SynthSpec", "iter_export_lines", "write_export", "write_export_xml"]

_DTD = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE HealthData [
<!-- HealthKit Export Version: 12 -->
<!ELEMENT HealthData (ExportDate,Me,(Record|Correlation|Workout|ActivitySummary|ClinicalRecord|VisionPrescription)*)>
<!ATTLIST HealthData
  locale CDATA #REQUIRED
>
<!ELEMENT ExportDate EMPTY>
<!ATTLIST ExportDate
  value CDATA #REQUIRED
>
<!ELEMENT Me EMPTY>
<!ATTLIST Me
  HKCharacteristicTypeIdentifierDateOfBirth         CDATA #REQUIRED
  HKCharacteristicTypeIdentifierBiologicalSex       CDATA #REQUIRED
>
<!ELEMENT Record ((MetadataEntry|HeartRateVariabilityMetadataList)*)>
<!ATTLIST Record
  type          CDATA #REQUIRED
  unit          CDATA #IMPLIED
  value         CDATA #IMPLIED
  sourceName    CDATA #REQUIRED
  sourceVersion CDATA #IMPLIED
  device        CDATA #IMPLIED
  creationDate  CDATA #IMPLIED
  startDate     CDATA #REQUIRED
  endDate       CDATA #REQUIRED
>
<!-- Note: Any Records that appear as children of a correlation also appear as top-level records in this document. -->
<!ELEMENT VisionPrescription ((RightEye|LeftEye|Attachment|MetadataEntry)*)>
<!ATTLIST VisionPrescription
  type             CDATA #REQUIRED
  dateIssued       CDATA #REQUIRED
  expirationDate   CDATA #IMPLIED
  brand            CDATA #IMPLIED

<!ELEMENT RightEye EMPTY>
]>
"""
_DTD_OK = _DTD.replace("  brand            CDATA #IMPLIED\n\n", "  brand            CDATA #IMPLIED\n>\n")

WATCH_NAME = "Zoë’s Apple Watch"
PHONE_NAME = "Zoë’s iPhone & more"
WATCH_DEVICE = ("<<HKDevice: 0x283a4b5c0>, name:Apple Watch, manufacturer:Apple Inc., model:Watch, "
                "hardware:Watch6,1, software:10.1>")
PHONE_DEVICE = ("<<HKDevice: 0x281f2c3d0>, name:iPhone, manufacturer:Apple Inc., model:iPhone, "
                "hardware:iPhone14,2, software:17.1>")
HK = "HKQuantityTypeIdentifier"


@dataclass(frozen=True)
class SynthSpec:
    """What to generate: about ``records`` records from ``start`` on, in ``timezone``."""

    records: int = 300_000
    start: date = date(2024, 10, 20)
    timezone: str = "America/New_York"
    seed: int = 7
    broken_dtd: bool = True
    traps: bool = True
    trap_every: int = 5_000


class _Clock:
    """Local wall-clock text with the UTC offset in force, as Apple writes it."""

    def __init__(self, tz: str) -> None:
        self.tz = ZoneInfo(tz)
        self._cache: dict[int, str] = {}

    def text(self, epoch: float) -> str:
        second = int(epoch)
        found = self._cache.get(second)
        if found is None:
            found = datetime.fromtimestamp(second, self.tz).strftime("%Y-%m-%d %H:%M:%S %z")
            if len(self._cache) > 200_000:
                self._cache.clear()
            self._cache[second] = found
        return found


def _record(rtype: str, source: str, device: str | None, unit: str | None, value: str | None,
            start: str, end: str, meta: dict[str, str] | None = None, version: str = "10.1") -> str:
    parts = [f' <Record type="{rtype}" sourceName={quoteattr(source)} sourceVersion="{version}"']
    if device:
        parts.append(f" device={quoteattr(device)}")
    if unit is not None:
        parts.append(f" unit={quoteattr(unit)}")
    parts.append(f' creationDate="{end}" startDate="{start}" endDate="{end}"')
    if value is not None:
        parts.append(f" value={quoteattr(value)}")
    if not meta:
        parts.append("/>\n")
        return "".join(parts)
    parts.append(">\n")
    parts.extend(f"  <MetadataEntry key={quoteattr(k)} value={quoteattr(v)}/>\n" for k, v in meta.items())
    parts.append(" </Record>\n")
    return "".join(parts)


def iter_export_lines(spec: SynthSpec) -> Iterator[str]:
    """The export.xml text, line by line (about ``spec.records`` records)."""
    rng = random.Random(spec.seed)
    clock = _Clock(spec.timezone)
    tz = clock.tz
    yield _DTD if spec.broken_dtd else _DTD_OK
    yield '<HealthData locale="en_US">\n'
    yield ' <ExportDate value="2025-06-01 09:00:00 -0400"/>\n'
    yield (' <Me HKCharacteristicTypeIdentifierDateOfBirth="1971-04-12" '
           'HKCharacteristicTypeIdentifierBiologicalSex="HKBiologicalSexFemale"/>\n')
    emitted = 0
    day = spec.start
    trap_countdown = spec.trap_every
    traps = 0
    while emitted < spec.records:
        midnight = datetime(day.year, day.month, day.day, tzinfo=tz).timestamp()
        next_midnight = datetime.combine(day + timedelta(days=1), datetime.min.time(), tz).timestamp()
        for line in _day_records(rng, clock, midnight, next_midnight, day):
            yield line
            emitted += 1
            trap_countdown -= 1
            if spec.traps and trap_countdown <= 0:
                trap_countdown = spec.trap_every
                yield _trap(clock, midnight, emitted, traps)
                traps += 1
                emitted += 1
        day += timedelta(days=1)
    yield ' <ActivitySummary dateComponents="2025-01-01" activeEnergyBurned="500" activeEnergyBurnedGoal="600"/>\n'
    yield "</HealthData>\n"


def _day_records(rng: random.Random, clock: _Clock, t0: float, t1: float, day: date) -> Iterator[str]:
    text = clock.text
    # heart rate: every ~4 minutes, Watch
    t = t0 + rng.uniform(0, 240)
    while t < t1:
        stamp = text(t)
        yield _record(f"{HK}HeartRate", WATCH_NAME, WATCH_DEVICE, "count/min", str(rng.randint(52, 150)),
                      stamp, stamp, {"HKMetadataKeyHeartRateMotionContext": "0"})
        t += rng.uniform(180, 300)
    # walking bouts: Watch and iPhone both count steps, energy, distance
    for _ in range(rng.randint(25, 40)):
        start = rng.uniform(t0 + 6 * 3600, t1 - 4 * 3600)
        length = rng.uniform(60, 600)
        steps = int(length * rng.uniform(1.2, 1.9))
        s, e = text(start), text(start + length)
        yield _record(f"{HK}StepCount", WATCH_NAME, WATCH_DEVICE, "count", str(steps), s, e)
        ps, pe = text(start + rng.uniform(-30, 30)), text(start + length + rng.uniform(-30, 30))
        if ps <= pe:
            yield _record(f"{HK}StepCount", PHONE_NAME, PHONE_DEVICE, "count",
                          str(int(steps * rng.uniform(0.9, 1.1))), ps, pe, version="17.1")
        yield _record(f"{HK}DistanceWalkingRunning", WATCH_NAME, WATCH_DEVICE, "mi",
                      f"{steps * 0.00047:.5f}", s, e)
    # active and basal energy: Watch writes short intervals all day
    t = t0
    while t < t1:
        length = rng.uniform(240, 420)
        s, e = text(t), text(min(t + length, t1 - 1))
        yield _record(f"{HK}ActiveEnergyBurned", WATCH_NAME, WATCH_DEVICE, "Cal", f"{rng.uniform(0.1, 9):.3f}", s, e)
        yield _record(f"{HK}BasalEnergyBurned", WATCH_NAME, WATCH_DEVICE, "kJ", f"{rng.uniform(20, 35):.3f}", s, e)
        t += length
    # CGM: Dexcom every 5 minutes, mg/dL
    t = t0 + 60
    while t < t1:
        stamp = text(t)
        yield _record(f"{HK}BloodGlucose", "Dexcom G7", None, "mg/dL",
                      str(int(max(40, min(400, rng.gauss(135, 45))))), stamp, stamp,
                      {"HKBloodGlucoseMealTime": "0"} if rng.random() < 0.01 else None, version="2.4")
        t += 300
    # spot measurements
    morning = text(t0 + 7 * 3600 + rng.uniform(0, 1800))
    yield _record(f"{HK}BodyMass", "Withings", None, "lb", f"{rng.uniform(150, 156):.1f}", morning, morning,
                  {"HKWasUserEntered": "0"}, version="6.2")
    yield _record(f"{HK}RestingHeartRate", WATCH_NAME, WATCH_DEVICE, "count/min", str(rng.randint(52, 64)),
                  text(t0 + 60), text(t1 - 60))
    yield _record(f"{HK}HeartRateVariabilitySDNN", WATCH_NAME, WATCH_DEVICE, "ms", f"{rng.uniform(20, 80):.4f}",
                  morning, morning)
    for hour in (2, 4):
        stamp = text(t0 + hour * 3600)
        yield _record(f"{HK}OxygenSaturation", WATCH_NAME, WATCH_DEVICE, "%",
                      rng.choice(["0.97", "0.96", "0.98", "1"]), stamp, stamp)
        yield _record(f"{HK}RespiratoryRate", WATCH_NAME, WATCH_DEVICE, "count/min", f"{rng.uniform(12, 18):.1f}",
                      stamp, stamp)
    noon = text(t0 + 12 * 3600)
    yield _record(f"{HK}BloodGlucose", "Contour", None, "mmol<180.1558800000541>/L",
                  f"{rng.uniform(4.5, 9.5):.2f}", noon, noon, {"HKWasUserEntered": "1"}, version="3.0")
    yield _record(f"{HK}BodyTemperature", "Kinsa", None, "degF", f"{rng.uniform(97.5, 99.5):.1f}", noon, noon,
                  version="5.1")
    if day.weekday() in (0, 3):
        yield from _blood_pressure(rng, text(t0 + 8 * 3600))
    yield from _sleep(rng, text, t0)
    if day.weekday() in (1, 5):
        yield _workout(rng, text, t0 + 17 * 3600)


def _blood_pressure(rng: random.Random, stamp: str) -> Iterator[str]:
    sys_v, dia_v = str(rng.randint(112, 142)), str(rng.randint(70, 92))
    children = [
        _record(f"{HK}BloodPressureSystolic", "Omron Connect", None, "mmHg", sys_v, stamp, stamp, version="7.0"),
        _record(f"{HK}BloodPressureDiastolic", "Omron Connect", None, "mmHg", dia_v, stamp, stamp, version="7.0"),
    ]
    yield from children  # top level, as Apple writes them
    inner = "".join(" " + c for c in children)
    yield (f' <Correlation type="HKCorrelationTypeIdentifierBloodPressure" sourceName="Omron Connect" '
           f'sourceVersion="7.0" creationDate="{stamp}" startDate="{stamp}" endDate="{stamp}">\n{inner}'
           " </Correlation>\n")


_STAGES = ["HKCategoryValueSleepAnalysisAsleepCore", "HKCategoryValueSleepAnalysisAsleepDeep",
           "HKCategoryValueSleepAnalysisAsleepCore", "HKCategoryValueSleepAnalysisAsleepREM",
           "HKCategoryValueSleepAnalysisAwake"]


def _sleep(rng: random.Random, text: object, t0: float) -> Iterator[str]:
    fmt = text  # a _Clock.text bound method
    bed = t0 - 2 * 3600 + rng.uniform(-1800, 1800)  # the evening before
    wake = t0 + 6.5 * 3600 + rng.uniform(-1800, 1800)
    yield _record("HKCategoryTypeIdentifierSleepAnalysis", PHONE_NAME, None, None,
                  "HKCategoryValueSleepAnalysisInBed", fmt(bed), fmt(wake), version="17.1")  # type: ignore[operator]
    t = bed + 600
    while t < wake - 600:
        length = min(rng.uniform(600, 3600), wake - t)
        yield _record("HKCategoryTypeIdentifierSleepAnalysis", WATCH_NAME, WATCH_DEVICE, None,
                      rng.choice(_STAGES), fmt(t), fmt(t + length))  # type: ignore[operator]
        t += length


def _workout(rng: random.Random, text: object, start: float) -> str:
    fmt = text
    minutes = rng.uniform(20, 60)
    s, e = fmt(start), fmt(start + minutes * 60)  # type: ignore[operator]
    miles = minutes * rng.uniform(0.08, 0.12)
    return (
        f' <Workout workoutActivityType="HKWorkoutActivityTypeRunning" duration="{minutes:.4f}" '
        f'durationUnit="min" sourceName={quoteattr(WATCH_NAME)} sourceVersion="10.1" '
        f'device={quoteattr(WATCH_DEVICE)} creationDate="{e}" startDate="{s}" endDate="{e}">\n'
        f'  <MetadataEntry key="HKIndoorWorkout" value="0"/>\n'
        f'  <MetadataEntry key="HKTimeZone" value="America/New_York"/>\n'
        f'  <WorkoutEvent type="HKWorkoutEventTypeSegment" date="{s}" duration="5" durationUnit="min"/>\n'
        f'  <WorkoutStatistics type="{HK}ActiveEnergyBurned" startDate="{s}" endDate="{e}" '
        f'sum="{minutes * 10:.3f}" unit="Cal"/>\n'
        f'  <WorkoutStatistics type="{HK}DistanceWalkingRunning" startDate="{s}" endDate="{e}" '
        f'sum="{miles:.4f}" unit="mi"/>\n'
        f'  <WorkoutStatistics type="{HK}HeartRate" startDate="{s}" endDate="{e}" '
        f'average="{rng.uniform(130, 160):.2f}" '
        f'minimum="100" maximum="175" unit="count/min"/>\n'
        f'  <WorkoutRoute sourceName={quoteattr(WATCH_NAME)} sourceVersion="10.1" creationDate="{e}" '
        f'startDate="{s}" endDate="{e}">\n'
        f'   <FileReference path="/workout-routes/route_x.gpx"/>\n'
        "  </WorkoutRoute>\n"
        " </Workout>\n"
    )


def _trap(clock: _Clock, t0: float, n: int, index: int) -> str:
    stamp = clock.text(t0 + 3 * 3600 + n % 3600)
    later = clock.text(t0 + 3 * 3600 + n % 3600 + 60)
    kind = index % 7
    if kind == 0:
        return _record(f"{HK}FutureMetricFromIOS30", WATCH_NAME, WATCH_DEVICE, "count", "1", stamp, stamp)
    if kind == 1:
        return _record(f"{HK}HeartRate", WATCH_NAME, WATCH_DEVICE, "count/min", "", stamp, stamp)
    if kind == 2:
        return _record(f"{HK}HeartRate", WATCH_NAME, WATCH_DEVICE, "count/min", "n/a", stamp, stamp)
    if kind == 3:
        return _record(f"{HK}BodyMass", "Withings", None, "lb", "155", later, stamp)  # end before start
    if kind == 4:
        line = _record(f"{HK}RespiratoryRate", WATCH_NAME, WATCH_DEVICE, "count/min", "15", stamp, stamp)
        return line + line  # exact duplicate
    if kind == 5:
        return _record(f"{HK}RespiratoryRate", WATCH_NAME + "\x0b", WATCH_DEVICE, "count/min", "16", stamp, stamp)
    return _record("HKCategoryTypeIdentifierMindfulSession", PHONE_NAME, None, None, None, stamp, later)


def write_export_xml(out: IO[str], spec: SynthSpec) -> None:
    """Write the export.xml text to an open text stream."""
    buffer: list[str] = []
    for line in iter_export_lines(spec):
        buffer.append(line)
        if len(buffer) >= 4096:
            out.write("".join(buffer))
            buffer.clear()
    out.write("".join(buffer))


def write_export(path: Path, spec: SynthSpec = SynthSpec()) -> Path:  # noqa: B008
    """Write an ``export.zip`` laid out as the Health app writes it; returns its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        archive.writestr("apple_health_export/export_cda.xml",
                         '<?xml version="1.0"?>\n<ClinicalDocument xmlns="urn:hl7-org:v3"></ClinicalDocument>\n')
        with archive.open("apple_health_export/export.xml", "w", force_zip64=True) as raw:
            with io.TextIOWrapper(raw, encoding="utf-8", newline="\n") as text:
                write_export_xml(text, spec)
        archive.writestr("apple_health_export/workout-routes/route_x.gpx", "<gpx></gpx>\n")
    tmp.replace(path)
    return path
