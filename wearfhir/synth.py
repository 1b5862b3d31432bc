"""A realistic synthetic Apple Health export, with the traps real exports have (for demo, tests, bench).

Shapes follow real ``export.xml`` files: a DTD header (iOS 16's broken one by default), ``Me``, dense
Watch streams (heart rate, energy, steps, distance), iPhone steps overlapping the Watch's, spot
measurements (weight in lb, temperature in °F, SpO₂ as a fraction, glucose in ``mmol<…>/L`` and a
Dexcom CGM in mg/dL), blood-pressure correlations whose children also appear at top level, sleep stages,
workouts with ``WorkoutStatistics``, over dates that cross both DST changes. A small share of records
carries bad input: unknown types, empty and non-numeric values, reversed dates, duplicates, stray U+000B
characters. No real person's data is in it.

Dates are written as a real iPhone writes them: every date in the file (``ExportDate``, ``startDate``,
``endDate``, ``creationDate``, workout events and statistics) carries the UTC offset in force *when the
export was made*, not when the sample was taken, so a July sample of a January export in New York reads
``-0500``; the instant is exact, the written wall clock is not the local one. ``HKTimeZone`` metadata names
the zone on some records only (sleep, workouts, a few heart-rate samples), as on real exports. The export
is dated after the last record, at a time whose offset differs from the first day's, so an import that
trusted the written offset would put samples in the wrong hour for half of the file.
``SynthSpec(offsets="per-sample")`` writes each date with its own local offset instead (what no iPhone does).
"""

from __future__ import annotations

import io
import random
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import IO, Literal, get_args
from xml.sax.saxutils import quoteattr
from zoneinfo import ZoneInfo

__all__ = ["SynthSpec", "export_time", "iter_export_lines", "write_export", "write_export_xml"]

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


Offsets = Literal["export", "per-sample"]
_OFFSETS: tuple[str, ...] = get_args(Offsets)
# Fewest records any day can hold (a 23-hour DST day): heart rate >= 276, walking >= 50, energy >= 396,
# CGM >= 276, spot measurements 9, sleep >= 1. So ``records`` records never need more than
# ``records // _MIN_RECORDS_PER_DAY + 1`` days, which bounds the last record before the export is dated.
_MIN_RECORDS_PER_DAY = 1_000
_HEART_RATE_ZONE_EVERY = 40  # one heart-rate record in 40 carries HKTimeZone (the Watch writes it on some)


@dataclass(frozen=True)
class SynthSpec:
    """What to generate: about ``records`` records from ``start`` on, in ``timezone``.

    ``offsets="export"`` (the default, as iPhones write) puts the offset in force at the export time on
    every date; ``"per-sample"`` writes each date with its own local (DST-dependent) offset. The instants
    are the same either way. ``zone_metadata`` puts ``HKTimeZone`` on sleep, workout and some heart-rate
    records. ``exported`` (tz-aware) dates the export; by default it is :func:`export_time`'s choice.
    """

    records: int = 300_000
    start: date = date(2024, 10, 20)
    timezone: str = "America/New_York"
    seed: int = 7
    broken_dtd: bool = True
    traps: bool = True
    trap_every: int = 5_000
    offsets: Offsets = "export"
    zone_metadata: bool = True
    exported: datetime | None = None

    def __post_init__(self) -> None:
        if self.offsets not in _OFFSETS:
            raise ValueError(f"offsets must be one of {', '.join(_OFFSETS)}, not {self.offsets!r}")
        if self.exported is not None and self.exported.utcoffset() is None:
            raise ValueError("exported must be a timezone-aware datetime")
        ZoneInfo(self.timezone)  # an unknown zone fails here, not halfway through a file


