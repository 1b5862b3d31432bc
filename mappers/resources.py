"""Device and Patient resources (and references to them) built from source metadata, as plain dicts."""

from __future__ import annotations

from typing import Any

from mappers.context import FhirContext
from mappers.ids import device_identity, resource_id
from mappers.sample import DeviceInfo

__all__ = ["device_reference", "patient_id", "to_fhir_device", "to_fhir_patient"]

Resource = dict[str, Any]

_GENDERS = {
    "HKBiologicalSexFemale": "female",
    "HKBiologicalSexMale": "male",
    "HKBiologicalSexOther": "other",
    "HKBiologicalSexNotSet": "unknown",
    # iOS 8/9 exports wrote the enum's number
    "0": "unknown",
    "1": "female",
    "2": "male",
    "3": "other",
}


def device_reference(patient: str, device: DeviceInfo, ctx: FhirContext) -> dict[str, str]:
    """A Reference to the Device resource of a source device."""
    system = ctx.system("device")
    return {"reference": f"Device/{resource_id('device', system, device_identity(patient, device))}"}


def to_fhir_device(patient: str, device: DeviceInfo, ctx: FhirContext) -> Resource:
    """The Device resource of a source device (hl7.org/fhir/R4/device.html), deterministic id."""
    system = ctx.system("device")
    value = device_identity(patient, device)
    out: Resource = {
        "resourceType": "Device",
        "id": resource_id("device", system, value),
        "identifier": [{"system": system, "value": value}],
        "status": "active",
    }
    if device.manufacturer:
        out["manufacturer"] = device.manufacturer
    if device.name:
        out["deviceName"] = [{"name": device.name, "type": "user-friendly-name"}]
    if device.model:
        out["modelNumber"] = device.model
    if device.hardware:
        out["version"] = [{"type": {"text": "hardware"}, "value": device.hardware}]
    out["patient"] = {"reference": patient}
    return out


def patient_id(reference: str) -> str:
    """The logical id of a ``Patient/ID`` reference."""
    return reference.split("/", 1)[1]


def to_fhir_patient(reference: str, ctx: FhirContext, gender: str | None = None,
                    birth_date: str | None = None) -> Resource:
    """The Patient an import writes for NDJSON output: the configured id, plus what the export's ``Me`` says.

    ``gender`` is HealthKit's biological-sex value (mapped to FHIR administrative gender);
    ``birth_date`` an ISO date.
    """
    pid = patient_id(reference)
    out: Resource = {
        "resourceType": "Patient",
        "id": pid,
        "identifier": [{"system": ctx.system("patient"), "value": pid}],
    }
    if gender in _GENDERS:
        out["gender"] = _GENDERS[gender]
    if birth_date is not None:
        out["birthDate"] = birth_date
    return out
