"""Device and Patient resources (and references to them) built from source metadata, as plain dicts.

A CGM sensor's Device follows the HL7 CGM IG 1.0.0 ``cgm-device`` profile (profiles.fsh, ``CGMDevice``):
``identifier`` 1..*, ``deviceName`` 1..* with a ``user-friendly-name`` naming manufacturer and model, and
``serialNumber`` 0..1 (HealthKit exports carry none). A CGM app that writes its readings without an
``HKDevice`` (Dexcom, Libre …) still names the sensor in its source name: :func:`reading_device` makes that
the reading's device, so every CGM reading references a Device.
"""

from __future__ import annotations

from typing import Any

from mappers.context import FhirContext
from mappers.ids import device_identity, resource_id
from mappers.sample import DeviceInfo, SourceInfo

__all__ = ["CGM_DEVICE_PROFILE", "cgm_device_name", "device_reference", "patient_id", "reading_device",
           "to_fhir_device", "to_fhir_patient"]

Resource = dict[str, Any]
CGM_DEVICE_PROFILE = "http://hl7.org/fhir/uv/cgm/StructureDefinition/cgm-device"

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


def reading_device(source: SourceInfo, cgm: bool) -> DeviceInfo | None:
    """The device a sample references: its ``HKDevice``, or, for a CGM reading written without one, the sensor
    its app names (``"Dexcom G7"``): a CGM reading always references a Device (HL7 CGM IG)."""
    if source.device is not None or not cgm:
        return source.device
    return DeviceInfo(name=source.name, manufacturer=None, model=None, hardware=None, software=None)


def cgm_device_name(device: DeviceInfo) -> str | None:
    """The IG's device name "including manufacturer and model": the name, with either added where it lacks them."""
    name = device.name or ""
    if device.manufacturer and device.manufacturer.lower() not in name.lower():
        name = f"{device.manufacturer} {name}".strip()
    if device.model and device.model.lower() not in name.lower():
        name = f"{name} {device.model}".strip()
    return name or None


def to_fhir_device(patient: str, device: DeviceInfo, ctx: FhirContext, cgm: bool = False) -> Resource:
    """The Device resource of a source device (hl7.org/fhir/R4/device.html), deterministic id; with ``cgm``, shaped
    as the HL7 CGM IG's ``cgm-device`` (and claiming it when it has the name the profile requires)."""
    system = ctx.system("device")
    value = device_identity(patient, device)
    name = cgm_device_name(device) if cgm else device.name
    out: Resource = {"resourceType": "Device", "id": resource_id("device", system, value)}
    if cgm and name:
        out["meta"] = {"profile": [CGM_DEVICE_PROFILE]}
    out["identifier"] = [{"system": system, "value": value}]
    out["status"] = "active"
    if device.manufacturer:
        out["manufacturer"] = device.manufacturer
    if name:
        out["deviceName"] = [{"name": name, "type": "user-friendly-name"}]
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
