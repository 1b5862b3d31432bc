"""The import dataflow and CLI end to end on synthetic exports: output, report, exit codes, determinism."""

from __future__ import annotations

import base64
import hashlib
import json
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
from bytewax.run import cli_main
from bytewax.testing import run_main

from flows.import_flow import get_flow
from tests.helpers import export_xml, record
from wearfhir.cli import main
from wearfhir.report import ImportReport
from wearfhir.settings import ImportSettings
from wearfhir.synth import SynthSpec, write_export
from wearfhir.validate import validate_ndjson

RECORDS = 12_000


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    return write_export(tmp_path_factory.mktemp("export") / "export.zip",
                        SynthSpec(records=RECORDS, trap_every=700))


def run(export: Path, out: Path, raw: str = "all", workers: int = 1) -> ImportReport:
    report = ImportReport()
    flow = get_flow(ImportSettings(source=export, patient="Patient/p1", out=out, raw=raw, chunk_bytes=1 << 16),
                    report)
    if workers == 1:
        run_main(flow)
    else:
        cli_main(flow, workers_per_process=workers)
    return report


def digest(out: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.iterdir())}


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_import_writes_valid_fhir_and_accounts_for_every_record(export, tmp_path) -> None:
    report = run(export, tmp_path / "out")
    assert report.complete
    files = {p.name for p in (tmp_path / "out").iterdir()}
    assert files == {"Observation.ndjson", "Device.ndjson", "Patient.ndjson", "DiagnosticReport.ndjson",
                     "rejected.ndjson"}
    observations = lines(tmp_path / "out" / "Observation.ndjson")
    # one CGM report per reporting period, each the PDF of its panel (HL7 CGM IG cgm-summary-pdf)
    reports = lines(tmp_path / "out" / "DiagnosticReport.ndjson")
    panels = {o["id"] for o in observations if o["code"].get("coding", [{}])[0].get("code") == "107931-8"}
    assert reports and len(reports) == len(panels) == report.resources["DiagnosticReport"]
    assert {r["result"][0]["reference"] for r in reports} == {f"Observation/{p}" for p in panels}
    assert all(base64.b64decode(r["presentedForm"][0]["data"]).startswith(b"%PDF-") for r in reports)
    raw, summaries = sum(report.observations.values()), sum(report.summaries.values())
    assert len(observations) == report.resources["Observation"] == raw + summaries
    assert summaries and sum(1 for o in observations if "/summary" in o["identifier"][0]["system"]) == summaries
    assert len({o["id"] for o in observations}) == len(observations)
    # every record is accounted for: a sample, a rejection, a duplicate, a merged BP member, or a counted type
    src = report.sources[0]
    records = sum(src.records_by_type.values())
    written = sum(report.samples.values())
    rejected_records = sum(c for (reason, _), c in report.rejections.items() if reason != "malformed XML")
    unmapped = sum(src.unknown_types.values()) + sum(src.unmapped_types.values())
    assert records == written + rejected_records + unmapped + src.merged_members
    assert report.duplicates["respiratory_rate"] > 0
    for name in ("Observation.ndjson", "Device.ndjson", "Patient.ndjson", "DiagnosticReport.ndjson"):
        checked, errors = validate_ndjson(tmp_path / "out" / name) if name != "Observation.ndjson" else (1, [])
        assert checked and not errors
    sample_file = tmp_path / "sample.ndjson"
    sample_file.write_text("\n".join(json.dumps(o) for o in observations[::40]), encoding="utf-8")
    checked, errors = validate_ndjson(sample_file)
    assert checked > 100 and errors == []


def test_rerun_is_byte_identical(export, tmp_path) -> None:
    run(export, tmp_path / "a")
    run(export, tmp_path / "b")
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    run(export, tmp_path / "a")  # over existing output
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert not list((tmp_path / "a").glob(".*"))


def test_two_workers_write_the_same_resources(export, tmp_path) -> None:
    run(export, tmp_path / "one", raw="spot")
    run(export, tmp_path / "two", raw="spot", workers=2)
    for name in ("Observation.ndjson", "Device.ndjson", "Patient.ndjson", "DiagnosticReport.ndjson"):
        one = sorted((tmp_path / "one" / name).read_text(encoding="utf-8").splitlines())
        two = sorted((tmp_path / "two" / name).read_text(encoding="utf-8").splitlines())
        assert one == two and one


