"""Google Fit points (REST or Takeout shape) → canonical samples, the mapping table, and the designated-stream rule.

One parser serves every Fit source: a REST ``datasets.get`` point (``startTimeNanos`` as strings, ``value[]``) and
a Takeout ``All Data`` point (nanos as JSON numbers, ``fitValue[].value``) become the same
:class:`~mappers.sample.Sample`. Nanosecond times are integers end to end (they exceed 2^53): the instants are built
from integer microseconds and the exact nanos are kept in ``record_id`` (``"<startNs>-<endNs>"``, Fit's own dataset
id form). Fit points carry no UTC offset: the local clock is the patient's zone (DESIGN §2).

Streams: a real account holds several overlapping streams per data type (estimated_steps, merge_step_deltas, the
device's top_level, raw device and app streams, manual entries); summing them multiplies the steps. Exactly one
stream is read per feed (:func:`choose_streams`), never the union.
"""

from __future__ import annotations

import functools
import struct
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any, NamedTuple

from mappers.sample import DeviceInfo, Rejection, Sample, SourceInfo, epoch_times
from mappers.tables import Metric, metrics, parse_toml
from mappers.units import conversion
from mappers.zones import resolve_zone, zone_offset
from wearfhir.errors import ConfigError

__all__ = [
    "ORIGIN",
    "Feed",
    "FitPointParser",
    "GoogleFitTable",
    "StreamChoice",
    "choose_streams",
    "float32_shortest",
    "google_fit_table",
    "load_google_fit",
    "stream_data_type",
]

ORIGIN = "google_fit"
FALLBACKS = {"merged", "none"}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_USER_INPUT = ":user_input"


@dataclass(frozen=True, slots=True)
class Feed:
    """One metric read from one Fit data type, from one designated stream."""

    name: str
    data_type: str
    metric: str
    fields: tuple[str, ...]  # the data type's fields in REST order
    field: str | None  # the value field (None for panels)
    components: tuple[str, ...]  # panel: component metric keys, each also a field name
    factor: float
    offset: float
    float32: bool
    streams: tuple[str, ...]
    fallback: str
    codes: dict[int, str]
    alternate: tuple[str, frozenset[int], str] | None  # (field, values, metric)
    unless: str | None

    def index(self, field: str) -> int:
        """Position of ``field`` in a point's ``value[]``."""
        return self.fields.index(field)


@dataclass(frozen=True)
class GoogleFitTable:
    """The Google Fit vocabulary: feeds, workout rules, Takeout CSV columns and the known-unmapped types."""

    system: str
    feeds: dict[str, Feed]
    workout_metric: str
    not_workouts: frozenset[str]
    distance_by_activity: dict[str, str]
    default_distance: str
    workout_statistics: dict[str, str]
    csv_columns: dict[str, str]  # header text (any language) -> column key
    csv_fallback: dict[str, str]  # column key -> feed name
    csv_unmapped: dict[str, str]
    known_unmapped: dict[str, str]

    def feeds_of(self, data_type: str) -> list[Feed]:
        """The feeds that read ``data_type``."""
        return [f for f in self.feeds.values() if f.data_type == data_type]

    def workout_distance_metric(self, activity: str) -> str:
        """The metric a session's distance is coded as, by its Fit activity name (``running.jogging`` → running)."""
        return self.distance_by_activity.get(activity.split(".", 1)[0], self.default_distance)

    def covered(self) -> tuple[list[str], list[str]]:
        """(mapped data types, known but unmapped data types), sorted: the completeness report."""
        mapped = {f.data_type for f in self.feeds.values() if f.unless is None}
        return sorted(mapped), sorted(set(self.known_unmapped) - mapped)


class StreamChoice(NamedTuple):
    """The stream chosen for one feed and the rule that chose it (``designated``, ``merged``, ``raw``)."""

    feed: str
    stream: str
    rule: str


def stream_data_type(stream_id: str) -> str:
    """The data type of a stream id (``derived:com.google.weight:…`` → ``com.google.weight``)."""
    parts = stream_id.split(":", 2)
    return parts[1] if len(parts) > 1 else ""


