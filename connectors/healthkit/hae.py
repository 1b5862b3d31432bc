"""Health Auto Export (HAE) JSON push bodies → canonical samples, rejections and unmapped counts. Pure: no I/O.

What the app sends is described in ``../shared/samples/health-auto-export/FORMAT.md``; the vocabulary is the data file
``mappers/data/health_auto_export.toml``, loaded and validated here (a bad row fails at start-up, not on a push).

- Body: ``{"data": {"metrics": [...], "workouts": [...], ...}}``, or the same arrays at top level (older versions);
  arrays beside ``data`` are read too. Other arrays (stateOfMind, ecg …) are counted as unmapped.
- Time: dates are ``yyyy-MM-dd HH:mm:ss ±HHMM``, parsed strictly; a date without an offset is rejected. A point's
  interval is its ``start``/``end`` when it has both, else the instant ``date``. The offset fixes the instant only:
  the local clock is the patient's zone (DESIGN §2), ``utc_offset`` its offset at the start.
- Identity: HAE re-sends still-open buckets, so samples are keyed by slot (patient, metric, type, source, start,
  end) and a newer value replaces the older; sleep segments use value identity (``HaeResult.identity``), because an
  InBed row and a stage row share a slot. Sources are the point's ``source`` split on ``|``, de-duplicated and
  sorted, so a bucket keeps its source whatever the order HAE joins them in.
- Values are kept as measured: a value in the canonical unit is the number HAE wrote (an int stays an int); a
  converted one drops float noise only (``normalize.converted``).
- Rejections say where (``data.metrics[3].data[17]``), never what: no values or dates in messages.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from typing import Any, NamedTuple

import orjson

from connectors.healthkit.dates import DateWithoutOffsetError, parse_healthkit_date
from connectors.healthkit.normalize import converted
from mappers.sample import Rejection, Sample, SampleBatch, SourceInfo, epoch_times
from mappers.tables import Metric, converts, metrics, parse_toml
from mappers.units import KNOWN_UNITS, conversion
from mappers.zones import resolve_zone, zone_offset
from wearfhir.errors import ConfigError, TruncatedInputError, UnsupportedInputError

__all__ = ["ORIGIN", "HaeMetric", "HaeResult", "HaeTable", "hae_table", "load_hae_table", "normalize_hae"]

ORIGIN = "health_auto_export"
UNKNOWN_SOURCE = "unknown source"
AGGREGATED_SLEEP = ":aggregated"  # suffix of the unmapped key of aggregated sleep rows ("sleep_analysis:aggregated")
SHAPES = {"quantity", "panel", "sleep"}
IDENTITIES = {"slot", "value"}
_NON_WORD = re.compile(r"[^a-z0-9]+")


# ---- the table -------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class HaeMetric:
    """One mapped HAE metric name."""

    name: str
    metric: str
    shape: str = "quantity"
    value_fields: tuple[str, ...] = ("qty",)
    unit_overrides: dict[str, str] = field(default_factory=dict)
    identity: str = "slot"
    components: dict[str, str] = field(default_factory=dict)  # panel: point field → component metric
    values: dict[str, str] = field(default_factory=dict)  # sleep: HAE value → metric code
    cgm_metric: str | None = None
    cgm_sources: tuple[str, ...] = ()
    aggregated_reason: str | None = None


@dataclass(frozen=True)
class HaeTable:
    """The HAE vocabulary: units, mapped names, workouts, known-unmapped names and arrays."""

    system: str
    units: dict[str, str]
    metrics: dict[str, HaeMetric]
    workout_metric: str
    workout_vendor_type: str
    default_distance: str
    distance_by_word: tuple[tuple[str, str], ...]
    known_unmapped: dict[str, str]
    known_arrays: dict[str, str]

    def ucum(self, spec: HaeMetric, unit: str) -> str | None:
        """The UCUM unit of an HAE unit text for ``spec`` (its overrides first), None when unknown."""
        return spec.unit_overrides.get(unit) or self.units.get(unit)

    def unmapped_reason(self, name: str) -> str | None:
        """Why a known metric name or array is not mapped; None for an unknown one."""
        if name.endswith(AGGREGATED_SLEEP) and name[:-len(AGGREGATED_SLEEP)] in self.metrics:
            return self.metrics[name[:-len(AGGREGATED_SLEEP)]].aggregated_reason
        return self.known_unmapped.get(name) or self.known_arrays.get(name)

    def distance_metric(self, workout_name: str) -> str:
        """The metric a workout's distance is coded as, from the first listed word found in its name."""
        lowered = workout_name.lower()
        for word, metric in self.distance_by_word:
            if word in lowered:
                return metric
        return self.default_distance


