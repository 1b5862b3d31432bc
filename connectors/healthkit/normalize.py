"""HealthKit export elements → canonical samples (or rejections with a reason). Pure: no I/O.

Receives the top-level elements from :class:`~connectors.healthkit.xml_stream.HealthDataStream` and
turns each into a :class:`~mappers.sample.Sample` in canonical UCUM units, or a
:class:`~mappers.sample.Rejection` that says what was wrong and where. Nothing is dropped silently:
unknown and known-but-unmapped types are counted by type.

Blood pressure: the children of a ``Correlation`` also appear as top-level ``Record``s. Top-level
systolic/diastolic records are held back until the end of input; those that belong to a correlation
are written once, as the panel, and only orphans are written on their own.

Time: an iPhone writes every date in the UTC offset in force when the export was made. The written offset
fixes the instant only; the local clock comes from an IANA zone: the record's own ``HKTimeZone``, else the
patient's zone, and only when neither is known the written offset (DESIGN §2).

Old exports (iOS 8/9) are read too: compact dates (``20140107104300-0800``), ``source=`` for
``sourceName=``, metadata written as attributes, heart rate as ``min``/``max``/``average`` without a
``value``, sleep values as enum numbers.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from datetime import date, datetime

from connectors.healthkit.dates import DateWithoutOffsetError, parse_healthkit_date
from mappers.sample import DeviceInfo, Rejection, Sample, SampleBatch, SourceInfo, epoch_times
from mappers.tables import HealthKitTable, HealthKitType, Metric
from mappers.units import conversion
from mappers.zones import resolve_zone, zone_offset
from wearfhir.errors import ConfigError

__all__ = ["HealthKitNormalizer", "parse_device"]

ORIGIN = "healthkit"
Attrs = dict[str, str]
Interval = tuple[datetime, datetime, float, float, int, str | None]
_DEVICE_KEYS = {"name", "manufacturer", "model", "hardware", "software"}
# A maker written two ways by one device over the years (watchOS 5 "Apple", watchOS 7 "Apple Inc."): the legal
# suffix is dropped so one watch stays one Device.
_LEGAL_SUFFIX = re.compile(r",?\s+(?:Inc\.?|Incorporated|Corp\.?|Corporation|Ltd\.?|Limited|LLC|GmbH|AG|S\.?A\.?|"
                           r"Co\.?|B\.?V\.?|Oy|AB)\Z", re.IGNORECASE)
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_FIELD_NAME = re.compile(r"[A-Za-z][A-Za-z ]*\Z")


def converted(value: float, factor: float, offset: float) -> float:
    """``value`` in another unit without float noise: 12 significant digits (``0.97`` × 100 is ``97``, not
    ``97.00000000000001``), which keeps every digit a device writes; a value that needs no conversion is
    returned exactly as it is."""
    if factor == 1.0 and offset == 0.0:
        return value
    return float(f"{value * factor + offset:.12g}")


def normalise_manufacturer(name: str | None) -> str | None:
    """A device maker without its legal suffix (``Apple Inc.`` → ``Apple``)."""
    if not name:
        return name
    return _LEGAL_SUFFIX.sub("", name.strip()) or name.strip()


def parse_device(text: str) -> DeviceInfo | None:
    """Parse HealthKit's device description (``<<HKDevice: 0x…>, name:Apple Watch, model:Watch, …>``)."""
    body = text.strip()
    if body.startswith("<<HKDevice"):
        close = body.find(">,")
        body = body[close + 2:] if close != -1 else ""
    body = body.rstrip(">").strip()
    fields: dict[str, str] = {}
    last: str | None = None
    for piece in body.split(", "):
        key, sep, value = piece.partition(":")
        if sep and _FIELD_NAME.match(key):
            last = key
            fields[last] = value.strip()
        elif last is not None:
            fields[last] = f"{fields[last]}, {piece}"
    info = {k: fields.get(k) or None for k in _DEVICE_KEYS}
    if not any(info.values()):
        return None
    info["manufacturer"] = normalise_manufacturer(info["manufacturer"])
    return DeviceInfo(info["name"], info["manufacturer"], info["model"], info["hardware"], info["software"])