def choose_streams(stream_ids: Iterable[str], table: GoogleFitTable,
                   sizes: Mapping[str, int] | None = None) -> dict[str, StreamChoice]:
    """The one stream to read per feed, from the streams a patient has (a ``dataSources.list`` or a Takeout).

    Rule, per feed: the first of its designated streams that exists; else (fallback ``merged``) another
    ``derived:<type>:com.google.android.gms:merge*``/``:merged`` stream, first by id; else the raw stream of that
    type with the most data (``sizes``: bytes per stream; ties and listings without sizes go by stream id). A feed
    with ``unless`` is read only when the feed it names got no stream. Pure: no I/O.
    """
    present = sorted(set(stream_ids))
    by_type: dict[str, list[str]] = {}
    for stream in present:
        by_type.setdefault(stream_data_type(stream), []).append(stream)
    sizes = sizes or {}
    chosen: dict[str, StreamChoice] = {}
    for feed in sorted(table.feeds.values(), key=lambda f: f.unless is not None):
        if feed.unless is not None and feed.unless in chosen:
            continue
        candidates = by_type.get(feed.data_type, [])
        found = next((s for s in feed.streams if s in candidates), None)
        if found is not None:
            chosen[feed.name] = StreamChoice(feed.name, found, "designated")
            continue
        if feed.fallback == "none":
            continue
        gms = f"derived:{feed.data_type}:com.google.android.gms:"
        merged = [s for s in candidates if s.startswith(gms) and s[len(gms):].startswith("merge")]
        if merged:
            chosen[feed.name] = StreamChoice(feed.name, merged[0], "merged")
            continue
        raw = [s for s in candidates if s.startswith("raw:")]
        if raw:
            best = min(raw, key=lambda s: (-sizes.get(s, 0), s))
            chosen[feed.name] = StreamChoice(feed.name, best, "raw")
    return chosen


def float32_shortest(value: float) -> float:
    """A float32 widened to a double, written as the shortest decimal that reads back as the same float32.

    Fit stores weight and height as float32; JSON shows the widened double (``72.0999984741211``). The float32
    round trip (``struct`` pack/unpack as ``'f'``) identifies such a value; the shortest of 1-9 significant digits
    that packs to the same float32 is what was entered (``72.1``). A value that is not exactly a float32 (a true
    double) is returned unchanged.
    """
    single = struct.unpack("<f", struct.pack("<f", value))[0]
    if single != value:
        return value
    for digits in range(1, 10):
        text = f"{value:.{digits}g}"
        if struct.unpack("<f", struct.pack("<f", float(text)))[0] == single:
            return float(text)
    return value


def _converted(value: float, factor: float, offset: float) -> float:
    # the HealthKit normaliser's rule: a converted value keeps 12 significant digits (drops float noise only)
    if factor == 1.0 and offset == 0.0:
        return value
    return float(f"{value * factor + offset:.12g}")


def _nanos(raw: Any) -> int:
    """An int64 nanosecond time: a JSON string (REST) or integer (Takeout); never through a float."""
    if isinstance(raw, bool):
        raise ValueError("not a time")
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str) and raw.lstrip("-").isdigit():
        return int(raw)
    raise ValueError("not an integer nanosecond time")


