"""Load and validate the mapping tables (``mappers/data/*.toml``) into typed, immutable objects.

A bad table fails here, at start-up, with the offending row named: never on the millionth sample.
"""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from mappers.units import KNOWN_UNITS, conversion
from wearfhir.errors import ConfigError

__all__ = [
    "Coding",
    "DailyCoding",
    "HealthKitTable",
    "HealthKitType",
    "Metric",
    "healthkit_table",
    "load_healthkit",
    "load_metrics",
    "metrics",
]

CATEGORIES = {"", "vital-signs", "activity", "laboratory"}
KINDS = {"quantity", "category", "panel", "workout"}
AGGREGATIONS = {"sampled", "cumulative", "none"}
RAW_DEFAULTS = {"spot", "dense"}
# Summary windows a metric can have (aggregates.accumulate.WINDOWS), and the metric kinds each applies to.
SUMMARY_WINDOWS = {"hour": {"quantity"}, "day": {"quantity"}, "night": {"category"}, "cgm": {"quantity"}}
DEFAULT_SOURCE_PRIORITY = ("Watch", "iPhone")


@dataclass(frozen=True, slots=True)
class Coding:
    """One FHIR Coding: system, code and display."""

    system: str
    code: str
    display: str | None = None

    def as_fhir(self) -> dict[str, str]:
        """The Coding as a FHIR JSON dict."""
        out = {"system": self.system, "code": self.code}
        if self.display:
            out["display"] = self.display
        return out


@dataclass(frozen=True, slots=True)
class Metric:
    """A vendor-neutral measured concept and how it is written as FHIR."""

    key: str
    display: str
    codings: tuple[Coding, ...]
    unit: str
    unit_display: str
    category: str
    kind: str
    aggregation: str
    raw_default: str
    value_range: tuple[float, float] | None = None
    decimals: int = 4
    components: tuple[str, ...] = ()
    codes: dict[str, str] = field(default_factory=dict)
    summaries: tuple[str, ...] = ()
    daily: DailyCoding | None = None
    bands: tuple[float, ...] = ()
    source_priority: tuple[str, ...] = DEFAULT_SOURCE_PRIORITY

    def plausible(self, value: float) -> bool:
        """Whether a value (in the canonical unit) lies within the metric's plausible range, if it has one."""
        bounds = self.value_range
        return bounds is None or bounds[0] <= value <= bounds[1]

    def range_text(self, written_unit: str) -> str:
        """The rejection detail for an implausible value converted from ``written_unit`` (bounds, never the value)."""
        low, high = self.value_range or (float("-inf"), float("inf"))
        return f"{self.display} must be within {low:g}-{high:g} {self.unit} after conversion from {written_unit!r}"

    def summary_codings(self, window: str) -> tuple[tuple[Coding, ...], str, str]:
        """(codings, UCUM unit, unit text) of a summary for ``window``: daily totals may have their own code."""
        if window == "day" and self.daily is not None:
            return self.daily.codings, self.daily.unit, self.daily.unit_display
        return self.codings, self.unit, self.unit_display


@dataclass(frozen=True, slots=True)
class DailyCoding:
    """The code and unit of a metric's daily total, where a 24-hour LOINC code exists (steps: 41950-7)."""

    codings: tuple[Coding, ...]
    unit: str
    unit_display: str