def _activity_code(activity: str) -> str:
    name = activity.removeprefix("HKWorkoutActivityType")
    return _CAMEL.sub("_", name).lower() or "other"


class HealthKitNormalizer:
    """Stateful converter for one export of one patient; implements ``HealthDataHandler``."""

    def __init__(self, patient: str, table: HealthKitTable, metrics: dict[str, Metric],
                 zone: str | None = None) -> None:
        if zone is not None and resolve_zone(zone) is None:
            raise ConfigError(f"{zone!r} is not an IANA time zone (e.g. Europe/Berlin, America/New_York)")
        self.patient = patient
        self.zone = zone  # the patient's zone: local clock of records without their own HKTimeZone
        self._table = table
        self._metrics = metrics
        self._types = table.types
        self.records_by_type: Counter[str] = Counter()
        self.unknown_types: Counter[str] = Counter()
        self.unmapped_types: Counter[str] = Counter()
        self.other_elements: Counter[str] = Counter()
        self.bp_merged = 0
        self.exported_at: datetime | None = None
        self._export_epoch: float | None = None
        self._record_zones: dict[str, str | None] = {}
        self.gender: str | None = None
        self.birth_date: date | None = None
        self._batches: dict[str, list[Sample]] = defaultdict(list)
        self._rejections: list[Rejection] = []
        self._sources: dict[tuple[str, str | None, str | None], SourceInfo] = {}
        self._devices: dict[str, DeviceInfo | None] = {}
        self._conversions: dict[tuple[str, str, str], tuple[Metric, float, float] | str] = {}
        self._bp_members = {t for _, members in table.correlations.values() for t in members}
        self._bp_pending: list[tuple[tuple[str, str, str, str], Sample]] = []
        self._bp_consumed: set[tuple[str, str, str, str]] = set()

    # ---- output ---------------------------------------------------------------------------------------
    def drain(self) -> tuple[list[SampleBatch], list[Rejection]]:
        """Take the samples (grouped per metric) and rejections produced since the last drain."""
        batches = [SampleBatch(self.patient, metric, samples, self.zone) for metric, samples in self._batches.items()]
        rejections = self._rejections
        self._batches = defaultdict(list)
        self._rejections = []
        return batches, rejections

    def finish(self) -> None:
        """End of input: release top-level blood-pressure records that no correlation claimed."""
        for identity, sample in self._bp_pending:
            if identity in self._bp_consumed:
                self.bp_merged += 1
            else:
                self._batches[sample.metric].append(sample)
        self._bp_pending = []

    def _reject(self, reason: str, line: int, vendor_type: str | None, detail: str | None = None) -> None:
        self._rejections.append(Rejection(ORIGIN, reason, f"line {line}", vendor_type, detail))

    # ---- shared pieces --------------------------------------------------------------------------------
    def _source(self, attrs: Attrs) -> SourceInfo:
        # iOS 8 wrote ``source=``; names are kept with their whitespace normalised ("Apple Watch " and
        # "Apple\u00a0Watch" are the same app)
        key = (attrs.get("sourceName") or attrs.get("source") or "", attrs.get("sourceVersion"), attrs.get("device"))
        source = self._sources.get(key)
        if source is None:
            device_text = key[2]
            device = None
            if device_text:
                if device_text not in self._devices:
                    self._devices[device_text] = parse_device(device_text)
                device = self._devices[device_text]
            name = " ".join(key[0].split()) or "unknown source"
            source = self._sources[key] = SourceInfo(name, key[1], device)
        return source

    def _zone_of(self, attrs: Attrs, metadata: Attrs) -> str | None:
        """The IANA zone giving a record's local clock: its own ``HKTimeZone`` (metadata, or an iOS 8 attribute)
        when it names a real zone, else the patient's zone (None when neither is known)."""
        own = metadata.get("HKTimeZone") or attrs.get("HKTimeZone")
        if not own:
            return self.zone
        zone = self._record_zones.get(own, "")
        if zone == "":
            if len(self._record_zones) > 1_000:
                self._record_zones.clear()
            zone = self._record_zones[own] = own if resolve_zone(own) is not None else None
        return zone or self.zone

    def _interval(self, attrs: Attrs, metadata: Attrs, line: int, vendor_type: str) -> Interval | None:
        """Start and end as written, the same as epoch seconds, the start's local offset in the record's zone and
        the zone; None (and a rejection) for a bad or impossible interval."""
        start_text = attrs.get("startDate")
        end_text = attrs.get("endDate") or start_text
        try:
            start = parse_healthkit_date(start_text)  # type: ignore[arg-type]
            end = start if end_text == start_text else parse_healthkit_date(end_text)  # type: ignore[arg-type]
        except DateWithoutOffsetError:
            self._reject("date without UTC offset", line, vendor_type, "dates must carry an offset such as -0500")
            return None
        except (TypeError, ValueError):
            self._reject("unparsable date", line, vendor_type,
                         "startDate/endDate must look like '2024-03-10 08:15:00 -0500' (or iOS 8's "
                         "'20240310081500-0500')")
            return None
        first, last, offset = epoch_times(start, end)
        if last < first:
            self._reject("endDate before startDate", line, vendor_type)
            return None
        if self._export_epoch is not None and first > self._export_epoch:
            self._reject("dated after the export", line, vendor_type,
                         "starts after the export's ExportDate (a device clock set wrong?)")
            return None
        zone = self._zone_of(attrs, metadata)
        if zone is not None:
            offset = zone_offset(zone, first)  # the local clock; the datetimes keep the written offset
        return start, end, first, last, offset, zone

    def _conversion(self, spec: HealthKitType, unit: str, metric_key: str) -> tuple[Metric, float, float] | str:
        key = (spec.identifier, unit, metric_key)
        found = self._conversions.get(key)
        if found is None:
            metric = self._metrics[metric_key]
            try:
                factor, offset = self._table.unit_conversion(spec, unit, metric.unit)
                found = (metric, factor, offset)
            except ConfigError as exc:
                found = f"{exc}; expected a unit convertible to {metric.unit}"
            self._conversions[key] = found
        return found

    def _quantity(self, spec: HealthKitType, raw: str | None, unit: str, metric_key: str, line: int,
                  ) -> float | None:
        """Parse, convert and range-check one value; reject (and return None) when it is bad.

        Values are kept as measured: one that needs no conversion is the number the source wrote (``40.6122``
        stays ``40.6122``, ``142`` stays an integer); a converted one drops float noise (12 significant
        digits: ``0.97`` × 100 is ``97``, not ``97.00000000000001``) and nothing of the source's precision.
        """
        if raw is None or not raw.strip():
            self._reject("missing value", line, spec.identifier)
            return None
        try:
            value = float(raw)
        except ValueError:
            self._reject("non-numeric value", line, spec.identifier)
            return None
        if value != value or value in (float("inf"), float("-inf")):
            self._reject("non-numeric value", line, spec.identifier)
            return None
        conv = self._conversion(spec, unit, metric_key)
        if isinstance(conv, str):
            self._reject("unknown unit", line, spec.identifier, conv)
            return None
        metric, factor, offset = conv
        if factor != 1.0 or offset != 0.0:
            value = converted(value, factor, offset)
        elif raw.isascii() and raw.isdigit():
            value = int(raw)  # type: ignore[assignment]
        if not metric.plausible(value):
            self._reject("value out of plausible range", line, spec.identifier, metric.range_text(unit))
            return None
        return value

    def _metric_for(self, spec: HealthKitType, source: SourceInfo) -> str:
        if spec.cgm_metric and any(s in source.name for s in spec.cgm_sources):
            return spec.cgm_metric
        return spec.metric

    # ---- HealthDataHandler ----------------------------------------------------------------------------
    def export_date(self, value: str) -> None:
        """When the export was made: records that start after it are rejected (a phone clock set to 2030)."""
        try:
            self.exported_at = parse_healthkit_date(value)
        except ValueError:
            self.exported_at = None
            return
        self._export_epoch = self.exported_at.timestamp()

    def me(self, attrs: Attrs) -> None:
        """The export owner's characteristics (kept for the NDJSON Patient); iOS 8 wrote enum numbers."""
        self.gender = attrs.get("HKCharacteristicTypeIdentifierBiologicalSex")
        dob = attrs.get("HKCharacteristicTypeIdentifierDateOfBirth")
        if dob:
            try:
                self.birth_date = date.fromisoformat(dob)  # also iOS 8's 19881029
            except ValueError:
                self.birth_date = None

    def other(self, name: str) -> None:
        """A top-level element wearfhir does not map (ActivitySummary, ClinicalRecord, ...)."""
        self.other_elements[name] += 1

    def malformed(self, message: str, line: int) -> None:
        """A syntax error in the XML; the parser has skipped to the next element."""
        self._reject("malformed XML", line, None, message)

    def record(self, attrs: Attrs, metadata: Attrs, line: int) -> None:
        """One top-level ``<Record>``."""
        vendor_type = attrs.get("type")
        if not vendor_type:
            self._reject("missing type", line, None, "a <Record> without a type attribute")
            return
        self.records_by_type[vendor_type] += 1
        spec = self._types.get(vendor_type)
        if spec is None:
            self._count_unmapped(vendor_type)
            return
        sample = self._sample(spec, attrs, metadata, line)
        if sample is None:
            return
        if vendor_type in self._bp_members:
            identity = (vendor_type, attrs.get("sourceName", ""), attrs.get("startDate", ""),
                        attrs.get("endDate", ""))
            self._bp_pending.append((identity, sample))
            return
        self._batches[sample.metric].append(sample)

    def _count_unmapped(self, vendor_type: str) -> None:
        if self._table.unmapped_reason(vendor_type) is not None:
            self.unmapped_types[vendor_type] += 1
        else:
            self.unknown_types[vendor_type] += 1

    def _sample(self, spec: HealthKitType, attrs: Attrs, metadata: Attrs, line: int) -> Sample | None:
        interval = self._interval(attrs, metadata, line, spec.identifier)
        if interval is None:
            return None
        source = self._source(attrs)
        metric_key = self._metric_for(spec, source)
        raw = attrs.get("value")
        if raw is None and self._metrics[metric_key].aggregation == "sampled":
            raw = attrs.get("average")  # iOS 8: min/max/average over the interval, no value
        value: float | None = None
        code: str | None = None
        unit: str | None = None
        vendor_code: str | None = None
        if spec.values:
            if not raw:
                self._reject("missing value", line, spec.identifier, "a category record needs a value")
                return None
            code = spec.values.get(raw)
            if code is None:
                shown = raw if raw.startswith("HKCategoryValue") and len(raw) < 80 else "(not shown)"
                self._reject("unknown category value", line, spec.identifier, f"value {shown} is not mapped")
                return None
            vendor_code = raw
        else:
            value = self._quantity(spec, raw, attrs.get("unit", ""), metric_key, line)
            if value is None:
                return None
            unit = self._metrics[metric_key].unit
        start, end, start_epoch, end_epoch, offset, zone = interval
        return Sample(
            self.patient, metric_key, value, code, unit, start, end, source, ORIGIN, spec.identifier,
            start_epoch, end_epoch, offset, metadata.get("HKExternalUUID"), (), zone,
            _user_entered(attrs, metadata), vendor_code,
        )

    def correlation(self, attrs: Attrs, metadata: Attrs, records: list[tuple[Attrs, Attrs]], line: int) -> None:
        """A ``<Correlation>``: blood pressure becomes one panel sample."""
        vendor_type = attrs.get("type") or ""
        self.records_by_type[vendor_type] += 1
        mapping = self._table.correlations.get(vendor_type)
        if mapping is None:
            self._count_unmapped(vendor_type)
            return
        panel_key, members = mapping
        interval = self._interval(attrs, metadata, line, vendor_type)
        if interval is None:
            return
        components: list[tuple[str, float]] = []
        identities = []
        for child, _child_meta in records:
            child_type = child.get("type", "")
            member_metric = members.get(child_type)
            if member_metric is None:
                continue
            value = self._quantity(self._types[child_type], child.get("value"), child.get("unit", ""),
                                   member_metric, line)
            if value is None:
                return
            components.append((member_metric, value))
            identities.append((child_type, child.get("sourceName", ""), child.get("startDate", ""),
                               child.get("endDate", "")))
        if not components:
            self._reject("empty correlation", line, vendor_type, "a blood-pressure correlation with no readings")
            return
        order = self._metrics[panel_key].components
        components.sort(key=lambda c: order.index(c[0]) if c[0] in order else len(order))
        self._bp_consumed.update(identities)
        start, end, start_epoch, end_epoch, offset, zone = interval
        self._batches[panel_key].append(Sample(
            self.patient, panel_key, None, None, self._metrics[panel_key].unit, start, end, self._source(attrs),
            ORIGIN, vendor_type, start_epoch, end_epoch, offset, metadata.get("HKExternalUUID"), tuple(components),
            zone, _user_entered(attrs, metadata), None,
        ))

    def workout(self, attrs: Attrs, metadata: Attrs, statistics: list[Attrs], line: int) -> None:
        """A ``<Workout>``: activity type as the value, duration/energy/distance/heart rate as components."""
        vendor_type = "HKWorkoutTypeIdentifier"
        self.records_by_type[vendor_type] += 1
        interval = self._interval(attrs, metadata, line, vendor_type)
        if interval is None:
            return
        metric_key = self._table.workout_metric
        activity = attrs.get("workoutActivityType") or "HKWorkoutActivityTypeOther"
        found: dict[str, float] = {}
        duration = attrs.get("duration")
        if duration:
            minutes = self._workout_value(duration, attrs.get("durationUnit", "min"), "workout_duration", line)
            if minutes is not None:
                found["workout_duration"] = minutes
        for stat in statistics:
            stat_metric = self._table.workout_statistics.get(stat.get("type", ""))
            if stat_metric is None:
                continue
            cumulative = self._metrics[stat_metric].aggregation == "cumulative"
            raw = stat.get("sum") if cumulative else stat.get("average")
            spec = self._types[stat["type"]]
            value = self._quantity(spec, raw, stat.get("unit", ""), stat_metric, line) if raw else None
            if value is not None:
                found[stat_metric] = value
        distance_metric = self._table.workout_distance_metric(activity)
        for attr, stat_metric, hk_type in (
            ("totalEnergyBurned", "active_energy", "HKQuantityTypeIdentifierActiveEnergyBurned"),
            ("totalDistance", distance_metric, "HKQuantityTypeIdentifierDistanceWalkingRunning"),
        ):
            if attr == "totalDistance" and any(self._metrics[k].unit == "m" for k in found):
                continue  # the statistics already gave the distance (of whatever kind)
            if stat_metric not in found and attrs.get(attr):
                value = self._quantity(self._types[hk_type], attrs[attr], attrs.get(f"{attr}Unit", ""),
                                       stat_metric, line)
                if value is not None:
                    found[stat_metric] = value
        for key in [k for k, v in found.items() if v == 0 and self._metrics[k].unit == "m"]:
            del found[key]  # a distance of 0 means "not measured" (strength training, apps that write 0)
        order = self._metrics[metric_key].components
        components = tuple((k, found[k]) for k in order if k in found)
        start, end, start_epoch, end_epoch, offset, zone = interval
        self._batches[metric_key].append(Sample(
            self.patient, metric_key, None, _activity_code(activity), None, start, end, self._source(attrs),
            ORIGIN, vendor_type, start_epoch, end_epoch, offset, metadata.get("HKExternalUUID"), components,
            zone, _user_entered(attrs, metadata), activity,
        ))

    def _workout_value(self, raw: str, unit: str, metric_key: str, line: int) -> float | None:
        metric = self._metrics[metric_key]
        ucum = self._table.units.get(unit, unit)
        try:
            value = converted(float(raw), *conversion(ucum, metric.unit))
        except (ValueError, ConfigError):
            self._reject("unreadable workout duration", line, "HKWorkoutTypeIdentifier",
                         f"duration unit {unit!r} must convert to {metric.unit}")
            return None
        return value


def _user_entered(attrs: Attrs, metadata: Attrs) -> bool:
    """Whether the user typed the sample in (metadata, or an attribute in iOS 8 exports)."""
    return (metadata.get("HKWasUserEntered") or attrs.get("HKWasUserEntered")) == "1"
