"""FHIR R4 invariants of what wearfhir writes, evaluated with a FHIRPath engine (fhirpathpy). Pure.

fhir.resources checks types and cardinalities but evaluates no invariant; the HL7 validator and EHR importers
do. The expressions below are copied verbatim from the R4 (4.0.1) definitions:

* ``dom-2`` … ``dom-6``: DomainResource (hl7.org/fhir/R4/domainresource.html, StructureDefinition
  ``http://hl7.org/fhir/StructureDefinition/DomainResource``);
* ``ele-1``: Element (hl7.org/fhir/R4/element.html), on every element of the resource;
* ``txt-1``, ``txt-2``: Narrative.div (hl7.org/fhir/R4/narrative.html);
* ``obs-3`` (Observation.referenceRange), ``obs-6``, ``obs-7``: Observation (hl7.org/fhir/R4/observation.html);
* ``vs-1`` (Observation.effective[x]), ``vs-2``, ``vs-3`` (Observation.component): the vital-signs profile
  (hl7.org/fhir/R4/observation-vitalsigns.html), evaluated where an Observation is a vital sign (category
  ``vital-signs``) or claims a vital-signs profile;
* ``pat-1``: Patient.contact (hl7.org/fhir/R4/patient.html). R4's Device defines no invariant of its own.

Two functions the R4 expressions use are FHIR extensions to FHIRPath that fhirpathpy lacks, so they are
supplied here (hl7.org/fhir/R4/fhirpath.html#functions): ``hasValue()`` (the element is a primitive with a
value) and ``htmlChecks()`` (the narrative is XHTML of the allowed subset, with some non-whitespace content).

Each expression is compiled once (``_compiled``) and evaluated as ``<context>.select(<expression>)`` on the
resource with ``%resource`` / ``%rootResource`` bound to it.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET  # noqa: S405 - DTDs are refused before parsing (html_checks)
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from typing import Any

import fhirpathpy
from fhirpathpy.models import models

__all__ = ["INVARIANTS", "Invariant", "html_checks", "invariant_errors"]

XHTML = "http://www.w3.org/1999/xhtml"
VITAL_SIGNS_PROFILE = "http://hl7.org/fhir/StructureDefinition/vitalsigns"


@dataclass(frozen=True, slots=True)
class Invariant:
    """One R4 constraint: key, human text, the element it is defined on, and its FHIRPath expression."""

    key: str
    human: str
    context: str  # a FHIRPath path from the resource ("" = the resource itself)
    expression: str
    resource_types: frozenset[str] = frozenset()  # empty: every DomainResource
    vital_signs_only: bool = False
    severity: str = "error"  # "warning": reported only when asked (dom-6)


_OBS = frozenset({"Observation"})
# Expressions copied from the R4 4.0.1 StructureDefinitions (see the module docstring for the pages).
INVARIANTS: tuple[Invariant, ...] = (
    Invariant("dom-2", "If the resource is contained in another resource, it SHALL NOT contain nested Resources",
              "", "contained.contained.empty()"),
    Invariant("dom-3", "If the resource is contained in another resource, it SHALL be referred to from elsewhere in "
              "the resource or SHALL refer to the containing resource", "",
              "contained.where((('#'+id in (%resource.descendants().reference | %resource.descendants().as(canonical)"
              " | %resource.descendants().as(uri) | %resource.descendants().as(url))) or descendants().where("
              "reference = '#').exists() or descendants().where(as(canonical) = '#').exists() or descendants()."
              "where(as(canonical) = '#').exists()).not()).trace('unmatched', id).empty()"),
    Invariant("dom-4", "If a resource is contained in another resource, it SHALL NOT have a meta.versionId or a "
              "meta.lastUpdated", "", "contained.meta.versionId.empty() and contained.meta.lastUpdated.empty()"),
    Invariant("dom-5", "If a resource is contained in another resource, it SHALL NOT have a security label", "",
              "contained.meta.security.empty()"),
    # a best-practice warning in R4: summaries carry a narrative, raw samples (millions of them) do not
    Invariant("dom-6", "A resource should have narrative for robust management", "", "text.`div`.exists()",
              severity="warning"),
    Invariant("ele-1", "All FHIR elements must have a @value or children", "descendants()",
              "hasValue() or (children().count() > id.count())"),
    Invariant("txt-1", "The narrative SHALL contain only the basic html formatting elements and attributes described "
              "in chapters 7-11 (except section 4 of chapter 9) and 15 of the HTML 4.0 standard, <a> elements "
              "(either name or href), images and internally contained style attributes", "text.`div`",
              "htmlChecks()"),
    Invariant("txt-2", "The narrative SHALL have some non-whitespace content", "text.`div`", "htmlChecks()"),
    Invariant("obs-3", "Must have at least a low or a high or text", "referenceRange",
              "low.exists() or high.exists() or text.exists()", _OBS),
    Invariant("obs-6", "dataAbsentReason SHALL only be present if Observation.value[x] is not present", "",
              "dataAbsentReason.empty() or value.empty()", _OBS),
    Invariant("obs-7", "If Observation.code is the same as an Observation.component.code then the value element "
              "associated with the code SHALL NOT be present", "",
              "value.empty() or component.code.where(coding.intersect(%resource.code.coding).exists()).empty()", _OBS),
    Invariant("vs-1", "if Observation.effective[x] is dateTime and has a value then that value shall be precise to "
              "the day", "effective", "($this as dateTime).toString().length() >= 8", _OBS, True),
    Invariant("vs-2", "If there is no component or hasMember element then either a value[x] or a data absent reason "
              "must be present.", "",
              "(component.empty() and hasMember.empty()) implies (dataAbsentReason.exists() or value.exists())",
              _OBS, True),
    Invariant("vs-3", "If there is no a value a data absent reason must be present", "component",
              "value.exists() or dataAbsentReason.exists()", _OBS, True),
    Invariant("pat-1", "SHALL at least contain a contact's details or a reference to an organization", "contact",
              "name.exists() or telecom.exists() or address.exists() or organization.exists()",
              frozenset({"Patient"})),
)

_SEVERITY = {i.key: i.severity for i in INVARIANTS}

# -- the FHIR-specific FHIRPath functions fhirpathpy does not implement ---------------------------------------

# HTML 4.0 chapters 7-11 and 15 (as the R4 narrative rules list them), plus <a> and <img>
_ALLOWED_ELEMENTS = frozenset(
    "a abbr acronym address b big blockquote br caption cite code col colgroup dd dfn div dl dt em h1 h2 h3 h4 h5 "
    "h6 hr i img kbd li ol p pre q samp small span strong sub sup table tbody td tfoot th thead tr tt ul var".split())
_ALLOWED_ATTRIBUTES = frozenset(
    "abbr accesskey align alt axis bgcolor border cellhalign cellpadding cellspacing cellvalign char charoff charset "
    "cite class colspan compact coords dir frame headers height href hreflang hspace id lang longdesc name nowrap "
    "rel rev rowspan rules scope shape span src start style summary tabindex title type valign value vspace width"
    .split())
_URL_ATTRIBUTES = frozenset({"href", "src", "longdesc", "cite"})
_BAD_URL = re.compile(r"^\s*(javascript|vbscript|data):", re.IGNORECASE)


def html_checks(div: str) -> list[str]:
    """Why a narrative ``div`` breaks txt-1 (allowed XHTML only) or txt-2 (some content): empty when it is fine.

    Problems name elements and attributes, never text or attribute values (a narrative holds PHI)."""
    if "<!" in div or "<?" in div:  # a DTD, entity declarations, CDATA, comments or processing instructions
        return ["txt-1: declarations, comments and processing instructions are not allowed"]
    try:
        root = ET.fromstring(div)  # noqa: S314 - no DTD (refused above): no entity expansion beyond XML's own
    except ET.ParseError as exc:
        return [f"txt-1: not well-formed XHTML ({exc})"]
    problems = []
    if root.tag != f"{{{XHTML}}}div":
        problems.append("txt-1: the narrative is not a <div> in the XHTML namespace")
    for element in root.iter():
        namespace, _, name = element.tag.rpartition("}")
        if namespace != "{" + XHTML or name not in _ALLOWED_ELEMENTS:
            problems.append(f"txt-1: element <{name}> is not allowed")
        for attribute, value in element.attrib.items():
            if attribute.startswith("{") or attribute not in _ALLOWED_ATTRIBUTES:
                problems.append(f"txt-1: attribute {attribute!r} on <{name}> is not allowed")
            elif attribute in _URL_ATTRIBUTES and _BAD_URL.match(value):
                problems.append(f"txt-1: a script or data URL in {attribute!r} on <{name}>")
    if not "".join(root.itertext()).strip() and root.find(f".//{{{XHTML}}}img") is None:
        problems.append("txt-2: the narrative has no non-whitespace content")
    return problems


def _has_value(inputs: list[Any]) -> list[bool]:
    """FHIR's ``hasValue()``: the single input is a primitive with a value (dicts and lists are complex)."""
    return [len(inputs) == 1 and isinstance(inputs[0], str | int | float | bool | Decimal)]