@dataclass(frozen=True, slots=True)
class HealthKitType:
    """One mapped HealthKit type identifier."""

    identifier: str
    metric: str
    unit_overrides: dict[str, str]
    values: dict[str, str]
    cgm_metric: str | None = None
    cgm_sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class HealthKitTable:
    """The HealthKit vocabulary: types, correlations, workout statistics, units, known-unmapped types."""

    system: str
    units: dict[str, str]
    types: dict[str, HealthKitType]
    correlations: dict[str, tuple[str, dict[str, str]]]
    workout_metric: str
    workout_statistics: dict[str, str]
    known_unmapped: dict[str, str]
    known_unmapped_prefixes: dict[str, str] = field(default_factory=dict)
    distance_by_activity: dict[str, str] = field(default_factory=dict)  # workoutActivityType → distance metric
    default_distance: str = "distance_walking_running"  # the metric of any other activity's totalDistance

    def unmapped_reason(self, identifier: str) -> str | None:
        """Why a known type is not mapped (listed by name or by prefix, e.g. every ``…Dietary*`` type); None if
        the type is not a known-unmapped one."""
        reason = self.known_unmapped.get(identifier)
        if reason is None:
            for prefix, why in self.known_unmapped_prefixes.items():
                if identifier.startswith(prefix):
                    return why
        return reason

    def workout_distance_metric(self, activity: str) -> str:
        """The metric a workout's ``totalDistance`` is coded as, by its activity type."""
        return self.distance_by_activity.get(activity, self.default_distance)

    def unit_conversion(self, hk_type: HealthKitType, export_unit: str, to_unit: str) -> tuple[float, float]:
        """``(factor, offset)`` from an export unit string of ``hk_type`` to ``to_unit``.

        Raises ConfigError (caught per record and reported as a rejection) for a unit it cannot convert.
        """
        ucum = hk_type.unit_overrides.get(export_unit) or self.units.get(export_unit)
        if ucum is None and export_unit.startswith("mmol<") and export_unit.endswith(">/L"):
            # HealthKit writes the molar mass it used: mmol<180.1558800000541>/L
            try:
                molar_mass = float(export_unit[5:-3])
            except ValueError:
                raise ConfigError(f"unreadable molar unit {export_unit!r}") from None
            if to_unit != "mg/dL" or not 10 < molar_mass < 10_000:
                raise ConfigError(f"cannot convert {export_unit!r} to {to_unit!r}")
            return (molar_mass / 10.0, 0.0)
        if ucum is None:
            raise ConfigError(f"unknown unit {export_unit!r} for {hk_type.identifier}")
        return conversion(ucum, to_unit)

    def covered(self) -> tuple[list[str], list[str]]:
        """(mapped identifiers, known but unmapped identifiers), sorted: the completeness report."""
        mapped = sorted({*self.types, *self.correlations, "HKWorkoutTypeIdentifier"})
        return mapped, sorted(self.known_unmapped)


def _require(row: dict[str, Any], key: str, where: str) -> Any:
    if key not in row:
        raise ConfigError(f"{where}: missing field {key!r}")
    return row[key]