def _instant(nanos: int) -> datetime:
    return _EPOCH + timedelta(microseconds=nanos // 1000)


class _Blob(Exception):
    pass


def _number(value: Any) -> int | float | None:
    """One entry of ``value[]``: intVal/fpVal as written (54 stays an int, 58.0 a float); None if absent."""
    if not isinstance(value, dict):
        return None
    if "blob" in value:
        raise _Blob
    for key in ("intVal", "fpVal"):
        number = value.get(key)
        if isinstance(number, int | float) and not isinstance(number, bool):
            return number
    return None


def _device(stream_id: str) -> DeviceInfo | None:
    # stream ids read <kind>:<dataType>:<app>:<manufacturer>:<model>:<uid>:<streamName> (raw device streams may
    # lack the app); the device uid is left out
    parts = stream_id.split(":")
    if len(parts) >= 7:
        return DeviceInfo(None, parts[3] or None, parts[4] or None, None, None)
    if len(parts) == 6 and not parts[2].startswith("com."):
        return DeviceInfo(None, parts[2] or None, parts[3] or None, None, None)
    return None


class FitPointParser:
    """Fit points of one patient → samples or rejections; counts what it skipped by data type. Pure: no I/O."""

    def __init__(self, patient: str, table: GoogleFitTable | None = None, metric_table: dict[str, Metric] | None = None,
                 zone: str | None = None, fallback_offset: int = 0) -> None:
        if zone is not None and resolve_zone(zone) is None:
            raise ConfigError(f"{zone!r} is not an IANA time zone (e.g. Asia/Kolkata, America/New_York)")
        self.patient = patient
        self.table = table or google_fit_table()
        self._metrics = metric_table or metrics()
        self.zone = zone
        self.fallback_offset = fallback_offset  # seconds: the local offset when no zone is known
        self.records_by_type: Counter[str] = Counter()
        self.skipped_values: Counter[str] = Counter()  # codes a categorical feed does not map (other activities)
        self.blob_points: Counter[str] = Counter()
        self._sources: dict[str, SourceInfo] = {}

    def source(self, stream_id: str) -> SourceInfo:
        """The sample source of a stream: the stream id as name (stable across REST and Takeout for derived streams)."""
        found = self._sources.get(stream_id)
        if found is None:
            found = self._sources[stream_id] = SourceInfo(stream_id, None, _device(stream_id))
        return found

    def offset_at(self, epoch: float) -> int:
        """The patient's local UTC offset at ``epoch`` (the zone's rules, else the fallback offset)."""
        return zone_offset(self.zone, epoch) if self.zone is not None else self.fallback_offset

    def parse(self, point: Mapping[str, Any], feed: Feed, stream_id: str, where: str) -> Sample | Rejection | None:
        """One point of ``feed``'s stream; None when the point is skipped by rule (an unmapped code, a blob)."""
        vendor_type = feed.data_type
        self.records_by_type[vendor_type] += 1
        try:
            start_ns = _nanos(point.get("startTimeNanos"))
            end_ns = _nanos(point.get("endTimeNanos", point.get("startTimeNanos")))
        except ValueError:
            return self._reject("unparsable time", where, vendor_type,
                                "startTimeNanos/endTimeNanos must be integer nanoseconds")
        if end_ns < start_ns:
            return self._reject("end before start", where, vendor_type)
        raw_values = point.get("value")
        if raw_values is None:  # Takeout: fitValue[].value
            raw_values = [(v or {}).get("value") for v in point.get("fitValue") or [] if isinstance(v, dict)]
        try:
            values = [_number(v) for v in raw_values] if isinstance(raw_values, list) else []
        except _Blob:
            self.blob_points[vendor_type] += 1
            return None
        metric_key = feed.metric
        value: float | None = None
        code: str | None = None
        unit: str | None = None
        vendor_code: str | None = None
        components: tuple[tuple[str, float], ...] = ()
        if feed.codes:
            number = _at(values, feed.index(feed.field or ""))
            if not isinstance(number, int):
                return self._reject("missing value", where, vendor_type, f"{feed.field} must be an integer code")
            code = feed.codes.get(number)
            if code is None:
                self.skipped_values[vendor_type] += 1
                return None
            vendor_code = str(number)
        elif feed.components:
            parts: list[tuple[str, float]] = []
            for comp in feed.components:
                number = _at(values, feed.index(comp))
                checked = self._quantity(number, feed, comp)
                if isinstance(checked, str):
                    return self._reject(checked, where, vendor_type, comp)
                parts.append((comp, checked))
            components = tuple(parts)
            unit = self._metrics[metric_key].unit
        else:
            if feed.alternate is not None:
                alt_field, alt_values, alt_metric = feed.alternate
                if _at(values, feed.index(alt_field)) in alt_values:
                    metric_key = alt_metric
            checked = self._quantity(_at(values, feed.index(feed.field or "")), feed, metric_key)
            if isinstance(checked, str):
                return self._reject(checked, where, vendor_type, self._metrics[metric_key].display)
            value = checked
            unit = self._metrics[metric_key].unit
        start, end = _instant(start_ns), _instant(end_ns)
        if end_ns == start_ns:
            end = start
        first, last, _ = epoch_times(start, end)
        origin = point.get("originDataSourceId") or ""
        user_entered = (origin or stream_id).endswith(_USER_INPUT)
        return Sample(
            self.patient, metric_key, value, code, unit, start, end, self.source(stream_id), ORIGIN, vendor_type,
            first, last, self.offset_at(first), f"{start_ns}-{end_ns}", components, self.zone, user_entered,
            vendor_code,
        )

    def parse_dataset(self, body: Mapping[str, Any], feed: Feed) -> list[Sample | Rejection]:
        """A REST ``datasets.get`` body (an empty dataset has no ``point`` key) → samples and rejections."""
        stream_id = str(body.get("dataSourceId") or "")
        out: list[Sample | Rejection] = []
        for i, point in enumerate(body.get("point") or []):
            item = self.parse(point, feed, stream_id, f"{stream_id} point {i}")
            if item is not None:
                out.append(item)
        return out

    def _quantity(self, number: float | None, feed: Feed, metric_key: str) -> float | str:
        """The value in the metric's unit, or the reason it is rejected."""
        if number is None:
            return "missing value"
        if number != number or number in (float("inf"), float("-inf")):
            return "non-numeric value"
        if feed.float32 and isinstance(number, float):
            number = float32_shortest(number)
        value = _converted(number, feed.factor, feed.offset)
        if not self._metrics[metric_key].plausible(value):
            return "value out of plausible range"
        return value

    def _reject(self, reason: str, where: str, vendor_type: str, detail: str | None = None) -> Rejection:
        return Rejection(ORIGIN, reason, where, vendor_type, detail)


def _at(values: list[int | float | None], index: int) -> int | float | None:
    return values[index] if 0 <= index < len(values) else None


# ---- the table ----------------------------------------------------------------------------------------------------
def _require(row: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in row:
        raise ConfigError(f"{where}: missing field {key!r}")
    return row[key]


def _feed(name: str, row: Mapping[str, Any], types: Mapping[str, list[str]], table: dict[str, Metric]) -> Feed:
    where = f"google_fit.toml [feeds.{name}]"
    data_type = _require(row, "type", where)
    if data_type not in types:
        raise ConfigError(f"{where}: data type {data_type!r} has no [types] row")
    fields = tuple(types[data_type])
    metric_key = _require(row, "metric", where)
    if metric_key not in table:
        raise ConfigError(f"{where}: metric {metric_key!r} is not in metrics.toml")
    metric = table[metric_key]
    field, components = row.get("field"), tuple(row.get("components", ()))
    for f in (field, *components):
        if f is not None and f not in fields:
            raise ConfigError(f"{where}: field {f!r} is not a field of {data_type}")
    if metric.kind == "panel":
        if set(components) != set(metric.components):
            raise ConfigError(f"{where}: a panel feed needs components {list(metric.components)}")
    elif field is None:
        raise ConfigError(f"{where}: missing field 'field'")
    codes = {int(k): v for k, v in row.get("codes", {}).items()}
    for code in codes.values():
        if code not in metric.codes:
            raise ConfigError(f"{where}: code {code!r} is not a code of metric {metric_key}")
    if metric.kind == "category" and not codes:
        raise ConfigError(f"{where}: a category metric needs codes")
    factor, offset = 1.0, 0.0
    if metric.kind in ("quantity", "panel"):
        unit = _require(row, "unit", where)
        targets = {table[c].unit for c in components} or {metric.unit}
        for target in targets:
            factor, offset = conversion(unit, target)  # ConfigError names the pair
    alternate = None
    if "alternate" in row:
        alt = row["alternate"]
        alt_metric = _require(alt, "metric", where)
        if alt_metric not in table or table[alt_metric].unit != metric.unit:
            raise ConfigError(f"{where}: alternate metric {alt_metric!r} must exist with unit {metric.unit}")
        if _require(alt, "field", where) not in fields:
            raise ConfigError(f"{where}: alternate field {alt['field']!r} is not a field of {data_type}")
        alternate = (alt["field"], frozenset(int(v) for v in _require(alt, "values", where)), alt_metric)
    streams = tuple(_require(row, "streams", where))
    for stream in streams:
        if stream_data_type(stream) != data_type or not stream.startswith(("derived:", "raw:")):
            raise ConfigError(f"{where}: stream {stream!r} is not a {data_type} stream id")
    fallback = row.get("fallback", "merged")
    if fallback not in FALLBACKS:
        raise ConfigError(f"{where}: fallback {fallback!r} is not one of {sorted(FALLBACKS)}")
    return Feed(name, data_type, metric_key, fields, field, components, factor, offset, bool(row.get("float32")),
                streams, fallback, codes, alternate, row.get("unless"))


def load_google_fit(text: str, metric_table: dict[str, Metric]) -> GoogleFitTable:
    """Parse and validate ``google_fit.toml`` text against the metric table; a bad row fails here, named."""
    data = parse_toml(text, "google_fit.toml")
    types = data.get("types", {})
    feeds = {name: _feed(name, row, types, metric_table) for name, row in data.get("feeds", {}).items()}
    for feed in feeds.values():
        if feed.unless is not None and feed.unless not in feeds:
            raise ConfigError(f"google_fit.toml [feeds.{feed.name}]: unless {feed.unless!r} is not a feed")
    workout = _require(data, "workout", "google_fit.toml")
    workout_metric = _require(workout, "metric", "google_fit.toml [workout]")
    if metric_table.get(workout_metric) is None or metric_table[workout_metric].kind != "workout":
        raise ConfigError(f"google_fit.toml [workout]: {workout_metric!r} is not a workout metric")
    parts = metric_table[workout_metric].components
    by_activity = dict(workout.get("distance_by_activity", {}))
    default_distance = workout.get("default_distance", "workout_distance")
    for key in [*by_activity.values(), default_distance]:
        if key not in parts:
            raise ConfigError(f"google_fit.toml [workout]: {key!r} is not a component of {workout_metric!r}")
    statistics = dict(workout.get("statistics", {}))
    for stat, key in statistics.items():
        if key != "distance" and key not in parts:
            raise ConfigError(f"google_fit.toml [workout.statistics]: {stat} maps to unknown component {key!r}")
    csv = data.get("csv", {})
    columns: dict[str, str] = {}
    for key, headers in csv.get("columns", {}).items():
        for header in headers:
            if columns.setdefault(header.strip().casefold(), key) != key:
                raise ConfigError(f"google_fit.toml [csv.columns]: header {header!r} names two columns")
    csv_fallback = dict(csv.get("fallback", {}))
    csv_unmapped = dict(csv.get("known_unmapped", {}))
    for key in set(columns.values()) - set(csv_fallback) - set(csv_unmapped):
        raise ConfigError(f"google_fit.toml [csv]: column {key!r} is neither a fallback nor known_unmapped")
    for key, feed_name in csv_fallback.items():
        if feed_name not in feeds:
            raise ConfigError(f"google_fit.toml [csv.fallback]: {key} names unknown feed {feed_name!r}")
    known = dict(data.get("known_unmapped", {}))
    overlap = {f.data_type for f in feeds.values() if f.unless is None} & set(known)
    if overlap:
        raise ConfigError(f"google_fit.toml: {sorted(overlap)} are both mapped and listed as unmapped")
    return GoogleFitTable(
        system=_require(data, "system", "google_fit.toml"),
        feeds=feeds,
        workout_metric=workout_metric,
        not_workouts=frozenset(workout.get("not_workouts", ())),
        distance_by_activity=by_activity,
        default_distance=default_distance,
        workout_statistics=statistics,
        csv_columns=columns,
        csv_fallback=csv_fallback,
        csv_unmapped=csv_unmapped,
        known_unmapped=known,
    )


@functools.cache
def google_fit_table() -> GoogleFitTable:
    """The packaged Google Fit table, loaded and validated once."""
    text = resources.files("mappers").joinpath("data", "google_fit.toml").read_text(encoding="utf-8")
    return load_google_fit(text, metrics())