def _html_checks(inputs: list[Any]) -> list[bool]:
    return [all(isinstance(i, str) and not html_checks(i) for i in inputs)]


_FUNCTIONS = {"hasValue": {"fn": _has_value, "arity": {0: []}},
              "htmlChecks": {"fn": _html_checks, "arity": {0: []}}}


@cache
def _compiled(context: str, expression: str) -> Callable[..., list[Any]]:
    """The compiled ``<context>.select(<expression>)`` (parsing takes milliseconds: done once per invariant).

    ``select`` rather than ``all``: an element on which the expression is empty (vs-1 on a Period) passes, as
    the HL7 validator has it, where ``all`` would count it as false."""
    path = f"{context}.select({expression})" if context else expression
    return fhirpathpy.compile(path, models["r4"], {"userInvocationTable": _FUNCTIONS, "traceFn": _no_trace})


def _no_trace(*_: Any) -> None:
    """dom-3's ``trace()`` would print to stdout: traces go nowhere."""


def _is_vital_sign(resource: dict[str, Any]) -> bool:
    for category in resource.get("category", ()):
        for coding in category.get("coding", ()):
            if coding.get("code") == "vital-signs":
                return True
    profiles = resource.get("meta", {}).get("profile", ())
    return any(p.startswith(VITAL_SIGNS_PROFILE) or "/StructureDefinition/vitalsigns" in p for p in profiles)


