"""The FHIR server sink against a real FHIR server: idempotency, crash recovery, faults, dead letters, identity."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from bytewax.testing import run_main

from connectors.fhir.client import FhirClient, RetryPolicy
from connectors.fhir.deadletter import FileDeadLetters, RedisDeadLetters
from connectors.fhir.sink import FhirWriter, resource_groups
from flows.import_flow import get_flow
from tests.servers import ROOT, fault_proxy
from wearfhir.cli import main
from wearfhir.errors import ServiceError
from wearfhir.report import ImportReport
from wearfhir.settings import ImportSettings
from wearfhir.synth import SynthSpec, write_export

RECORDS = 6_000


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    return write_export(tmp_path_factory.mktemp("export") / "export.zip", SynthSpec(records=RECORDS))


def new_patient(fhir) -> str:
    """A fresh Patient on the server (each test writes its own data)."""
    pid = f"t{uuid.uuid4().hex[:12]}"
    with fhir.client() as c:
        c.put(f"/Patient/{pid}", json={"resourceType": "Patient", "id": pid}).raise_for_status()
    return f"Patient/{pid}"


def server_ids(fhir, patient: str) -> dict[str, str]:
    """Every Observation id of ``patient`` on the server → its identifier value (follows paging)."""
    out: dict[str, str] = {}
    with fhir.client() as c:
        url: str | None = f"{fhir.base_url}/Observation"
        params: dict[str, str] | None = {"subject": patient, "_count": "1000"}
        while url:
            bundle = c.get(url, params=params).raise_for_status().json()
            for entry in bundle.get("entry", []):
                r = entry["resource"]
                assert r["id"] not in out
                out[r["id"]] = r["identifier"][0]["value"]
            url = next((link["url"] for link in bundle.get("link", []) if link["relation"] == "next"), None)
            params = None
    return out


def fast_client(url: str, **kwargs) -> FhirClient:
    return FhirClient(url, retry=RetryPolicy(max_attempts=kwargs.pop("attempts", 10), base_seconds=0.01,
                                             cap_seconds=0.05, max_retry_after=0.2), **kwargs)


def run_import(export: Path, patient: str, client: FhirClient, dead: Path, out: Path | None = None,
               bundle_size: int = 200, concurrency: int = 3) -> tuple[ImportReport, FhirWriter]:
    report = ImportReport()
    writers: list[FhirWriter] = []

    def make() -> FhirWriter:
        writers.append(FhirWriter(client, FileDeadLetters(dead), bundle_size=bundle_size, concurrency=concurrency))
        return writers[-1]

    settings = ImportSettings(source=export, patient=patient, out=out, chunk_bytes=1 << 16)
    run_main(get_flow(settings, report, fhir_writer=make))
    return report, writers[0]


def ndjson_ids(out: Path) -> dict[str, str]:
    lines = (out / "Observation.ndjson").read_text(encoding="utf-8").splitlines()
    return {o["id"]: o["identifier"][0]["value"] for o in map(json.loads, lines)}


def test_importing_twice_leaves_exactly_one_resource_per_identifier(fhir, export, tmp_path) -> None:
    patient = new_patient(fhir)
    report, _ = run_import(export, patient, FhirClient(fhir.base_url), tmp_path / "dlq.ndjson", out=tmp_path / "a")
    expected = ndjson_ids(tmp_path / "a")
    assert report.fhir and report.fhir["created"] >= len(expected) and report.fhir["dead_lettered"] == 0
    first = server_ids(fhir, patient)
    again, _ = run_import(export, patient, FhirClient(fhir.base_url), tmp_path / "dlq.ndjson")
    assert again.fhir and again.fhir["created"] == 0 and again.fhir["updated"] >= len(expected)
    assert server_ids(fhir, patient) == first == expected
    some = sorted(expected.values())[:: max(1, len(expected) // 15)]
    system = "https://wearfhir.dev/fhir/identifier/"
    for value in some:
        kind = "summary" if value.count("|") == 4 else "sample"
        assert fhir.count("Observation", f"{system}{kind}", value) == 1


def test_a_run_killed_half_way_and_rerun_leaves_exactly_the_clean_contents(fhir, export, tmp_path) -> None:
    patient = new_patient(fhir)
    base = ["import", str(export), "--patient", patient, "--fhir", fhir.base_url, "--no-progress",
            "--bundle-size", "50", "--concurrency", "1", "--dead-letters", str(tmp_path / "dlq.ndjson")]
    proc = subprocess.Popen([sys.executable, "-m", "wearfhir.cli", *base], cwd=ROOT,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and fhir.total("Observation", subject=patient) < 200:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = len(server_ids(fhir, patient))
    assert partial >= 200
    assert main([*base, "--out", str(tmp_path / "out")]) == 0
    final = server_ids(fhir, patient)
    assert final == ndjson_ids(tmp_path / "out") and len(final) > partial


def test_faults_on_a_share_of_requests_leave_the_same_contents_as_a_clean_run(fhir, export, tmp_path) -> None:
    patient = new_patient(fhir)
    with fault_proxy(fhir.base_url) as proxy:
        proxy.every = 3  # every third request: 429, 503, 409, stall past the timeout, reset, in turn
        proxy.stall_seconds = 2.5
        client = fast_client(proxy.base_url, timeout=2.0, attempts=12)
        report, _ = run_import(export, patient, client, tmp_path / "dlq.ndjson", out=tmp_path / "out")
    assert report.fhir is not None and report.fhir["retries"] >= 5 and report.fhir["dead_lettered"] == 0
    assert {"429", "503", "409", "stall", "reset"} <= set(proxy.seen)
    assert server_ids(fhir, patient) == ndjson_ids(tmp_path / "out")


def test_a_server_down_beyond_the_retry_budget_is_a_clear_service_error(fhir, export, tmp_path, capsys) -> None:
    patient = new_patient(fhir)
    with fault_proxy(fhir.base_url) as proxy:
        proxy.every = 1
        proxy.every_faults = ("503",)
        client = fast_client(proxy.base_url, attempts=3)
        with pytest.raises(Exception) as info:
            run_import(export, patient, client, tmp_path / "dlq.ndjson")
    chain = [info.value]
    while chain[-1].__cause__ or chain[-1].__context__:
        chain.append(chain[-1].__cause__ or chain[-1].__context__)
    error = next(e for e in chain if isinstance(e, ServiceError))
    assert "failed 3 times, last: HTTP 503" in str(error) and "rerun the import" in str(error)


def observations(patient: str, n: int, tag: str) -> list[dict]:
    return [{"resourceType": "Observation", "id": f"o{tag}{i}", "status": "final",
             "identifier": [{"system": "https://wearfhir.dev/fhir/identifier/sample", "value": f"{tag}|{i}"}],
             "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
             "subject": {"reference": patient}, "effectiveDateTime": "2024-03-10T08:15:00-04:00",
             "valueQuantity": {"value": 60 + i % 40, "unit": "/min", "system": "http://unitsofmeasure.org",
                               "code": "/min"}} for i in range(n)]


@pytest.mark.parametrize("store_kind", ["file", "redis"])
def test_one_invalid_resource_in_500_is_dead_lettered_and_replays_after_a_fix(fhir, redis, tmp_path, capsys,
                                                                            store_kind) -> None:
    patient = new_patient(fhir)
    tag = uuid.uuid4().hex[:8]
    batch = observations(patient, 500, tag)
    ghost = f"g{tag}"
    batch[321]["subject"] = {"reference": f"Patient/{ghost}"}  # a Patient that does not exist (yet)
    store = FileDeadLetters(tmp_path / "dlq.ndjson") if store_kind == "file" else RedisDeadLetters(redis.url)
    if store_kind == "redis":
        store.remove([letter.key for letter in store.list()])
    writer = FhirWriter(FhirClient(fhir.base_url), store, bundle_size=500, concurrency=2)
    writer.write(batch)
    result = writer.close()
    assert result.created == 499 and writer.dead_lettered == 1
    assert len(server_ids(fhir, patient)) == 499
    (letter,) = store.list()
    assert letter.reference == f"Observation/o{tag}321" and letter.status == 400
    assert f"HAPI-1094: Resource Patient/{ghost} not found" in letter.message
    if store_kind == "file":
        assert (tmp_path / "dlq.ndjson").stat().st_mode & 0o777 == 0o600
    store_args = (["--dead-letters", str(tmp_path / "dlq.ndjson")] if store_kind == "file"
                  else ["--redis", redis.url])
    assert main(["dlq", "list", *store_args]) == 0
    listed = capsys.readouterr().out
    assert "1 dead letters" in listed and f"Observation/o{tag}321" in listed and "HAPI-1094" in listed
    assert "valueQuantity" not in listed and "effectiveDateTime" not in listed  # no resource content (PHI)
    assert main(["dlq", "replay", *store_args, "--fhir", fhir.base_url]) == 1  # not fixed yet
    assert "still refused" in capsys.readouterr().out
    with fhir.client() as c:  # the fix: the Patient now exists
        c.put(f"/Patient/{ghost}", json={"resourceType": "Patient", "id": ghost}).raise_for_status()
    assert main(["dlq", "replay", *store_args, "--fhir", fhir.base_url]) == 0
    assert "1 landed" in capsys.readouterr().out
    assert store.list() == []
    assert fhir.total("Observation", subject=f"Patient/{ghost}") == 1


def test_bisection_isolates_several_bad_resources_and_keeps_their_outcomes(fhir, tmp_path) -> None:
    patient = new_patient(fhir)
    tag = uuid.uuid4().hex[:8]
    batch = observations(patient, 64, tag)
    batch[5]["valueQuantity"]["value"] = "not a number"
    batch[40]["id"] = "12345"  # purely numeric client id: HAPI refuses it
    batch[40]["identifier"][0]["value"] = f"{tag}|numeric"
    writer = FhirWriter(FhirClient(fhir.base_url), FileDeadLetters(tmp_path / "d.ndjson"), bundle_size=64)
    writer.write(batch)
    result = writer.close()
    assert result.created == 62 and writer.dead_lettered == 2
    messages = {letter.reference: letter.message for letter in writer.dead_letters.list()}
    assert "valueQuantity.value" in messages[f"Observation/o{tag}5"]
    assert "HAPI-0960" in messages["Observation/12345"]


def test_a_missing_patient_is_a_clear_error_that_says_what_to_do(fhir, export, tmp_path, capsys) -> None:
    code = main(["import", str(export), "--patient", "Patient/nobody-here", "--fhir", fhir.base_url,
                 "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert "Patient/nobody-here does not exist on" in err and "--patient-identifier" in err


def test_patient_by_identifier_is_created_once_with_a_deterministic_id(fhir, tmp_path, capsys) -> None:
    export = write_export(tmp_path / "small.zip", SynthSpec(records=300))
    ident = f"https://hospital.example/mrn|{uuid.uuid4().hex[:10]}"
    args = ["import", str(export), "--patient-identifier", ident, "--fhir", fhir.base_url, "--no-progress",
            "--dead-letters", str(tmp_path / "d.ndjson")]
    assert main(args) == 2 and "--create-patient" in capsys.readouterr().err
    assert main([*args, "--create-patient"]) == 0
    assert main([*args, "--create-patient"]) == 0
    assert fhir.count("Patient", *ident.split("|", 1)) == 1
    out = capsys.readouterr().out
    assert out.count("(patient Patient/p") == 2


def test_gzip_request_bodies_land(fhir, tmp_path) -> None:
    patient = new_patient(fhir)
    writer = FhirWriter(FhirClient(fhir.base_url, gzip_requests=True), FileDeadLetters(tmp_path / "d.ndjson"))
    writer.write(observations(patient, 30, uuid.uuid4().hex[:8]))
    assert writer.close().created == 30


def test_retry_policy_honours_retry_after_and_jitters() -> None:
    import random

    policy = RetryPolicy(base_seconds=1.0, cap_seconds=8.0, max_retry_after=60)
    rng = random.Random(1)
    assert all(0 <= policy.delay(a, None, rng) <= min(8.0, 2 ** a) for a in range(10))
    assert policy.delay(0, 5.0, rng) >= 5.0
    assert policy.delay(0, 600.0, rng) == 60


def test_retry_after_is_honoured_against_the_proxy(fhir) -> None:
    slept: list[float] = []
    with fault_proxy(fhir.base_url) as proxy:
        proxy.schedule.extend(["429", "429"])
        proxy.retry_after = "0.3"
        client = FhirClient(proxy.base_url, sleep=slept.append)
        response, retries = client.request("GET", "metadata")
    assert response.status_code == 200 and retries == 2 and all(s >= 0.3 for s in slept)


def test_cgm_panels_stay_in_one_bundle_with_their_members() -> None:
    members = [{"resourceType": "Observation", "id": f"m{i}"} for i in range(6)]
    panel = {"resourceType": "Observation", "id": "panel",
             "hasMember": [{"reference": f"Observation/m{i}"} for i in range(6)]}
    other = {"resourceType": "Observation", "id": "x"}
    groups = resource_groups([other, *members, panel, other])
    assert [len(g) for g in groups] == [1, 7, 1]
    report = {"resourceType": "DiagnosticReport", "id": "r", "result": [{"reference": "Observation/panel"}]}
    groups = resource_groups([other, *members, panel, report, other, report])
    assert [len(g) for g in groups] == [1, 8, 1, 1]  # the report joins its panel's Bundle; one without it stays alone
    assert groups[1][-1] is report


def test_auth_bearer_basic_and_smart_backend_services(tmp_path_factory, tmp_path, monkeypatch) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    from connectors.fhir.auth import SmartBackendAuth
    from connectors.fhir.target import FhirTarget, build_client
    from tests.servers import fhir_server
    from wearfhir.errors import ConfigError

    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP384R1())
    keys = {}
    for name, key in (("rsa", rsa_key), ("ec", ec_key)):
        (tmp_path / f"{name}.pem").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        (tmp_path / f"{name}.pub").write_bytes(key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        keys[name] = tmp_path / f"{name}.pem"
    auth = {"types": ["bearer", "basic", "smart"], "tokens": ["s3cret-token"], "users": {"ingest": "pw-123"},
            "smart_clients": [{"client_id": "wearfhir-rsa", "public_key_path": str(tmp_path / "rsa.pub"),
                               "scopes": "system/*.*"},
                              {"client_id": "wearfhir-ec", "public_key_path": str(tmp_path / "ec.pub"),
                               "scopes": "system/*.*"}]}
    with fhir_server(tmp_path_factory.mktemp("auth"), server_auth=auth) as server:
        anonymous = httpx.get(f"{server.base_url}/Patient", timeout=10)
        assert anonymous.status_code == 401
        token_file = tmp_path / "token"
        token_file.write_text("s3cret-token\n", encoding="utf-8")
        monkeypatch.setenv("WEARFHIR_FHIR_PASSWORD", "pw-123")
        targets = [
            FhirTarget(url=server.base_url, auth="bearer", token_file=token_file),
            FhirTarget(url=server.base_url, auth="basic", basic_user="ingest"),
            FhirTarget(url=server.base_url, auth="smart", smart_client_id="wearfhir-rsa", smart_key=keys["rsa"]),
            FhirTarget(url=server.base_url, auth="smart", smart_client_id="wearfhir-ec", smart_key=keys["ec"],
                       smart_alg="ES384"),
        ]
        for target in targets:
            with build_client(target) as client:
                pid = f"a{uuid.uuid4().hex[:10]}"
                assert client.put({"resourceType": "Patient", "id": pid}) == 201
                for _ in range(3):
                    assert client.read(f"Patient/{pid}") is not None
                if target.auth == "smart":
                    smart = client._http.auth
                    assert isinstance(smart, SmartBackendAuth) and smart.tokens_fetched == 1  # cached
        with build_client(FhirTarget(url=server.base_url, auth="bearer", token_env="NO_SUCH_VAR")
                          if os.environ.get("NO_SUCH_VAR") else
                          FhirTarget(url=server.base_url, auth="none")) as client:
            with pytest.raises(ServiceError, match="HTTP 401"):
                client.put({"resourceType": "Patient", "id": "anon1"})
        with pytest.raises(ConfigError, match="NO_SUCH_VAR"):
            build_client(FhirTarget(url=server.base_url, auth="bearer", token_env="NO_SUCH_VAR"))


def test_a_fhir_only_import_lists_rejected_records_next_to_the_dead_letters(fhir, tmp_path, capsys) -> None:
    patient = new_patient(fhir)
    dirty = write_export(tmp_path / "dirty.zip", SynthSpec(records=2_000, trap_every=300))
    clean = write_export(tmp_path / "clean.zip", SynthSpec(records=500, traps=False))
    args = ["--patient", patient, "--fhir", fhir.base_url, "--no-progress",
            "--dead-letters", str(tmp_path / "dlq" / "dead.ndjson")]
    assert main(["import", str(dirty), *args]) == 0
    listed = tmp_path / "dlq" / "rejected.ndjson"
    out = capsys.readouterr().out
    rejections = [json.loads(line) for line in listed.read_text(encoding="utf-8").splitlines()]
    rejected_line = next(line for line in out.splitlines() if line.startswith("Rejected:"))
    assert rejections and rejected_line == f"Rejected: {len(rejections):,} (listed in {listed})"
    assert all(set(r) == {"origin", "reason", "where", "vendor_type", "detail"} for r in rejections)
    assert all(r["where"].startswith("line ") for r in rejections)
    # a later run that rejects nothing leaves no stale list behind
    assert main(["import", str(clean), *args]) == 0
    assert "Rejected: 0" in capsys.readouterr().out and not listed.exists()
    # an explicit file, and --rejected is refused next to --out (the list goes to OUT/rejected.ndjson)
    assert main(["import", str(dirty), *args, "--rejected", str(tmp_path / "mine.ndjson")]) == 0
    assert (tmp_path / "mine.ndjson").read_bytes() == b"".join(
        json.dumps(r, ensure_ascii=False, separators=(",", ":")).encode() + b"\n" for r in rejections)
    assert main(["import", str(dirty), *args, "--rejected", "x.ndjson", "--out", str(tmp_path / "o")]) == 2
    assert "OUT/rejected.ndjson" in capsys.readouterr().err