def load_hae_table(text: str, metric_table: dict[str, Metric]) -> HaeTable:
    """Parse and validate ``health_auto_export.toml`` text against the metric table; ConfigError names the row."""
    data = parse_toml(text, "health_auto_export.toml")
    where0 = "health_auto_export.toml"

    def metric_of(key: Any, where: str) -> Metric:
        if key not in metric_table:
            raise ConfigError(f"{where0} {where}: metric {key!r} is not in metrics.toml")
        return metric_table[key]

    def ucum_known(ucum: Any, where: str) -> None:
        if ucum not in KNOWN_UNITS:
            raise ConfigError(f"{where0} {where}: {ucum!r} is not a UCUM unit wearfhir knows")

    units = dict(data.get("units", {}))
    for hae_unit, ucum in units.items():
        ucum_known(ucum, f"[units] {hae_unit!r}")
    mapped: dict[str, HaeMetric] = {}
    for name, row in data.get("metrics", {}).items():
        where = f"[metrics.{name}]"
        if "metric" not in row:
            raise ConfigError(f"{where0} {where}: missing field 'metric'")
        metric = metric_of(row["metric"], where)
        shape = row.get("shape", "quantity")
        identity = row.get("identity", "slot")
        if shape not in SHAPES or identity not in IDENTITIES:
            raise ConfigError(f"{where0} {where}: shape must be one of {sorted(SHAPES)}, identity one of "
                              f"{sorted(IDENTITIES)}")
        overrides = dict(row.get("unit", {}))
        for ucum in overrides.values():
            ucum_known(ucum, where)
        components = dict(row.get("components", {}))
        values = dict(row.get("values", {}))
        expected = {"quantity": "quantity", "panel": "panel", "sleep": "category"}[shape]
        if metric.kind != expected:
            raise ConfigError(f"{where0} {where}: shape {shape!r} needs a {expected} metric, not {metric.key!r}")
        targets = [metric] + ([metric_of(row["cgm_metric"], where)] if "cgm_metric" in row else [])
        targets += [metric_of(c, where) for c in components.values()]
        if shape == "panel" and (not components or set(components.values()) - set(metric.components)):
            raise ConfigError(f"{where0} {where}: a panel needs components among {list(metric.components)}")
        for target in targets if shape != "sleep" else ():
            if target.kind == "panel":
                continue
            candidates = {*overrides.values(), *units.values()}
            if not any(converts(u, target.unit) for u in candidates):
                raise ConfigError(f"{where0} {where}: no HAE unit converts to {target.unit!r}")
        for code in values.values():
            if code not in metric.codes:
                raise ConfigError(f"{where0} {where}: value code {code!r} is not a code of metric {metric.key!r}")
        if shape == "sleep" and not values:
            raise ConfigError(f"{where0} {where}: a sleep shape needs values")
        mapped[name] = HaeMetric(
            name=name, metric=metric.key, shape=shape, value_fields=tuple(row.get("value", ("qty",))),
            unit_overrides=overrides, identity=identity, components=components, values=values,
            cgm_metric=row.get("cgm_metric"), cgm_sources=tuple(row.get("cgm_sources", ())),
            aggregated_reason=row.get("aggregated_reason"),
        )
    workouts = data.get("workouts", {})
    workout_metric = metric_of(workouts.get("metric"), "[workouts]")
    by_word = tuple((str(w), str(m)) for w, m in workouts.get("distance_by_word", ()))
    default_distance = workouts.get("default_distance", "workout_distance")
    for distance in [default_distance, *(m for _, m in by_word)]:
        if metric_of(distance, "[workouts]").key not in workout_metric.components:
            raise ConfigError(f"{where0} [workouts]: {distance!r} is not a component of {workout_metric.key!r}")
    known = dict(data.get("known_unmapped", {}))
    for reason, names in data.get("known_unmapped_groups", {}).items():
        known.update(dict.fromkeys(names, reason))
    overlap = sorted(set(known) & set(mapped))
    if overlap:
        raise ConfigError(f"{where0}: {overlap} are both mapped and listed as unmapped")
    return HaeTable(
        system=data.get("system", ""), units=units, metrics=mapped, workout_metric=workout_metric.key,
        workout_vendor_type=workouts.get("vendor_type", "workouts"), default_distance=default_distance,
        distance_by_word=by_word, known_unmapped=known, known_arrays=dict(data.get("known_unmapped_arrays", {})),
    )