def export_time(spec: SynthSpec) -> datetime:
    """When the export is dated (aware, in ``spec.timezone``): ``spec.exported``, else a time after the last record.

    The default is 09:14:27 local on the first day after the last possible record whose UTC offset differs
    from the offset at the start of the first day (for the default spec, a November export of data that
    starts in October under daylight time). In a zone without DST it is the first day after the records.
    """
    tz = ZoneInfo(spec.timezone)
    if spec.exported is not None:
        return spec.exported.astimezone(tz)
    first_offset = datetime(spec.start.year, spec.start.month, spec.start.day, tzinfo=tz).utcoffset()
    after_records = spec.start + timedelta(days=spec.records // _MIN_RECORDS_PER_DAY + 1)
    for days in range(370):
        day = after_records + timedelta(days=days)
        candidate = datetime(day.year, day.month, day.day, 9, 14, 27, tzinfo=tz)
        if candidate.utcoffset() != first_offset:
            return candidate
    return datetime(after_records.year, after_records.month, after_records.day, 9, 14, 27, tzinfo=tz)


class _ExportClock:
    """Wall-clock text in one fixed UTC offset (the export's), as iPhones write every date of an export."""

    def __init__(self, exported: datetime) -> None:
        offset = exported.utcoffset()
        if offset is None:
            raise ValueError("the export time must be timezone-aware")
        self._seconds = int(offset.total_seconds())
        sign = "-" if self._seconds < 0 else "+"
        hours, minutes = divmod(abs(self._seconds) // 60, 60)
        self._suffix = f" {sign}{hours:02d}{minutes:02d}"

    def text(self, epoch: float) -> str:
        # time.gmtime + strftime is ~3x faster than datetime.fromtimestamp(...).strftime on this hot path
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(int(epoch) + self._seconds)) + self._suffix


class _Clock:
    """Local wall-clock text with the UTC offset in force at each instant (``offsets="per-sample"``)."""

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
    tz = ZoneInfo(spec.timezone)
    exported = export_time(spec)
    clock: _Clock | _ExportClock = _ExportClock(exported) if spec.offsets == "export" else _Clock(spec.timezone)
    zone = spec.timezone if spec.zone_metadata else None
    yield _DTD if spec.broken_dtd else _DTD_OK
    yield '<HealthData locale="en_US">\n'
    yield f' <ExportDate value="{clock.text(exported.timestamp())}"/>\n'
    yield (' <Me HKCharacteristicTypeIdentifierDateOfBirth="1971-04-12" '
           'HKCharacteristicTypeIdentifierBiologicalSex="HKBiologicalSexFemale"/>\n')
    emitted = 0
    day = spec.start
    trap_countdown = spec.trap_every
    traps = 0
    while emitted < spec.records:
        midnight = datetime(day.year, day.month, day.day, tzinfo=tz).timestamp()
        next_midnight = datetime.combine(day + timedelta(days=1), datetime.min.time(), tz).timestamp()
        for line in _day_records(rng, clock.text, midnight, next_midnight, day, zone):
            yield line
            emitted += 1
            trap_countdown -= 1
            if spec.traps and trap_countdown <= 0:
                trap_countdown = spec.trap_every
                yield _trap(clock.text, midnight, emitted, traps)
                traps += 1
                emitted += 1
        day += timedelta(days=1)
    last_day = (day - timedelta(days=1)).isoformat()
    yield (f' <ActivitySummary dateComponents="{last_day}" activeEnergyBurned="500" '
           'activeEnergyBurnedGoal="600"/>\n')
    yield "</HealthData>\n"


def _day_records(rng: random.Random, text: Callable[[float], str], t0: float, t1: float, day: date,
                 zone: str | None) -> Iterator[str]:
    # heart rate: every ~4 minutes, Watch; a few carry HKTimeZone (chosen by count, so the rng stream and
    # hence every value and instant are the same with and without zone metadata)
    plain_meta = {"HKMetadataKeyHeartRateMotionContext": "0"}
    zone_meta = plain_meta if zone is None else {**plain_meta, "HKTimeZone": zone}
    t = t0 + rng.uniform(0, 240)
    beats = 0
    while t < t1:
        stamp = text(t)
        beats += 1
        yield _record(f"{HK}HeartRate", WATCH_NAME, WATCH_DEVICE, "count/min", str(rng.randint(52, 150)),
                      stamp, stamp, zone_meta if beats % _HEART_RATE_ZONE_EVERY == 0 else plain_meta)
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
    yield from _sleep(rng, text, t0, zone)
    if day.weekday() in (1, 5):
        yield _workout(rng, text, t0 + 17 * 3600, zone)


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


def _sleep(rng: random.Random, text: Callable[[float], str], t0: float, zone: str | None) -> Iterator[str]:
    meta = None if zone is None else {"HKTimeZone": zone}  # the Watch and iPhone name the zone on sleep
    bed = t0 - 2 * 3600 + rng.uniform(-1800, 1800)  # the evening before
    wake = t0 + 6.5 * 3600 + rng.uniform(-1800, 1800)
    yield _record("HKCategoryTypeIdentifierSleepAnalysis", PHONE_NAME, None, None,
                  "HKCategoryValueSleepAnalysisInBed", text(bed), text(wake), meta, version="17.1")
    t = bed + 600
    while t < wake - 600:
        length = min(rng.uniform(600, 3600), wake - t)
        yield _record("HKCategoryTypeIdentifierSleepAnalysis", WATCH_NAME, WATCH_DEVICE, None,
                      rng.choice(_STAGES), text(t), text(t + length), meta)
        t += length


def _workout(rng: random.Random, text: Callable[[float], str], start: float, zone: str | None) -> str:
    minutes = rng.uniform(20, 60)
    s, e = text(start), text(start + minutes * 60)
    miles = minutes * rng.uniform(0.08, 0.12)
    zone_line = "" if zone is None else f"  <MetadataEntry key=\"HKTimeZone\" value={quoteattr(zone)}/>\n"
    return (
        f' <Workout workoutActivityType="HKWorkoutActivityTypeRunning" duration="{minutes:.4f}" '
        f'durationUnit="min" sourceName={quoteattr(WATCH_NAME)} sourceVersion="10.1" '
        f'device={quoteattr(WATCH_DEVICE)} creationDate="{e}" startDate="{s}" endDate="{e}">\n'
        f'  <MetadataEntry key="HKIndoorWorkout" value="0"/>\n'
        f"{zone_line}"
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


def _trap(text: Callable[[float], str], t0: float, n: int, index: int) -> str:
    stamp = text(t0 + 3 * 3600 + n % 3600)
    later = text(t0 + 3 * 3600 + n % 3600 + 60)
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