def _applies(invariant: Invariant, resource: dict[str, Any]) -> bool:
    rtype = resource.get("resourceType")
    if invariant.resource_types and rtype not in invariant.resource_types:
        return False
    if rtype in ("Bundle", "Parameters", "Binary") and invariant.key.startswith(("dom-", "txt-")):
        return False  # not DomainResources
    if invariant.context.startswith("text") and "text" not in resource:
        return False
    return not invariant.vital_signs_only or _is_vital_sign(resource)


def _holds(result: list[Any]) -> bool:
    """An invariant holds when it evaluates to true or to nothing (R4: an empty result is not a failure)."""
    return all(r is not False for r in result)


# -- results by shape ---------------------------------------------------------------------------------------
# fhirpathpy takes ~1.3 ms a resource (ele-1 walks every element), too slow for the tens of thousands of
# resources of one import. Yet what the invariants above read of a resource is its *shape* plus a few values:
# ele-1, dom-2/4/5/6, obs-3, obs-6, vs-2, vs-3 and pat-1 read which elements exist and whether each is a
# primitive (hasValue) — never a primitive's value; obs-7 reads the codings of ``code`` and ``component.code``
# and the vital-signs test reads ``category`` and ``meta`` (kept whole); txt-1/txt-2 read the narrative only
# through ``htmlChecks()`` (keyed by what ``html_checks`` finds); vs-1 reads ``effective[x]`` as a dateTime's
# length, which is >= 8 for any string of 10 characters or more whether it parses or not (a dateTime that does
# not parse gives an empty result, which passes), so only shorter strings are kept; dom-3 reads ``contained``
# ids and every ``reference``, so a resource with ``contained`` is never cached. The key keeps exactly those
# values and the JSON type of every other primitive: two resources with one key have the same result. The
# engine runs once per distinct key (per metric and kind of sample or window) and the result is reused.
_KEPT = frozenset({"code", "category", "meta"})
_EFFECTIVE = frozenset({"effectiveDateTime", "effectiveInstant"})
_CACHE_SIZE = 4096
_results: dict[Any, tuple[str, ...]] = {}


def _shape(node: Any, keep: bool = False) -> Any:
    """The cache key of a JSON node: its structure, with primitive values kept where an invariant reads them."""
    if isinstance(node, dict):
        parts: list[tuple[str, Any]] = []
        for k, v in node.items():
            if k == "div" and isinstance(v, str):
                parts.append((k, ("html", tuple(html_checks(v)))))
            elif k in _EFFECTIVE and isinstance(v, str):
                parts.append((k, ("str", v if len(v) < 10 else "long")))
            else:
                parts.append((k, _shape(v, keep or k in _KEPT)))
        return tuple(parts)
    if isinstance(node, list):
        return ("list", *(_shape(v, keep) for v in node))
    return (type(node).__name__, node) if keep else type(node).__name__


def invariant_errors(resource: dict[str, Any], *, warnings: bool = False) -> list[str]:
    """The R4 invariants ``resource`` breaks, as ``"key: human text"`` (empty when it conforms); with
    ``warnings``, the warning-level ones (dom-6: no narrative) too.

    The resource is not changed. Results are reused for resources of the same shape (see ``_shape``).
    """
    key = None if "contained" in resource else (resource.get("resourceType"), _shape(resource))
    found = _results.get(key) if key is not None else None
    if found is None:
        found = tuple(_evaluate(resource))
        if key is not None:
            if len(_results) >= _CACHE_SIZE:
                _results.clear()
            _results[key] = found
    if warnings:
        return list(found)
    return [e for e in found if _SEVERITY[e.split(":", 1)[0]] == "error"]


def _evaluate(resource: dict[str, Any]) -> list[str]:
    """Every invariant (warnings included) evaluated by the engine."""
    errors: list[str] = []
    variables = {"resource": resource, "rootResource": resource}
    for invariant in INVARIANTS:
        if not _applies(invariant, resource):
            continue
        try:
            result = _compiled(invariant.context, invariant.expression)(resource, variables)
        except Exception as exc:  # noqa: BLE001 - an engine failure is reported, never raised mid-validation
            errors.append(f"{invariant.key}: could not be evaluated ({type(exc).__name__})")
            continue
        if not _holds(result):
            detail = ""
            if invariant.key in ("txt-1", "txt-2"):
                found = [p for p in html_checks(resource["text"].get("div", "")) if p.startswith(invariant.key)]
                if not found:
                    continue  # htmlChecks() is one function for both keys: report each under its own key
                detail = " (" + "; ".join(p.split(": ", 1)[1] for p in found) + ")"
            errors.append(f"{invariant.key}: {invariant.human}{detail}")
    return errors
