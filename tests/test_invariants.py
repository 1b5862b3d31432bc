"""R4 invariants (FHIRPath, fhirpathpy): every golden and every resource of a synthetic import passes them; each
invariant catches what it is there for; narratives are safe XHTML."""

from __future__ import annotations

import copy
import json
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from mappers.invariants import INVARIANTS, _evaluate, html_checks, invariant_errors
from mappers.narrative import XHTML, narrative
from wearfhir.cli import main
from wearfhir.synth import SynthSpec, write_export
from wearfhir.validate import validate_ndjson, validate_resource

GOLDEN = Path(__file__).parent / "golden"
STATISTICS = "http://terminology.hl7.org/CodeSystem/observation-statistics"


def golden_resources() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted(GOLDEN.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        for i, resource in enumerate(data if isinstance(data, list) else [data]):
            out.append((f"{path.stem}[{i}]", resource))
    return out


def keys(resource: dict[str, Any], warnings: bool = False) -> set[str]:
    return {e.split(":", 1)[0] for e in invariant_errors(resource, warnings=warnings)}


def summary_heart_rate() -> dict[str, Any]:
    return json.loads((GOLDEN / "summary_heart_rate.json").read_text(encoding="utf-8"))[0]


@pytest.mark.parametrize(("name", "resource"), golden_resources(), ids=[n for n, _ in golden_resources()])
def test_every_golden_resource_passes_every_invariant(name: str, resource: dict[str, Any]) -> None:
    summary = name.startswith("summary_")
    assert invariant_errors(resource, warnings=summary) == [], name  # summaries: dom-6 (a narrative) as well
    assert validate_resource(resource) == [], name


def test_a_summary_whose_components_repeat_the_metric_code_fails_obs_7() -> None:
    # the shape every sampled summary had before: min/max/count coded with the metric's LOINC coding as well
    obs = summary_heart_rate()
    assert keys(obs) == set()
    for component in obs["component"]:
        component["code"]["coding"].insert(0, dict(obs["code"]["coding"][0]))
    assert keys(obs) == {"obs-7"}
    assert any(p.startswith("obs-7") for p in validate_resource(obs))  # `wearfhir validate` reports it
    del obs["valueQuantity"]  # obs-7 allows it when the Observation itself has no value
    assert "obs-7" not in keys(obs)


def test_statistics_components_carry_only_observation_statistics_codes() -> None:
    obs = summary_heart_rate()
    codes = [c["code"] for c in obs["component"]]
    assert [[(g["system"], g["code"]) for g in c["coding"]] for c in codes] == [
        [(STATISTICS, "minimum")], [(STATISTICS, "maximum")], [(STATISTICS, "count")]]
    assert [c["text"] for c in codes] == ["Heart rate, minimum", "Heart rate, maximum", "Heart rate, number of samples"]


BREAKS = {
    "obs-6": lambda o: o.update(dataAbsentReason={"text": "not measured"}),
    "obs-3": lambda o: o.update(referenceRange=[{"appliesTo": [{"text": "adults"}]}]),
    "vs-1": lambda o: (o.pop("effectivePeriod"), o.update(effectiveDateTime="2024")),
    "vs-2": lambda o: (o.pop("valueQuantity"), o.pop("component")),
    "vs-3": lambda o: o["component"][0].pop("valueQuantity"),
    "ele-1": lambda o: o["code"].update(extension=[{}]),
    "dom-2": lambda o: o.update(contained=[{"resourceType": "Device", "id": "d1", "contained": [
        {"resourceType": "Device", "id": "d2"}]}], device={"reference": "#d1"}),
    "dom-3": lambda o: o.update(contained=[{"resourceType": "Device", "id": "d1"}]),
    "dom-4": lambda o: o.update(contained=[{"resourceType": "Device", "id": "d1", "meta": {"versionId": "2"}}],
                                device={"reference": "#d1"}),
    "dom-5": lambda o: o.update(contained=[{"resourceType": "Device", "id": "d1", "meta": {"security": [
        {"code": "R"}]}}], device={"reference": "#d1"}),
    "txt-1": lambda o: o["text"].update(div=f'<div xmlns="{XHTML}"><p>x</p><script>alert(1)</script></div>'),
    "txt-2": lambda o: o["text"].update(div=f'<div xmlns="{XHTML}"> <p/> </div>'),
    "dom-6": lambda o: o.pop("text"),
}


@pytest.mark.parametrize("key", sorted(BREAKS))
def test_each_invariant_catches_what_it_is_for(key: str) -> None:
    obs = summary_heart_rate()
    assert keys(obs, warnings=True) == set()
    BREAKS[key](obs)
    assert key in keys(obs, warnings=True)
    if key == "dom-6":
        assert "dom-6" not in keys(obs)  # a warning: reported only when asked


def test_vital_signs_invariants_apply_only_to_vital_signs() -> None:
    obs = summary_heart_rate()
    obs.pop("valueQuantity")
    obs.pop("component")
    assert "vs-2" in keys(obs)
    obs["category"][0]["coding"][0]["code"] = "activity"
    assert "vs-2" not in keys(obs)
    obs["meta"] = {"profile": ["http://hl7.org/fhir/StructureDefinition/vitalsigns"]}
    assert "vs-2" in keys(obs)


def test_patient_contact_needs_details_pat_1() -> None:
    patient = json.loads((GOLDEN / "patient.json").read_text(encoding="utf-8"))
    patient["contact"] = [{"gender": "female"}]
    assert keys(patient) == {"pat-1"}
    patient["contact"] = [{"name": {"family": "Doe"}}]
    assert keys(patient) == set()


def test_every_invariant_is_evaluated_by_the_engine_and_none_fails_to_evaluate() -> None:
    obs = summary_heart_rate()
    assert not any("could not be evaluated" in e for e in invariant_errors(obs, warnings=True))
    assert {i.key for i in INVARIANTS} >= {"obs-3", "obs-6", "obs-7", "vs-1", "vs-2", "vs-3", "dom-2", "dom-3",
                                          "dom-4", "dom-5", "dom-6", "ele-1", "txt-1", "txt-2", "pat-1"}


def test_invariants_leave_the_resource_unchanged_and_are_fast() -> None:
    obs = summary_heart_rate()
    before = copy.deepcopy(obs)
    invariant_errors(obs)  # compiles the expressions once
    started = time.perf_counter()
    for _ in range(50):
        invariant_errors(obs)
    per_resource = (time.perf_counter() - started) / 50
    assert obs == before
    assert per_resource < 0.02, f"{per_resource * 1000:.1f} ms per resource"


# --- narratives -------------------------------------------------------------------------------------------

def test_narrative_escapes_everything_and_is_allowed_xhtml() -> None:
    text = narrative('Steps <script>alert("x")</script> & <a href="javascript:x">', "Tue 12 Mar 2024",
                     ["<style>p{}</style>", "Zoë’s iPhone"])
    assert text["status"] == "generated"
    root = ET.fromstring(text["div"])  # parses as XML
    assert root.tag == f"{{{XHTML}}}div"
    assert {e.tag.split("}")[1] for e in root.iter()} <= {"div", "p", "b", "ul", "li"}
    assert not any(e.attrib for e in root.iter())
    assert "<script>alert" in "".join(root.itertext())  # shown as text, never as markup
    assert html_checks(text["div"]) == []


@pytest.mark.parametrize(("div", "problem"), [
    (f'<div xmlns="{XHTML}"><p onclick="x()">a</p></div>', "attribute 'onclick'"),
    (f'<div xmlns="{XHTML}"><a href="javascript:alert(1)">a</a></div>', "script or data URL"),
    (f'<div xmlns="{XHTML}"><style>p {{}}</style>a</div>', "<style>"),
    (f'<div xmlns="{XHTML}"><iframe/>a</div>', "<iframe>"),
    ('<div>a</div>', "XHTML namespace"),
    (f'<div xmlns="{XHTML}"><p>a</div>', "well-formed"),
    (f'<!DOCTYPE d [<!ENTITY a "aaaa">]><div xmlns="{XHTML}">&a;</div>', "declarations"),
])
def test_html_checks_reject_what_r4_narratives_may_not_hold(div: str, problem: str) -> None:
    assert any(problem in p for p in html_checks(div)), html_checks(div)


# --- a synthetic import: every resource -----------------------------------------------------------------

def test_every_resource_of_a_synthetic_import_passes_every_invariant(tmp_path: Path) -> None:
    export = write_export(tmp_path / "export.zip", SynthSpec(records=4_000, seed=3))
    out = tmp_path / "out"
    assert main(["import", str(export), "--patient", "Patient/p1", "--out", str(out), "--no-progress"]) in (0, 1)
    resources = [json.loads(line) for name in ("Observation", "Device", "Patient")
                 for line in (out / f"{name}.ndjson").read_text(encoding="utf-8").splitlines()]
    summaries = [r for r in resources if r["identifier"][0]["system"].endswith("/summary")]
    assert len(resources) > 500 and summaries
    codes = {c["code"] for r in summaries for c in r["code"].get("coding", [])}
    assert {"107931-8", "97507-8", "8867-4", "41950-7", "93832-4"} <= codes  # the CGM panel, glucose, HR, steps, sleep
    problems = [f"{r['resourceType']}/{r['id']}: {e}" for r in resources for e in invariant_errors(r)]
    assert problems == [], problems[:5]
    assert all(invariant_errors(s, warnings=True) == [] for s in summaries)  # every summary has a narrative
    # results reused by shape are the engine's own: every 7th resource evaluated afresh agrees
    assert all(invariant_errors(r, warnings=True) == _evaluate(r) for r in resources[::7])


def test_results_reused_by_shape_still_see_every_value_an_invariant_reads() -> None:
    obs = summary_heart_rate()
    assert invariant_errors(obs) == []
    bad = copy.deepcopy(obs)
    bad["component"][0]["code"]["coding"] = [dict(obs["code"]["coding"][0])]  # same shape, another code: obs-7
    assert keys(bad) == {"obs-7"} and _evaluate(bad)
    short = copy.deepcopy(obs)
    short.pop("effectivePeriod")
    short["effectiveDateTime"] = "2024-03-12T08:00:00-04:00"
    assert keys(short) == set()
    short["effectiveDateTime"] = "2024-03"  # a short dateTime: vs-1
    assert keys(short) == {"vs-1"}
    unsafe = copy.deepcopy(obs)
    unsafe["text"]["div"] = obs["text"]["div"].replace("<b>", '<b onclick="x()">')
    assert keys(unsafe) == {"txt-1"}


def test_wearfhir_validate_reports_invariants_by_line(tmp_path: Path) -> None:
    good = summary_heart_rate()
    bad = copy.deepcopy(good)
    for component in bad["component"]:
        component["code"]["coding"].insert(0, dict(bad["code"]["coding"][0]))
    path = tmp_path / "Observation.ndjson"
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n", encoding="utf-8")
    checked, errors = validate_ndjson(path)
    assert checked == 2
    assert [(line, problem.split(":", 1)[0]) for line, problem in errors] == [(2, "obs-7")]
