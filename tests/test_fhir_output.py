"""Raw Observations, Devices and the Patient: golden files, FHIR R4 validation, deterministic ids."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from mappers.batch import BatchMapper
from mappers.context import FhirContext
from mappers.observation import ObservationBuilder
from mappers.resources import CGM_DEVICE_PROFILE, cgm_device_name, reading_device, to_fhir_device, to_fhir_patient
from mappers.sample import DeviceInfo, SampleBatch, SourceInfo
from mappers.tables import metrics
from tests.helpers import export_xml, normalize, record
from tests.test_normalize import BP_CORRELATION
from wearfhir.validate import validate_resource

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("WEARFHIR_UPDATE_GOLDEN") == "1"

KINDS = {
    "heart_rate_instant": record("HeartRate", "72", "count/min"),
    "steps_interval_iphone": record("StepCount", "812", "count", start="2024-03-10 08:00:00 -0400",
                                    end="2024-03-10 08:10:00 -0400", source="Zoë’s iPhone",
                                    device=("&lt;&lt;HKDevice: 0x2&gt;, name:iPhone, manufacturer:Apple Inc., "
                                            "model:iPhone, hardware:iPhone14,2, software:17.1&gt;")),
    "spo2_fraction": record("OxygenSaturation", "0.97", "%"),
    "glucose_molar": record("BloodGlucose", "6.5", "mmol&lt;180.1558800000541&gt;/L", source="Contour", device=None,
                            children='  <MetadataEntry key="HKWasUserEntered" value="1"/>\n'),
    "cgm_reading": record("BloodGlucose", "143", "mg/dL", source="Dexcom G7", device=None),
    "weight_pounds": record("BodyMass", "150", "lb", source="Withings", device=None),
    "temperature_fahrenheit": record("BodyTemperature", "98.6", "degF", source="Kinsa", device=None),
    "blood_pressure_panel": BP_CORRELATION,
    "sleep_stage": record("HKCategoryTypeIdentifierSleepAnalysis", "HKCategoryValueSleepAnalysisAsleepDeep",
                          start="2024-03-10 01:00:00 -0500", end="2024-03-10 01:45:00 -0500"),
    "workout_running": (
        ' <Workout workoutActivityType="HKWorkoutActivityTypeRunning" duration="30" durationUnit="min" '
        'sourceName="Apple Watch" sourceVersion="10.1" startDate="2024-03-10 17:00:00 -0400" '
        'endDate="2024-03-10 17:30:00 -0400">\n'
        '  <WorkoutStatistics type="HKQuantityTypeIdentifierActiveEnergyBurned" sum="300" unit="Cal"/>\n'
        '  <WorkoutStatistics type="HKQuantityTypeIdentifierDistanceWalkingRunning" sum="3.1" unit="mi"/>\n'
        '  <WorkoutStatistics type="HKQuantityTypeIdentifierHeartRate" average="148" unit="count/min"/>\n'
        " </Workout>\n"
    ),
}


def resources_for(element: str) -> list[dict]:
    samples, rejections, _ = normalize(export_xml(element))
    assert not rejections
    mapper = BatchMapper(metrics(), FhirContext(), "all")
    out = []
    for sample in samples:
        out.extend(mapper(SampleBatch(sample.patient, sample.metric, [sample])).resources)
    return out


def check_golden(name: str, value: object) -> None:
    path = GOLDEN / f"{name}.json"
    if UPDATE:
        path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    assert path.exists(), f"missing golden file {path.name}: run with WEARFHIR_UPDATE_GOLDEN=1 and review it"
    assert value == json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_observation_matches_golden_file_and_validates(kind: str) -> None:
    resources = resources_for(KINDS[kind])
    check_golden(kind, resources)
    for resource in resources:
        assert validate_resource(resource) == [], resource["resourceType"]


def test_patient_validates_and_matches_golden() -> None:
    patient = to_fhir_patient("Patient/p1", FhirContext(), "HKBiologicalSexFemale", "1971-04-12")
    check_golden("patient", patient)
    assert validate_resource(patient) == []


def test_ids_are_deterministic_well_formed_and_free_of_phi() -> None:
    first = resources_for(KINDS["glucose_molar"])
    again = resources_for(KINDS["glucose_molar"])
    assert first == again
    for resource in first:
        assert re.fullmatch(r"[a-z][0-9a-f]{32}", resource["id"])
        assert "Contour" not in resource["id"] and "p1" not in resource["id"]


def test_a_different_identifier_base_gives_different_ids() -> None:
    samples, _, _ = normalize(export_xml(KINDS["heart_rate_instant"]))
    batch = SampleBatch("Patient/p1", "heart_rate", samples)
    a = BatchMapper(metrics(), FhirContext(), "all")(batch).resources[-1]
    b = BatchMapper(metrics(), FhirContext(identifier_base="https://example.org/id"), "all")(batch).resources[-1]
    assert a["id"] != b["id"]
    assert b["identifier"][0]["system"] == "https://example.org/id/sample"


def test_raw_policy_spot_writes_spot_metrics_and_summarises_dense_ones() -> None:
    samples, _, _ = normalize(export_xml(KINDS["heart_rate_instant"], KINDS["weight_pounds"]))
    mapper = BatchMapper(metrics(), FhirContext(), "spot")
    by_metric = {s.metric: mapper(SampleBatch(s.patient, s.metric, [s])) for s in samples}
    assert by_metric["heart_rate"].resources == [] and by_metric["heart_rate"].raw_skipped == 1
    assert [r["resourceType"] for r in by_metric["body_weight"].resources] == ["Observation"]
    none = BatchMapper(metrics(), FhirContext(), "none")
    assert none(SampleBatch("Patient/p1", "body_weight", [samples[1]])).resources == []


def test_validator_catches_what_fhir_resources_misses() -> None:
    resource = resources_for(KINDS["heart_rate_instant"])[-1]
    bad = dict(resource, status="done", id="x" * 65, subject={"reference": "Patient 1"}, note=[])
    problems = "\n".join(validate_resource(bad))
    for expected in ("status 'done'", "id 'xxx", "malformed reference", "empty array"):
        assert expected in problems


def test_validation_messages_never_echo_the_value() -> None:
    resource = resources_for(KINDS["heart_rate_instant"])[-1]
    bad = dict(resource, valueQuantity=dict(resource["valueQuantity"], value="SECRET-97"))
    problems = validate_resource(bad)
    assert problems and "valueQuantity" in problems[0]
    assert "SECRET-97" not in "\n".join(problems)


# --- the HL7 CGM IG's cgm-device (issue 13) ----------------------------------------------------------------

def test_a_cgm_reading_references_a_device_shaped_like_the_ig_cgm_device() -> None:
    samples, _, _ = normalize(export_xml(KINDS["cgm_reading"]))  # Dexcom writes no HKDevice
    (sample,) = samples
    builder = ObservationBuilder(metrics(), FhirContext(), cgm_source_devices=True)
    obs = builder.build(sample, metrics()["cgm_glucose"], "http://developer.apple.com/documentation/healthkit")
    device_info = reading_device(sample.source, cgm=True)
    assert device_info is not None
    device = to_fhir_device(sample.patient, device_info, FhirContext(), cgm=True)
    assert obs["device"] == {"reference": f"Device/{device['id']}"}
    check_golden("cgm_device", device)
    # cgm-device: identifier 1..*, deviceName 1..* with a user-friendly-name naming manufacturer and model
    assert device["meta"]["profile"] == [CGM_DEVICE_PROFILE]
    assert device["identifier"] and device["deviceName"] == [{"name": "Dexcom G7", "type": "user-friendly-name"}]
    assert validate_resource(device) == []
    # without the flag (no Device written for it) nothing changes: the reading references no device
    plain = ObservationBuilder(metrics(), FhirContext()).build(sample, metrics()["cgm_glucose"], "x")
    assert "device" not in plain


def test_a_cgm_device_name_holds_manufacturer_and_model() -> None:
    info = DeviceInfo("Sensor", "Dexcom", "G7", None, None)
    assert cgm_device_name(info) == "Dexcom Sensor G7"
    assert cgm_device_name(DeviceInfo("Dexcom G7", "Dexcom", "G7", None, None)) == "Dexcom G7"
    assert to_fhir_device("Patient/p1", info, FhirContext(), cgm=True)["deviceName"][0]["name"] == "Dexcom Sensor G7"
    assert "meta" not in to_fhir_device("Patient/p1", info, FhirContext())  # an iPhone is no CGM device
    assert reading_device(SourceInfo("Zoë’s iPhone", None, None), cgm=False) is None