def test_truncated_zip_keeps_what_was_read_and_exits_non_zero(export, tmp_path, capsys) -> None:
    with zipfile.ZipFile(export) as archive:
        xml = archive.read("apple_health_export/export.xml")
    cut = xml[: len(xml) // 2]
    truncated = tmp_path / "truncated.xml"
    truncated.write_bytes(cut)
    code = main(["import", str(truncated), "--patient", "Patient/p1", "--out", str(tmp_path / "out"),
                 "--raw", "all", "--no-progress"])
    assert code == 1
    out = capsys.readouterr().out
    assert "INCOMPLETE" in out and "truncated" in out
    stop_line = int(out.split("ends at line ")[1].split()[0])
    assert stop_line == cut.count(b"\n") + 1
    observations = lines(tmp_path / "out" / "Observation.ndjson")
    assert len(observations) > RECORDS // 3


def test_cli_import_reports_and_exits_zero(export, tmp_path, capsys) -> None:
    code = main(["import", str(export), "--patient", "Patient/p1", "--out", str(tmp_path / "out"), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0
    assert "records per type" in out and "HKQuantityTypeIdentifierHeartRate" in out
    assert "dense samples summarised, not written raw" in out and "Rejected:" in out
    assert "Summary Observations written per metric" in out and "steps  (day " in out
    assert "unknown types" in out and "HKQuantityTypeIdentifierFutureMetricFromIOS30" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--patient", "123"], "Patient/123"),
        (["--patient", "Patient/a b"], "Patient/123"),
    ],
)
def test_cli_rejects_bad_patient_references(export, tmp_path, capsys, args, message) -> None:
    code = main(["import", str(export), "--out", str(tmp_path / "o"), *args])
    assert code == 2
    assert message in capsys.readouterr().err


def test_cli_refuses_unsafe_and_unsupported_inputs(tmp_path, capsys) -> None:
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as archive:
        archive.writestr("../../escape.xml", "<HealthData></HealthData>")
    assert main(["import", str(evil), "--patient", "Patient/p1", "--out", str(tmp_path / "o")]) == 2
    assert "unsafe path" in capsys.readouterr().err
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    assert main(["import", str(text), "--patient", "Patient/p1", "--out", str(tmp_path / "o")]) == 2
    assert "Export All Health Data" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_mappings_command_reports_n_of_m(capsys) -> None:
    from mappers.tables import healthkit_table

    mapped, unmapped = healthkit_table().covered()
    assert main(["mappings", "--all"]) == 0
    out = capsys.readouterr().out
    assert f"HealthKit: {len(mapped)} of {len(mapped) + len(unmapped)} known types mapped" in out
    assert out.count("  mapped    ") == len(mapped)
    prefixes = healthkit_table().known_unmapped_prefixes
    assert out.count("  unmapped  ") == len(unmapped) + len(prefixes)
    assert "HKQuantityTypeIdentifierDietary*" in out


def test_validate_command_flags_invalid_lines(tmp_path, capsys) -> None:
    path = tmp_path / "Observation.ndjson"
    path.write_text('{"resourceType": "Observation", "status": "done"}\nnot json\n', encoding="utf-8")
    assert main(["validate", str(path)]) == 1
    out = capsys.readouterr().out
    assert "2 resources checked" in out and "line 2: not JSON" in out


def test_an_output_directory_reused_by_a_clean_run_keeps_no_stale_rejections(export, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    assert main(["import", str(export), "--patient", "Patient/p1", "--out", str(out), "--no-progress"]) == 0
    assert (out / "rejected.ndjson").exists()
    assert f"(listed in {out / 'rejected.ndjson'})" in capsys.readouterr().out
    clean = write_export(tmp_path / "clean.zip", SynthSpec(records=500, traps=False))
    assert main(["import", str(clean), "--patient", "Patient/p1", "--out", str(out), "--no-progress"]) == 0
    assert "Rejected: 0" in capsys.readouterr().out
    assert not (out / "rejected.ndjson").exists()


@pytest.mark.parametrize(("body", "why"), [
    ("".join(record("HeartRate", "seventy", "count/min", start=f"2024-03-10 08:{m:02d}:00 -0400") for m in range(30)),
     "no Observation was written from 30 records: 30 were rejected"),
    ("".join(record("DietaryWater", "250", "mL", start=f"2024-03-10 08:{m:02d}:00 -0400") for m in range(30)),
     "no Observation was written: none of the 30 records is of a type wearfhir maps"),
    ("".join(record("HeartRate", "seventy" if m % 3 else "70", "count/min", start=f"2024-03-10 08:{m:02d}:00 -0400")
             for m in range(30)),
     "20 of 30 records (67 %) were rejected"),
    ("", "the export holds no records"),
])
def test_an_import_that_writes_nothing_or_rejects_most_records_fails_loudly(tmp_path, capsys, body, why) -> None:
    path = tmp_path / "export.xml"
    path.write_bytes(export_xml(body))
    code = main(["import", str(path), "--patient", "Patient/p1", "--out", str(tmp_path / "out"), "--no-progress"])
    captured = capsys.readouterr()
    assert code == 1
    assert f"FAILED: {why}" in captured.err


def test_a_mostly_good_import_still_succeeds_and_the_report_names_its_time_zone(tmp_path, capsys) -> None:
    body = "".join(record("HeartRate", "seventy" if m == 7 else "70", "count/min",
                          start=f"2024-07-10 08:{m:02d}:00 -0500") for m in range(30))
    path = tmp_path / "export.xml"
    path.write_bytes(export_xml(body))
    out = tmp_path / "out"
    code = main(["import", str(path), "--patient", "Patient/p1", "--out", str(out), "--no-progress", "--raw", "all",
                 "--timezone", "America/Chicago"])
    report = capsys.readouterr().out
    assert code == 0
    assert "time zone: America/Chicago (--timezone)" in report
    times = {o["effectiveDateTime"] for o in lines(out / "Observation.ndjson") if "effectiveDateTime" in o}
    assert "2024-07-10T08:00:00-05:00" in times  # July in Chicago is -05:00: the written offset agreed
    code = main(["import", str(path), "--patient", "Patient/p1", "--out", str(tmp_path / "o2"), "--no-progress",
                 "--raw", "all", "--timezone", "America/Los_Angeles"])
    assert code == 0 and "time zone: America/Los_Angeles" in capsys.readouterr().out
    moved = {o["effectiveDateTime"] for o in lines(tmp_path / "o2" / "Observation.ndjson") if "effectiveDateTime" in o}
    assert "2024-07-10T06:00:00-07:00" in moved  # the same instant in the patient's clock


def test_an_unknown_time_zone_is_a_usage_error(export, tmp_path, capsys) -> None:
    code = main(["import", str(export), "--patient", "Patient/p1", "--out", str(tmp_path / "o"),
                 "--timezone", "Europe/Atlantis"])
    assert code == 2 and "--timezone" in capsys.readouterr().err


@pytest.fixture(scope="module")
def dst_exports(tmp_path_factory) -> dict[str, Path]:
    """The same synthetic samples (20 Oct - 5 Nov 2024 in New York, across the fall-back day), written as an iPhone
    writes them (the export-time offset on every date, HKTimeZone on some records) and with each date in its own
    offset and no zone at all."""
    folder = tmp_path_factory.mktemp("dst")
    spec = SynthSpec(records=20_000, traps=False)
    return {"iphone": write_export(folder / "iphone.zip", spec),
            "per-sample": write_export(folder / "per-sample.zip",
                                       replace(spec, offsets="per-sample", zone_metadata=False))}


def test_an_iphone_export_gets_its_local_days_from_the_zone_it_names(dst_exports, tmp_path, capsys) -> None:
    def imported(name: str, *extra: str) -> list[bytes]:
        out = tmp_path / f"{name}{len(extra)}"
        assert main(["import", str(dst_exports[name]), "--patient", "Patient/p1", "--out", str(out), "--no-progress",
                     "--raw", "all", *extra]) == 0
        # sorted: the files differ in size, so the reader's chunks (and the order of batches) fall elsewhere
        return sorted((out / "Observation.ndjson").read_bytes().splitlines())

    iphone = imported("iphone")
    assert "time zone: America/New_York (named by" in capsys.readouterr().out
    # every date of the iPhone export reads -0500 (it was made in winter); the zone puts October back in -04:00
    resources = [json.loads(line) for line in iphone]
    hourly = [o for o in resources if "|heart_rate|hour|" in o["identifier"][0]["value"]
              and o["effectivePeriod"]["start"].startswith("2024-11-03")]
    assert len(hourly) == 25
    (day,) = [o for o in resources if "|heart_rate|day|2024-11-03|" in o["identifier"][0]["value"]]
    assert day["effectivePeriod"] == {"start": "2024-11-03T00:00:00-04:00", "end": "2024-11-04T00:00:00-05:00"}
    # the same samples, each written in its own offset and with the patient's zone given: the same resources
    assert imported("per-sample", "--timezone", "America/New_York") == iphone
    # without any zone, the written offsets are the clock: right everywhere but on the DST day and the night into it
    # (its midnight when the first sample came after the change; the local offset shown for an instant after the
    # change that a sample or segment started before it) — the report says so and asks for --timezone
    offsets_only = imported("per-sample")
    assert "time zone: none known" in capsys.readouterr().out
    changed = {json.loads(line)["identifier"][0]["value"] for line in set(offsets_only) ^ set(iphone)}
    assert changed and all("|2024-11-03" in value or "|night|2024-11-02|" in value for value in changed)