@functools.cache
def hae_table() -> HaeTable:
    """The packaged HAE table, loaded and validated once."""
    text = resources.files("mappers").joinpath("data", "health_auto_export.toml").read_text(encoding="utf-8")
    return load_hae_table(text, metrics())


# ---- the normaliser --------------------------------------------------------------------------------------------
class HaeResult(NamedTuple):
    """What one body gave: samples per metric, rejections, unmapped names (→ points) and the points seen.

    ``points`` counts metric data points, workouts and the items of other arrays; each became a sample, a
    rejection (``where`` ending in ``]``) or an unmapped count. A workout field that could not be used is rejected
    on its own (``where`` ending in the field name) and the workout kept without it. ``identity`` gives the stream
    entry identity of each batch's metric (``slot`` or ``value``; see the module docstring).
    """

    batches: list[SampleBatch]
    rejections: list[Rejection]
    unmapped: dict[str, int]
    points: int
    identity: dict[str, str] = {}


def normalize_hae(body: bytes | dict[str, Any], patient: str, timezone: str | None,
                  table: HaeTable | None = None) -> HaeResult:
    """Normalise one HAE push body for ``patient`` whose IANA zone is ``timezone`` (None: the written offsets).

    Raises TruncatedInputError (the JSON ends early), UnsupportedInputError (not JSON, or not an HAE body) and
    ConfigError (``timezone`` is not an IANA zone). Same body, same result: samples are equal field for field.
    """
    if timezone is not None and resolve_zone(timezone) is None:
        raise ConfigError(f"{timezone!r} is not an IANA time zone (e.g. Europe/Berlin, America/New_York)")
    doc = _parse(body) if isinstance(body, bytes | bytearray | memoryview | str) else body
    if not isinstance(doc, dict):
        raise UnsupportedInputError("not a Health Auto Export body: expected a JSON object with 'data' or "
                                    "'metrics'/'workouts' arrays")
    run = _Run(patient, timezone, table or hae_table(), metrics())
    containers: list[tuple[str, dict[str, Any]]] = []
    inner = doc.get("data")
    if isinstance(inner, dict):
        containers.append(("data.", inner))
        doc = {k: v for k, v in doc.items() if k != "data"}
    elif "data" in doc:
        raise UnsupportedInputError("not a Health Auto Export body: 'data' must be an object holding the "
                                    "'metrics'/'workouts' arrays (is this one metric object rather than a push?)")
    containers.append(("", doc))
    for prefix, container in containers:
        run.container(prefix, container)
    batches = [SampleBatch(patient, key, samples, timezone) for key, samples in run.batches.items()]
    identity = {key: run.identity[key] for key in run.batches}
    return HaeResult(batches, run.rejections, dict(run.unmapped), run.points, identity)


def _parse(body: bytes | bytearray | memoryview | str) -> Any:
    raw = body if isinstance(body, bytes | str) else bytes(body)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        size = len(raw)
        place = f"line {exc.lineno}, column {exc.colno} (byte {exc.pos} of {size})"
        if not raw.strip():
            raise UnsupportedInputError("the Health Auto Export body is empty") from None
        if exc.pos >= len(raw.rstrip()):  # the parser wanted more: the body was cut off
            raise TruncatedInputError(f"the Health Auto Export body ends early at {place}: nothing was read; "
                                      "send the whole body again") from None
        raise UnsupportedInputError(f"the Health Auto Export body is not valid JSON at {place}") from None


def _number(value: Any) -> bool:
    return type(value) in (int, float) and value == value and value not in (float("inf"), float("-inf"))