def _metric_from_row(key: str, row: dict[str, Any]) -> Metric:
    where = f"metrics.toml [{key}]"
    codings = tuple(
        Coding(_require(c, "system", where), _require(c, "code", where), c.get("display"))
        for c in _require(row, "codings", where)
    )
    unit = _require(row, "unit", where)
    if unit not in KNOWN_UNITS:
        raise ConfigError(f"{where}: unit {unit!r} is not a UCUM unit wearfhir knows")
    checks = {
        "category": CATEGORIES,
        "kind": KINDS,
        "aggregation": AGGREGATIONS,
        "raw": RAW_DEFAULTS,
    }
    for name, allowed in checks.items():
        if _require(row, name, where) not in allowed:
            raise ConfigError(f"{where}: {name} {row[name]!r} is not one of {sorted(allowed)}")
    value_range = row.get("range")
    if value_range is not None:
        if len(value_range) != 2 or not value_range[0] < value_range[1]:
            raise ConfigError(f"{where}: range must be [low, high] with low < high")
        value_range = (float(value_range[0]), float(value_range[1]))
    codes = {c["code"]: c["display"] for c in row.get("codes", [])}
    if row["kind"] == "category" and not codes:
        raise ConfigError(f"{where}: a category metric needs codes")
    summaries = tuple(row.get("summaries", ()))
    for window in summaries:
        if window not in SUMMARY_WINDOWS:
            raise ConfigError(f"{where}: summary window {window!r} is not one of {sorted(SUMMARY_WINDOWS)}")
        if row["kind"] not in SUMMARY_WINDOWS[window]:
            raise ConfigError(f"{where}: a {row['kind']} metric cannot have {window!r} summaries")
        if window in ("hour", "day") and row["aggregation"] == "none":
            raise ConfigError(f"{where}: {window!r} summaries need aggregation sampled or cumulative")
    if "cgm" in summaries and unit != "mg/dL":
        raise ConfigError(f"{where}: 'cgm' summaries need glucose in mg/dL")
    bands = tuple(float(b) for b in row.get("bands", ()))
    if list(bands) != sorted(set(bands)):
        raise ConfigError(f"{where}: bands must be strictly increasing band edges")
    if "cgm" in summaries and len(bands) != 4:
        raise ConfigError(f"{where}: 'cgm' summaries need the four CGM band edges (very low/low/target/high)")
    daily = None
    if "daily" in row:
        d = row["daily"]
        d_where = f"{where}.daily"
        daily_unit = _require(d, "unit", d_where)
        if daily_unit not in KNOWN_UNITS:
            raise ConfigError(f"{d_where}: unit {daily_unit!r} is not a UCUM unit wearfhir knows")
        daily = DailyCoding(
            tuple(Coding(_require(c, "system", d_where), _require(c, "code", d_where), c.get("display"))
                  for c in _require(d, "codings", d_where)),
            daily_unit, _require(d, "unit_display", d_where))
    priority = tuple(row.get("source_priority", DEFAULT_SOURCE_PRIORITY))
    return Metric(
        key=key,
        display=_require(row, "display", where),
        codings=codings,
        unit=unit,
        unit_display=_require(row, "unit_display", where),
        category=row["category"],
        kind=row["kind"],
        aggregation=row["aggregation"],
        raw_default=row["raw"],
        value_range=value_range,
        decimals=int(row.get("decimals", 4)),
        components=tuple(row.get("components", ())),
        codes=codes,
        summaries=summaries,
        daily=daily,
        bands=bands,
        source_priority=priority,
    )


def load_metrics(text: str) -> dict[str, Metric]:
    """Parse and validate ``metrics.toml`` text."""
    data = parse_toml(text, "metrics.toml")
    out = {key: _metric_from_row(key, row) for key, row in data.items()}
    seen: dict[tuple[str, str], str] = {}
    for metric in out.values():
        if metric.codings:
            primary = (metric.codings[0].system, metric.codings[0].code)
            if primary in seen:
                raise ConfigError(
                    f"metrics.toml: {metric.key} and {seen[primary]} share the primary code {primary[1]}"
                )
            seen[primary] = metric.key
        for comp in metric.components:
            if comp not in out:
                raise ConfigError(f"metrics.toml [{metric.key}]: component {comp!r} is not a metric")
    return out


