"""Per-deployment FHIR naming: identifier base and extension URLs, shared by every builder."""

from __future__ import annotations

from dataclasses import dataclass

from mappers.ids import DEFAULT_IDENTIFIER_BASE, identifier_system

__all__ = ["FhirContext", "OBSERVATION_CATEGORY_SYSTEM", "UCUM_SYSTEM"]

UCUM_SYSTEM = "http://unitsofmeasure.org"
OBSERVATION_CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/observation-category"
CATEGORY_DISPLAY = {"vital-signs": "Vital Signs", "activity": "Activity", "laboratory": "Laboratory"}


@dataclass(frozen=True, slots=True)
class FhirContext:
    """Where wearfhir's own identifiers, code systems and extensions live for this deployment."""

    identifier_base: str = DEFAULT_IDENTIFIER_BASE
    definition_base: str = "https://wearfhir.dev/fhir"

    def system(self, kind: str) -> str:
        """Identifier system for a resource kind (sample, summary, device, patient)."""
        return identifier_system(self.identifier_base, kind)

    @property
    def source_app_extension(self) -> str:
        """URL of the extension recording the source app (name, version) of an Observation."""
        return f"{self.definition_base}/StructureDefinition/source-app"

    def code_system(self, name: str) -> str:
        """URL of one of wearfhir's own code systems (e.g. ``sleep-stage``)."""
        return f"{self.definition_base}/CodeSystem/{name}"
