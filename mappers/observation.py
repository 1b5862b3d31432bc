"""Raw sample → FHIR R4 Observation, as a plain dict (the hot path; validated by fhir.resources in tests).

Targets FHIR R4 Observation (hl7.org/fhir/R4/observation.html) and, for vital signs, the R4 vital-signs
profile (hl7.org/fhir/R4/observation-vitalsigns.html): LOINC code, UCUM ``valueQuantity``, category.
The parts that are the same for every sample of a metric, source or device are built once and shared
(they are never mutated), which keeps one Observation at a few microseconds.
"""

from __future__ import annotations

from typing import Any

from mappers.context import CATEGORY_DISPLAY, OBSERVATION_CATEGORY_SYSTEM, UCUM_SYSTEM, FhirContext
from mappers.ids import resource_id, sample_identifier_value
from mappers.resources import device_reference, reading_device
from mappers.sample import DeviceInfo, Sample, SourceInfo, local_times
from mappers.tables import Metric

__all__ = ["ObservationBuilder", "category_element", "category_for", "code_element", "quantity"]

Resource = dict[str, Any]


def category_element(metric: Metric) -> list[dict[str, Any]] | None:
    """Observation.category for a metric, or None where the metric has no category."""
    return category_for(metric.category)


def category_for(category: str) -> list[dict[str, Any]] | None:
    """Observation.category for an observation-category code (``vital-signs`` …); None for ``""``."""
    if not category:
        return None
    return [{"coding": [{"system": OBSERVATION_CATEGORY_SYSTEM, "code": category,
                         "display": CATEGORY_DISPLAY[category]}]}]


def code_element(metric: Metric, vendor_system: str | None = None, vendor_code: str | None = None,
                 text: str | None = None, with_metric_codings: bool = True) -> dict[str, Any]:
    """Observation.code: the metric's LOINC codings, then the vendor's own coding, and a text."""
    codings = [c.as_fhir() for c in metric.codings] if with_metric_codings else []
    if vendor_system and vendor_code:
        codings.append({"system": vendor_system, "code": vendor_code})
    out: dict[str, Any] = {"text": text or metric.display}
    if codings:
        out["coding"] = codings
    return out


def quantity(value: float, metric: Metric) -> dict[str, Any]:
    """A UCUM valueQuantity in the metric's canonical unit."""
    return {"value": value, "unit": metric.unit_display, "system": UCUM_SYSTEM, "code": metric.unit}


class ObservationBuilder:
    """Builds raw sample Observations for one deployment (``FhirContext``), caching the shared parts."""

    def __init__(self, metrics: dict[str, Metric], ctx: FhirContext, cgm_source_devices: bool = False) -> None:
        """``cgm_source_devices``: a CGM reading without an ``HKDevice`` references the sensor its app names
        (:func:`mappers.resources.reading_device`); only for callers that also write that Device."""
        self._metrics = metrics
        self._ctx = ctx
        self._cgm_source_devices = cgm_source_devices
        self._system = ctx.system("sample")
        self._heads: dict[tuple[str, str, str], tuple[Any, dict[str, Any]]] = {}
        self._provenance: dict[tuple[SourceInfo, bool], list[dict[str, Any]]] = {}
        self._devices: dict[tuple[str, DeviceInfo], dict[str, str]] = {}
        self._subjects: dict[str, dict[str, str]] = {}

    def _head(self, metric: Metric, vendor_system: str, vendor_type: str) -> tuple[Any, dict[str, Any]]:
        key = (metric.key, vendor_system, vendor_type)
        head = self._heads.get(key)
        if head is None:
            # a categorical raw sample is a stage, not a duration: its code is the vendor's type only
            coded = metric.kind == "category"
            code = code_element(metric, vendor_system, vendor_type,
                                text=f"{metric.display} stage" if coded else None,
                                with_metric_codings=not coded)
            head = self._heads[key] = (category_element(metric), code)
        return head

    def _source_app(self, sample: Sample) -> list[dict[str, Any]]:
        key = (sample.source, sample.user_entered)
        ext = self._provenance.get(key)
        if ext is None:
            parts: list[dict[str, Any]] = [{"url": "name", "valueString": sample.source.name}]
            if sample.source.version:
                parts.append({"url": "version", "valueString": sample.source.version})
            if sample.user_entered:
                parts.append({"url": "userEntered", "valueBoolean": True})
            ext = self._provenance[key] = [{"url": self._ctx.source_app_extension, "extension": parts}]
        return ext

    def _device(self, patient: str, device: DeviceInfo) -> dict[str, str]:
        key = (patient, device)
        ref = self._devices.get(key)
        if ref is None:
            ref = self._devices[key] = device_reference(patient, device, self._ctx)
        return ref

    def build(self, sample: Sample, metric: Metric, vendor_system: str, slot_identity: bool = False) -> Resource:
        """The raw Observation of one sample (quantity, coded, panel or workout).

        The id and identifier are deterministic (DESIGN §3): replaying the same sample names the same
        resource. ``vendor_system`` is the code system of the sample's vendor type (Apple's, Google's).
        ``slot_identity``: the id names the slot alone (a re-sent slot with a newer value replaces the resource).
        """
        value = sample_identifier_value(sample, with_value=not slot_identity)
        category, code = self._head(metric, vendor_system, sample.vendor_type)
        obs: Resource = {
            "resourceType": "Observation",
            "id": resource_id("sample", self._system, value),
            "extension": self._source_app(sample),
            "identifier": [{"system": self._system, "value": value}],
            "status": "final",
        }
        if category:
            obs["category"] = category
        obs["code"] = code
        subject = self._subjects.get(sample.patient)
        if subject is None:
            subject = self._subjects[sample.patient] = {"reference": sample.patient}
        obs["subject"] = subject
        start, end = local_times(sample)  # the instants, in the local offsets of the sample's zone
        if sample.start_epoch == sample.end_epoch:
            obs["effectiveDateTime"] = start.isoformat()
        else:
            obs["effectivePeriod"] = {"start": start.isoformat(), "end": end.isoformat()}
        if metric.kind == "quantity" and sample.value is not None:
            obs["valueQuantity"] = quantity(sample.value, metric)
        elif sample.code is not None:
            obs["valueCodeableConcept"] = self._coded_value(sample, metric, vendor_system)
        if sample.components:
            metrics = self._metrics
            obs["component"] = [
                {"code": code_element(metrics[key]), "valueQuantity": quantity(v, metrics[key])}
                for key, v in sample.components
            ]
        device = sample.source.device
        if device is None and self._cgm_source_devices:
            device = reading_device(sample.source, "cgm" in metric.summaries)
        if device is not None:
            obs["device"] = self._device(sample.patient, device)
        return obs

    def _coded_value(self, sample: Sample, metric: Metric, vendor_system: str) -> dict[str, Any]:
        assert sample.code is not None
        codings: list[dict[str, str]] = []
        display = metric.codes.get(sample.code)
        if display is not None:
            codings.append({"system": self._ctx.code_system(metric.key.replace("_", "-")),
                            "code": sample.code, "display": display})
        if sample.vendor_code:
            codings.append({"system": vendor_system, "code": sample.vendor_code})
        text = display or sample.code.replace("_", " ").capitalize()
        return {"coding": codings, "text": text} if codings else {"text": text}
