"""FHIR R4 validation of what wearfhir writes: fhir.resources (R4B models) plus the checks it lacks.

fhir.resources does not catch a bad ``status`` code, over-long ids, malformed references or empty
arrays (DESIGN §7), and evaluates no invariant, so those are checked here too: the R4 invariants
(obs-7, vs-1 …, dom-*, ele-1, txt-*) with a FHIRPath engine (:mod:`mappers.invariants`, ~1 ms a resource).
Used by tests, ``wearfhir validate`` and, optionally, 1-in-N at run time.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from mappers.invariants import invariant_errors

__all__ = ["validate_ndjson", "validate_resource"]

_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_REFERENCE = re.compile(r"[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64}")
_STATUS = {
    "Observation": {"registered", "preliminary", "final", "amended", "corrected", "cancelled",
                    "entered-in-error", "unknown"},
    "Device": {"active", "inactive", "entered-in-error", "unknown"},
    "DiagnosticReport": {"registered", "partial", "preliminary", "final", "amended", "corrected", "appended",
                         "cancelled", "entered-in-error", "unknown"},
}
_INPUT_VALUE = re.compile(r"input_value=.*?, (?=input_type=)")
_MODELS: dict[str, Any] = {}


def _model(resource_type: str) -> Any:
    model = _MODELS.get(resource_type)
    if model is None:
        module = importlib.import_module(f"fhir.resources.R4B.{resource_type.lower()}")
        model = _MODELS[resource_type] = getattr(module, resource_type)
    return model


def _walk(node: Any, path: str) -> Iterator[str]:
    if isinstance(node, dict):
        if not node:
            yield f"{path}: empty object"
        for key, value in node.items():
            if key == "reference" and isinstance(value, str) and not _REFERENCE.fullmatch(value):
                yield f"{path}.reference: malformed reference {value!r}"
            yield from _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        if not node:
            yield f"{path}: empty array"
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}[{i}]")
    elif isinstance(node, str) and node == "":
        yield f"{path}: empty string"


def validate_resource(resource: dict[str, Any]) -> list[str]:
    """Problems with one resource (empty when it is valid FHIR R4 as wearfhir writes it)."""
    problems: list[str] = []
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str):
        return ["no resourceType"]
    rid = resource.get("id")
    if rid is not None and not (isinstance(rid, str) and _ID.fullmatch(rid)):
        problems.append(f"id {rid!r} is not [A-Za-z0-9-.]{{1,64}}")
    status = resource.get("status")
    if rtype in _STATUS and status not in _STATUS[rtype]:
        problems.append(f"status {status!r} is not a {rtype} status code")
    problems.extend(_walk(resource, rtype))
    problems.extend(invariant_errors(resource))
    try:
        _model(rtype).model_validate(resource)
    except Exception as exc:  # noqa: BLE001 - any model error is a finding to report
        text = _INPUT_VALUE.sub("", str(exc))  # pydantic echoes the offending value: PHI stays out
        problems.append(text.splitlines()[0] + " " + " | ".join(text.splitlines()[1:4]))
    return problems


def validate_ndjson(path: Path) -> tuple[int, list[tuple[int, str]]]:
    """Validate every line of an NDJSON file: (resources checked, [(line, problem)])."""
    errors: list[tuple[int, str]] = []
    checked = 0
    with path.open("rb") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            checked += 1
            try:
                resource = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                errors.append((number, f"not JSON: {exc}"))
                continue
            errors.extend((number, p) for p in validate_resource(resource))
    return checked, errors
