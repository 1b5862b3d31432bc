"""UCUM unit conversion: linear factors (plus the one affine case, °F) between the units wearfhir meets."""

from __future__ import annotations

from wearfhir.errors import ConfigError

__all__ = ["GLUCOSE_MG_PER_DL_PER_MMOL_L", "KNOWN_UNITS", "conversion", "convert"]

# Glucose molar mass 180.156 g/mol: 1 mmol/L = 18.0156 mg/dL. HealthKit exports state the molar mass they
# used in the unit string itself (``mmol<180.1558800000541>/L``); that one takes precedence when present.
GLUCOSE_MG_PER_DL_PER_MMOL_L = 18.0156

# (from, to) -> (factor, offset): to = from * factor + offset. Sources: UCUM definitions
# (unitsofmeasure.org): [lb_av] = 0.45359237 kg, [mi_i] = 1609.344 m, [in_i] = 2.54 cm,
# [ft_i] = 30.48 cm, [yd_i] = 91.44 cm, [oz_av] = 28.349523125 g, [stone_av] = 14 [lb_av];
# thermochemical calorie: 1 kcal = 4.184 kJ.
_LINEAR: dict[tuple[str, str], tuple[float, float]] = {
    ("kJ", "kcal"): (1 / 4.184, 0.0),
    ("cal", "kcal"): (0.001, 0.0),
    ("[lb_av]", "kg"): (0.45359237, 0.0),
    ("[oz_av]", "kg"): (0.028349523125, 0.0),
    ("[stone_av]", "kg"): (6.35029318, 0.0),
    ("g", "kg"): (0.001, 0.0),
    ("[mi_i]", "m"): (1609.344, 0.0),
    ("km", "m"): (1000.0, 0.0),
    ("cm", "m"): (0.01, 0.0),
    ("mm", "m"): (0.001, 0.0),
    ("[ft_i]", "m"): (0.3048, 0.0),
    ("[yd_i]", "m"): (0.9144, 0.0),
    ("[in_i]", "m"): (0.0254, 0.0),
    ("m", "cm"): (100.0, 0.0),
    ("mm", "cm"): (0.1, 0.0),
    ("[in_i]", "cm"): (2.54, 0.0),
    ("[ft_i]", "cm"): (30.48, 0.0),
    ("[degF]", "Cel"): (5 / 9, -160 / 9),
    ("1", "%"): (100.0, 0.0),
    ("mmol/L", "mg/dL"): (GLUCOSE_MG_PER_DL_PER_MMOL_L, 0.0),
    ("s", "min"): (1 / 60, 0.0),
    ("h", "min"): (60.0, 0.0),
    ("/s", "/min"): (60.0, 0.0),
    ("s", "ms"): (1000.0, 0.0),
}

KNOWN_UNITS: frozenset[str] = frozenset(
    {u for pair in _LINEAR for u in pair}
    | {"/min", "ms", "{steps}", "kcal", "kg/m2", "mL/min/kg", "mm[Hg]", "mg/dL", "%", "Cel", "min", "cm", "1"}
    | {"/d", "kcal/d", "d"}  # daily totals and days
)


def conversion(from_unit: str, to_unit: str) -> tuple[float, float]:
    """Return ``(factor, offset)`` converting ``from_unit`` to ``to_unit``; raise ConfigError if unknown."""
    if from_unit == to_unit:
        return (1.0, 0.0)
    try:
        return _LINEAR[(from_unit, to_unit)]
    except KeyError:
        raise ConfigError(f"no conversion from UCUM unit {from_unit!r} to {to_unit!r}") from None


def convert(value: float, from_unit: str, to_unit: str) -> float:
    """Convert one value between UCUM units."""
    factor, offset = conversion(from_unit, to_unit)
    return value * factor + offset