def parse_toml(text: str, name: str) -> dict[str, Any]:
    """TOML text of a mapping table; a syntax error is a ConfigError naming the file."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{name}: {exc}") from None


def load_healthkit(text: str, metric_table: dict[str, Metric]) -> HealthKitTable:
    """Parse and validate ``healthkit.toml`` text against the metric table."""
    data = parse_toml(text, "healthkit.toml")
    units: dict[str, str] = data.get("units", {})
    for export_unit, ucum in units.items():
        if ucum not in KNOWN_UNITS:
            raise ConfigError(f"healthkit.toml [units]: {export_unit!r} maps to unknown UCUM {ucum!r}")

    def metric_of(name: str, where: str) -> Metric:
        if name not in metric_table:
            raise ConfigError(f"healthkit.toml {where}: metric {name!r} is not in metrics.toml")
        return metric_table[name]

    types: dict[str, HealthKitType] = {}
    for ident, row in data.get("types", {}).items():
        where = f"[types.{ident}]"
        metric = metric_of(_require(row, "metric", where), where)
        overrides = dict(row.get("unit", {}))
        for ucum in overrides.values():
            if ucum not in KNOWN_UNITS:
                raise ConfigError(f"healthkit.toml {where}: unknown UCUM unit {ucum!r}")
        values = dict(row.get("values", {}))
        for code in values.values():
            if code not in metric.codes:
                raise ConfigError(f"healthkit.toml {where}: value code {code!r} not in metric {metric.key}")
        if metric.kind == "quantity":
            # every export unit this type can meet must convert to the metric's canonical unit
            candidates = set(overrides.values()) or {u for u in units.values() if converts(u, metric.unit)}
            if not candidates:
                raise ConfigError(f"healthkit.toml {where}: no export unit converts to {metric.unit!r}")
        cgm_metric = row.get("cgm_metric")
        if cgm_metric is not None:
            metric_of(cgm_metric, where)
        types[ident] = HealthKitType(
            identifier=ident,
            metric=metric.key,
            unit_overrides=overrides,
            values=values,
            cgm_metric=cgm_metric,
            cgm_sources=tuple(row.get("cgm_sources", ())),
        )
    correlations: dict[str, tuple[str, dict[str, str]]] = {}
    for ident, row in data.get("correlations", {}).items():
        where = f"[correlations.{ident}]"
        panel = metric_of(_require(row, "metric", where), where)
        members = dict(_require(row, "members", where))
        for member_type, member_metric in members.items():
            metric_of(member_metric, where)
            if member_type not in types:
                raise ConfigError(f"healthkit.toml {where}: member {member_type} is not a mapped type")
        correlations[ident] = (panel.key, members)
    workout = data.get("workout", {})
    workout_metric = metric_of(_require(workout, "metric", "[workout]"), "[workout]").key
    statistics = dict(workout.get("statistics", {}))
    by_activity = dict(workout.get("distance_by_activity", {}))
    default_distance = workout.get("default_distance", "distance_walking_running")
    workout_components = metric_table[workout_metric].components
    for stat_metric in [*statistics.values(), *by_activity.values(), default_distance]:
        metric_of(stat_metric, "[workout]")
        if stat_metric not in workout_components:
            raise ConfigError(f"healthkit.toml [workout]: {stat_metric!r} is not a component of {workout_metric!r}")
    known = dict(data.get("known_unmapped", {}))
    prefixes = dict(data.get("known_unmapped_prefixes", {}))
    overlap = set(known) & (set(types) | set(correlations))
    overlap |= {t for t in (*types, *correlations) if any(t.startswith(p) for p in prefixes)}
    if overlap:
        raise ConfigError(f"healthkit.toml: {sorted(overlap)} are both mapped and listed as unmapped")
    return HealthKitTable(
        system=_require(data, "system", "healthkit.toml"),
        units=units,
        types=types,
        correlations=correlations,
        workout_metric=workout_metric,
        workout_statistics=statistics,
        known_unmapped=known,
        known_unmapped_prefixes=prefixes,
        distance_by_activity=by_activity,
        default_distance=default_distance,
    )


def converts(from_unit: str, to_unit: str) -> bool:
    """Whether a value in ``from_unit`` can be converted to ``to_unit`` (mappers.units)."""
    try:
        conversion(from_unit, to_unit)
    except ConfigError:
        return False
    return True


def _data_text(name: str) -> str:
    return resources.files("mappers").joinpath("data", name).read_text(encoding="utf-8")


@functools.cache
def metrics() -> dict[str, Metric]:
    """The packaged metric table, loaded and validated once."""
    return load_metrics(_data_text("metrics.toml"))


@functools.cache
def healthkit_table() -> HealthKitTable:
    """The packaged HealthKit table, loaded and validated once."""
    return load_healthkit(_data_text("healthkit.toml"), metrics())