class _Run:
    """The state of one body's normalisation."""

    def __init__(self, patient: str, zone: str | None, table: HaeTable, metric_table: dict[str, Metric]) -> None:
        self.patient, self.zone, self.table, self.metrics = patient, zone, table, metric_table
        self.batches: dict[str, list[Sample]] = {}
        self.identity: dict[str, str] = {}
        self.rejections: list[Rejection] = []
        self.unmapped: Counter[str] = Counter()
        self.points = 0
        self._sources: dict[Any, SourceInfo] = {}
        self._units: dict[tuple[str, str, str], tuple[float, float] | str] = {}

    def reject(self, reason: str, where: str, vendor_type: str | None, detail: str | None = None) -> None:
        self.rejections.append(Rejection(ORIGIN, reason, where, vendor_type, detail))

    def add(self, sample: Sample, identity: str) -> None:
        self.batches.setdefault(sample.metric, []).append(sample)
        self.identity.setdefault(sample.metric, identity)

    # ---- shared pieces ---------------------------------------------------------------------------------------
    def source(self, text: Any) -> SourceInfo:
        found = self._sources.get(text)
        if found is None:
            parts = sorted({" ".join(p.split()) for p in text.split("|")} - {""}) if isinstance(text, str) else []
            found = self._sources[text] = SourceInfo("|".join(parts) or UNKNOWN_SOURCE, None, None)
        return found

    def date(self, text: Any, where: str, vendor_type: str) -> datetime | None:
        try:
            if not isinstance(text, str) or len(text) == 19 and text[4] != "-":  # not iOS 8's compact shape
                raise ValueError
            return parse_healthkit_date(text)
        except DateWithoutOffsetError:
            self.reject("date without UTC offset", where, vendor_type, "dates must carry an offset such as -0500")
        except ValueError:
            self.reject("unparsable date", where, vendor_type, "dates must look like '2024-03-10 08:15:00 -0500'")
        return None

    def interval(self, start_text: Any, end_text: Any, where: str, vendor_type: str,
                 ) -> tuple[datetime, datetime, float, float, int] | None:
        start = self.date(start_text, where, vendor_type)
        if start is None:
            return None
        end = start if end_text is None or end_text == start_text else self.date(end_text, where, vendor_type)
        if end is None:
            return None
        first, last, offset = epoch_times(start, end)
        if last < first:
            self.reject("end before start", where, vendor_type)
            return None
        if self.zone is not None:
            offset = zone_offset(self.zone, first)
        return start, end, first, last, offset

    def quantity(self, raw: Any, unit: Any, spec: HaeMetric, metric: Metric, where: str) -> float | None:
        """One value converted to ``metric``'s unit and range-checked; None (and a rejection) when unusable."""
        if raw is None:
            self.reject("missing value", where, spec.name, f"expected one of {list(spec.value_fields)}")
            return None
        if not _number(raw):
            self.reject("non-numeric value", where, spec.name)
            return None
        key = (spec.name, unit if isinstance(unit, str) else "", metric.key)
        conv = self._units.get(key)
        if conv is None:
            ucum = self.table.ucum(spec, key[1])
            try:
                if ucum is None:
                    raise ConfigError(f"unit {key[1]!r} is not known for {spec.name}")
                conv = conversion(ucum, metric.unit)
            except ConfigError as exc:
                conv = f"{exc}; expected a unit convertible to {metric.unit}"
            self._units[key] = conv
        if isinstance(conv, str):
            self.reject("unknown unit", where, spec.name, conv)
            return None
        value = converted(raw, *conv)
        if not metric.plausible(value):
            self.reject("value out of plausible range", where, spec.name, metric.range_text(key[1]))
            return None
        return value

    # ---- the body ------------------------------------------------------------------------------------------
    def container(self, prefix: str, container: dict[str, Any]) -> None:
        for key, items in container.items():
            if not isinstance(items, list):
                continue
            if key == "metrics":
                for i, entry in enumerate(items):
                    self.metric(entry, f"{prefix}metrics[{i}]")
            elif key == "workouts":
                for i, entry in enumerate(items):
                    self.points += 1
                    self.workout(entry, f"{prefix}workouts[{i}]")
            else:
                self.points += len(items)
                if items:
                    self.unmapped[key] += len(items)

    def metric(self, entry: Any, where: str) -> None:
        points = entry.get("data") if isinstance(entry, dict) else None
        if not isinstance(points, list):
            self.reject("not a metric object", where, None, "a metric needs 'name', 'units' and a 'data' array")
            return
        name = entry.get("name")
        spec = self.table.metrics.get(name) if isinstance(name, str) else None
        self.points += len(points)
        for j, point in enumerate(points):
            at = f"{where}.data[{j}]"
            if not isinstance(point, dict):
                self.reject("not a data point", at, name if isinstance(name, str) else None, "expected an object")
            elif not isinstance(name, str) or not name:
                self.reject("metric without a name", at, None)
            elif spec is None:
                # not mapped: still checked for a readable date, so a broken point is reported, not counted
                if self.date(point.get("date", point.get("startDate")), at, name) is not None:
                    self.unmapped[name] += 1
            elif spec.shape == "sleep":
                self.sleep(point, entry.get("units"), spec, at)
            else:
                self.point(point, entry.get("units"), spec, at)

    def point(self, point: dict[str, Any], unit: Any, spec: HaeMetric, where: str) -> None:
        both = "start" in point and "end" in point
        times = self.interval(point["start"] if both else point.get("date"), point["end"] if both else None, where,
                              spec.name)
        if times is None:
            return
        source = self.source(point.get("source"))
        metric = self.metrics[spec.metric]
        if spec.cgm_metric and any(s in source.name for s in spec.cgm_sources):
            metric = self.metrics[spec.cgm_metric]
        value: float | None = None
        components: tuple[tuple[str, float], ...] = ()
        if spec.shape == "panel":
            found = []
            for field_name, member in spec.components.items():
                number = self.quantity(point.get(field_name), unit, spec, self.metrics[member], where)
                if number is None:
                    return
                found.append((member, number))
            order = metric.components
            components = tuple(sorted(found, key=lambda c: order.index(c[0])))
        else:
            raw = next((point[f] for f in spec.value_fields if point.get(f) is not None), None)
            value = self.quantity(raw, unit, spec, metric, where)
            if value is None:
                return
        start, end, first, last, offset = times
        self.add(Sample(self.patient, metric.key, value, None, metric.unit, start, end, source, ORIGIN, spec.name,
                        first, last, offset, None, components, self.zone), spec.identity)

    def sleep(self, point: dict[str, Any], unit: Any, spec: HaeMetric, where: str) -> None:
        if "startDate" not in point:  # an aggregated night: totals without stage times
            self.unmapped[spec.name + AGGREGATED_SLEEP] += 1
            return
        times = self.interval(point.get("startDate"), point.get("endDate"), where, spec.name)
        if times is None:
            return
        raw = point.get("value")
        code = spec.values.get(raw) if isinstance(raw, str) else None
        if code is None:
            shown = raw if isinstance(raw, str) and len(raw) < 40 else "(not shown)"
            self.reject("unknown sleep value", where, spec.name, f"value {shown} is not mapped")
            return
        start, end, first, last, offset = times
        self.add(Sample(self.patient, spec.metric, None, code, None, start, end, self.source(point.get("source")),
                        ORIGIN, spec.name, first, last, offset, None, (), self.zone, False, raw), spec.identity)

    def workout(self, entry: Any, where: str) -> None:
        table = self.table
        vendor_type = table.workout_vendor_type
        if not isinstance(entry, dict):
            self.reject("not a workout object", where, vendor_type)
            return
        times = self.interval(entry.get("start"), entry.get("end"), where, vendor_type)
        if times is None:
            return
        given = entry.get("name")
        name = given if isinstance(given, str) and given.strip() else "Other"
        spec = HaeMetric(vendor_type, table.workout_metric)
        found: dict[str, float] = {}
        duration = entry.get("duration")
        if isinstance(duration, dict):
            self._component(found, "workout_duration", duration.get("qty"), duration.get("units"), spec,
                            f"{where}.duration")
        elif duration is not None:
            self._component(found, "workout_duration", duration, "s", spec, f"{where}.duration")
        energy_field = "activeEnergyBurned" if "activeEnergyBurned" in entry else "activeEnergy"
        distance_metric = table.distance_metric(name)
        heart = entry.get("avgHeartRate")
        if heart is None and isinstance(entry.get("heartRate"), dict):
            heart = entry["heartRate"].get("avg")
        for field_name, key, part in ((energy_field, "active_energy", entry.get(energy_field)),
                                      ("distance", distance_metric, entry.get("distance")),
                                      ("avgHeartRate", "heart_rate", heart)):
            if isinstance(part, dict):  # a v2 `activeEnergy` is a series (a list): not this
                self._component(found, key, part.get("qty"), part.get("units"), spec, f"{where}.{field_name}")
        if found.get(distance_metric) == 0:
            del found[distance_metric]  # 0 means not measured (strength training, apps that write 0)
        metric = self.metrics[table.workout_metric]
        components = tuple((k, found[k]) for k in metric.components if k in found)
        record_id = entry.get("id") if isinstance(entry.get("id"), str) else None
        start, end, first, last, offset = times
        code = _NON_WORD.sub("_", name.lower()).strip("_") or "other"
        self.add(Sample(self.patient, metric.key, None, code, None, start, end, self.source(entry.get("source")),
                        ORIGIN, vendor_type, first, last, offset, record_id, components, self.zone, False, name),
                 "slot")

    def _component(self, found: dict[str, float], key: str, raw: Any, unit: Any, spec: HaeMetric,
                   where: str) -> None:
        value = self.quantity(raw, unit, spec, self.metrics[key], where)
        if value is not None:
            found[key] = value
