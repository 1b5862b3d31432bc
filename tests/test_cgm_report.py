"""The CGM report: percentiles by local time of day (across DST), the one-page PDF and its DiagnosticReport."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
import zlib
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregates.cgm_profile import BIN_SECONDS, PERCENTILES, cgm_profile, modal_day, percentiles_by_group
from mappers.cgm_report import (
    CGM_REPORT_PROFILE,
    CgmReportInput,
    cgm_report_resource,
    percent_text,
    render_cgm_report_pdf,
    report_identity,
)
from mappers.ids import resource_id
from mappers.pdf import Page, text_width
from wearfhir.validate import validate_resource

ROOT = Path(__file__).resolve().parents[1]
ZONE = ZoneInfo("America/New_York")  # DST began Sun 10 Mar 2024 at 02:00 local (07:00 UTC)
FIRST = date(2024, 3, 4)  # a Monday: a reporting period's first day
LAST = date(2024, 3, 17)
BANDS = (0.4, 2.15, 71.25, 20.0, 6.2)  # 71.25 and 2.15 print as 71.3 % and 2.2 % (halves round up)


def _readings(days: int = 14, keep: slice = slice(None)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """5-minute readings from local midnight of FIRST for ``days`` local days in New York, with the zone's
    offset per reading (as the accumulator's columns hold it) and a daily glucose curve plus noise."""
    start = datetime(2024, 3, 4, tzinfo=ZONE).timestamp()
    end = datetime(2024, 3, 4 + days, tzinfo=ZONE).timestamp()  # 14 local days: one is 23 hours long
    epoch = np.arange(start, end, 300.0)
    offset = np.array([int(datetime.fromtimestamp(e, ZONE).utcoffset().total_seconds()) for e in epoch.tolist()])
    hours = ((epoch + offset) % 86400) / 3600
    noise = np.random.default_rng(7).normal(0.0, 25.0, len(epoch))
    value = np.clip(np.round(135 + 55 * np.sin((hours - 8) / 24 * 2 * np.pi) + noise), 40, 400)
    return epoch[keep], offset[keep], value[keep]


def sample_input(keep: slice = slice(None)) -> CgmReportInput:
    epoch, offset, value = _readings(keep=keep)
    profile = cgm_profile(epoch, offset, value)
    return CgmReportInput(first_day=FIRST, last_day=LAST, days_worn=len(profile.daily),
                          active_percent=100.0 * len(value) * 300 / (14 * 86400 - 3600), mean=float(value.mean()),
                          gmi=3.31 + 0.02392 * float(value.mean()), cv=33.2, band_percent=BANDS, profile=profile,
                          subject="Patient/123")


# -- the modal day ------------------------------------------------------------------------------------------
def test_percentile_curves_equal_numpy_per_time_of_day_bin_across_dst() -> None:
    epoch, offset, value = _readings()
    assert len(set(offset.tolist())) == 2  # EST and EDT: the set crosses the change
    modal = modal_day(epoch, offset, value)
    assert modal.bin_seconds == BIN_SECONDS == 900 and len(modal.bin_start) == 96
    # the bin of each reading from the wall clock of the zone itself (not from the offset arithmetic)
    local = [datetime.fromtimestamp(e, ZONE) for e in epoch.tolist()]
    bins = np.array([(t.hour * 3600 + t.minute * 60 + t.second) // 900 for t in local])
    assert modal.count.tolist() == np.bincount(bins, minlength=96).tolist()
    for b in range(96):
        expected = np.percentile(value[bins == b], PERCENTILES)
        assert modal.curves[:, b].tolist() == expected.tolist(), b
    # the skipped hour (02:00-03:00 on 10 Mar) has one day fewer; every other bin has 14 days x 3 readings
    assert modal.count[8:12].tolist() == [39] * 4
    assert set(np.delete(modal.count, range(8, 12)).tolist()) == {42}
    assert modal.curve(50.0).tolist() == modal.curves[2].tolist()


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 7), st.floats(20, 600, allow_nan=False)), max_size=120),
       st.lists(st.floats(0, 100), min_size=1, max_size=6))
def test_grouped_percentiles_equal_numpy(pairs: list[tuple[int, float]], levels: list[float]) -> None:
    group = np.array([g for g, _ in pairs], dtype=np.int64)
    value = np.array([v for _, v in pairs], dtype=np.float64)
    count, out = percentiles_by_group(group, value, 8, tuple(levels))
    for g in range(8):
        chosen = value[group == g]
        assert count[g] == len(chosen)
        if len(chosen):
            assert out[:, g].tolist() == np.percentile(chosen, levels).tolist()
        else:
            assert np.isnan(out[:, g]).all()


def test_daily_profiles_follow_local_days() -> None:
    epoch, offset, value = _readings()
    daily = cgm_profile(epoch, offset, value).daily
    local_days = [datetime.fromtimestamp(e, ZONE).date() for e in epoch.tolist()]
    expected = sorted(set(local_days))
    assert [date.fromordinal(date(1970, 1, 1).toordinal() + int(d)) for d in daily.days] == expected
    sizes = np.diff(daily.bounds).tolist()
    assert sizes == [local_days.count(d) for d in expected]
    assert sizes[6] == 276  # Sun 10 Mar has 23 hours
    second, glucose = daily.series(6)
    assert (np.diff(second) > 0).all() and second[0] == 0 and second[-1] == 86400 - 300
    assert 7200 not in second.tolist()  # 02:00 did not exist that day
    # the same profiles whatever order the readings arrive in
    shuffled = np.random.default_rng(3).permutation(len(epoch))
    again = cgm_profile(epoch[shuffled], offset[shuffled], value[shuffled])
    assert again.daily.days.tolist() == daily.days.tolist() and again.daily.bounds.tolist() == daily.bounds.tolist()
    assert again.daily.second.tolist() == daily.second.tolist() and again.daily.value.tolist() == daily.value.tolist()
    assert again.modal.curves.tolist() == modal_day(epoch, offset, value).curves.tolist()


def test_bins_must_divide_a_day() -> None:
    with pytest.raises(ValueError, match="divide"):
        modal_day(np.zeros(1), np.zeros(1), np.ones(1), bin_seconds=7 * 60)


# -- the PDF ------------------------------------------------------------------------------------------------
def _unescape(literal: bytes) -> bytes:
    out, i = bytearray(), 0
    while i < len(literal):
        c = literal[i]
        if c == 0x5C:  # backslash
            nxt = literal[i + 1:i + 2]
            octal = re.match(rb"[0-7]{1,3}", literal[i + 1:i + 4])
            if octal:
                out.append(int(octal.group(), 8) & 0xFF)
                i += 1 + len(octal.group())
                continue
            out += {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"b": b"\b", b"f": b"\f"}.get(nxt, nxt)
            i += 2
        else:
            out.append(c)
            i += 1
    return bytes(out)


def pdf_text(pdf: bytes) -> str:
    """The text shown by the page, from its content streams (deflated or not): each text object's Tj/TJ strings,
    one line per ``BT`` … ``ET``. The report's fonts are Helvetica with WinAnsiEncoding, i.e. Windows-1252 codes
    (– and × included). Needs no poppler."""
    texts = []
    for raw in re.findall(rb"stream\r?\n(.*?)\r?\nendstream", pdf, re.S):
        try:
            content = zlib.decompress(raw)
        except zlib.error:
            content = raw
        for block in re.findall(rb"\bBT\b(.*?)\bET\b", content, re.S):
            shown = b"".join(_unescape(s) for s in re.findall(rb"\(((?:\\.|[^\\)])*)\)", block, re.S))
            texts.append(shown.decode("cp1252"))
    return "\n".join(texts)


@pytest.fixture(scope="module")
def full_pdf() -> bytes:
    return render_cgm_report_pdf(sample_input())


def test_pdf_is_one_page_with_the_period_and_the_five_range_percentages(full_pdf: bytes) -> None:
    assert full_pdf.startswith(b"%PDF-")
    assert len(re.findall(rb"/Type\s*/Page\b", full_pdf)) == 1
    text = pdf_text(full_pdf)
    assert "Continuous glucose monitoring report" in text and "Mon 4 Mar 2024 – Sun 17 Mar 2024" in text
    assert "2024-03-04 to 2024-03-17 (14 days)" in text
    shown = [percent_text(b) for b in BANDS]
    assert shown == ["0.4 %", "2.2 %", "71.3 %", "20.0 %", "6.2 %"]
    for value in shown:
        assert value in text.splitlines(), value
    assert "14 of 14" in text and "4,020" in text  # days with data; readings (23-hour day)
    assert "Insufficient data" not in text
    assert "AGP" not in text and "mbulatory" not in text  # not the IDC's name
    assert b"CreationDate" not in full_pdf and b"ModDate" not in full_pdf
    assert b"/Producer (wearfhir)" in full_pdf


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="poppler-utils not installed")
def test_pdftotext_reads_the_same_text(full_pdf: bytes, tmp_path: Path) -> None:
    path = tmp_path / "report.pdf"
    path.write_bytes(full_pdf)
    text = subprocess.run(["pdftotext", str(path), "-"], capture_output=True, check=True, text=True).stdout
    assert "Continuous glucose monitoring report" in text and "Mon 4 Mar 2024 – Sun 17 Mar 2024" in text
    for value in ("0.4 %", "2.2 %", "71.3 %", "20.0 %", "6.2 %", "2024-03-04 to 2024-03-17"):
        assert value in text


def test_insufficient_data_is_stated_below_70_percent_active() -> None:
    report = sample_input(keep=slice(0, 2 * 288))  # two days worn in a 14-day period
    assert 14.0 < report.active_percent < 14.5 and report.insufficient
    text = pdf_text(render_cgm_report_pdf(report))
    assert "Insufficient data" in text
    assert percent_text(report.active_percent) in text and "2 of 14" in text
    assert text.count("no data") == 12  # the twelve days without readings in the daily strip


def test_a_period_without_readings_still_renders() -> None:
    empty = np.zeros(0)
    report = CgmReportInput(FIRST, LAST, 0, 0.0, 0.0, 0.0, 0.0, (0.0,) * 5, cgm_profile(empty, empty, empty))
    text = pdf_text(render_cgm_report_pdf(report))
    assert "Insufficient data" in text and "no readings" in text


_RENDER = """
import hashlib, sys
from tests.test_cgm_report import sample_input
from mappers.cgm_report import render_cgm_report_pdf
digest = hashlib.sha256(render_cgm_report_pdf(sample_input())).hexdigest()
sys.stdout.write(digest + (" matplotlib" if "matplotlib" in sys.modules else ""))
"""


def test_pdf_bytes_are_the_same_in_separate_processes(full_pdf: bytes) -> None:
    digests = {
        subprocess.run([sys.executable, "-c", _RENDER], cwd=ROOT, capture_output=True, check=True, text=True,
                       env={**os.environ, "PYTHONHASHSEED": seed}).stdout
        for seed in ("1", "2")  # other hash seeds: no set or dict order leaks into the bytes
    }
    assert digests == {hashlib.sha256(full_pdf).hexdigest()}  # and no plotting library was imported


def test_pdf_takes_milliseconds_per_period() -> None:
    report = sample_input()
    render_cgm_report_pdf(report)
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        pdf = render_cgm_report_pdf(report)
        timings.append(time.perf_counter() - started)
    assert min(timings) < 0.1  # ~8 ms here; the issue allows 1 s, and a year of CGM is ~26 reports
    assert 5_000 < len(pdf) < 60_000  # ~26 kB: the 4,020 readings are drawn, compressed


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="poppler-utils not installed")
def test_pdftoppm_renders_the_page(full_pdf: bytes, tmp_path: Path) -> None:
    path = tmp_path / "report.pdf"
    path.write_bytes(full_pdf)
    done = subprocess.run(["pdftoppm", "-r", "40", "-png", "-singlefile", str(path), str(tmp_path / "page")],
                          capture_output=True, check=True, text=True)
    assert done.stderr == ""  # poppler complains about a broken xref, a bad stream or an unknown operator
    png = (tmp_path / "page.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (331, 468)  # A4 at 40 dpi: one portrait page


# -- the PDF writer -----------------------------------------------------------------------------------------
def test_pdf_writer_xref_points_at_every_object() -> None:
    page = Page()
    page.text(10, 10, "x", 9)
    for compress in (True, False):
        pdf = page.pdf(title="t", producer="p", compress=compress)
        start = int(re.search(rb"startxref\n(\d+)\n%%EOF\n$", pdf).group(1))  # type: ignore[union-attr]
        assert pdf[start:].startswith(b"xref\n0 8\n0000000000 65535 f \n")
        rows = re.findall(rb"(\d{10}) 00000 n \n", pdf[start:])
        assert len(rows) == 7
        for number, offset in enumerate(rows, start=1):
            assert pdf[int(offset):].startswith(b"%d 0 obj\n" % number), number
        length = int(re.search(rb"/Length (\d+)", pdf).group(1))  # type: ignore[union-attr]
        stream = re.search(rb"stream\n(.*)\nendstream", pdf, re.S).group(1)  # type: ignore[union-attr]
        assert len(stream) == length


def test_pdf_writer_escapes_text_and_refuses_what_winansi_cannot_show() -> None:
    page = Page()
    page.text(0, 0, "a\\b (c) – 5 × 6 é", 9)
    content = page.content()
    assert b"(a\\\\b \\(c\\) \\226 5 \\327 6 \\351) Tj" in content
    assert pdf_text(page.pdf(compress=False)) == pdf_text(page.pdf()) == "a\\b (c) – 5 × 6 é"
    with pytest.raises(ValueError, match="WinAnsi"):
        page.text(0, 0, "goal ≥70 %", 9)
    with pytest.raises(ValueError, match="control"):
        page.text(0, 0, "a\nb", 9)


def test_pdf_writer_measures_and_aligns_helvetica() -> None:
    assert text_width("Hello", 10) == pytest.approx((722 + 556 + 222 + 222 + 556) / 100)
    assert text_width("Hello", 10, bold=True) == pytest.approx((722 + 556 + 278 + 278 + 611) / 100)
    assert text_width("–", 1000) == 556 and text_width("×", 1000) == 584
    page = Page()
    page.text(100, 50, "Hello", 10, align="right")
    page.text(100, 50, "Hello", 10, align="center", valign="top")
    ops = page.content().decode("latin-1")
    assert "1 0 0 1 77.22 50 Tm" in ops and "1 0 0 1 88.61 42.5 Tm" in ops


def test_pdf_writer_breaks_lines_at_nan() -> None:
    page = Page()
    page.polyline([(0, 0), (1, 1), (float("nan"), 0), (2, 2), (3, 3.456)], "#ff0000", 0.5)
    ops = page.content().decode("latin-1").split("\n")
    assert ops[0].startswith("1 0 0 RG 0.5 w")
    assert ops[1:] == ["0 0 m", "1 1 l", "2 2 m", "3 3.46 l", "S", ""]


# -- the DiagnosticReport -----------------------------------------------------------------------------------
SYSTEM = "https://wearfhir.dev/fhir/identifier/summary"
PERIOD = "Patient/123|blood_glucose_cgm|cgm|2024-03-04/14d"


def _report(pdf: bytes, status: str = "final") -> dict:
    panel_id = resource_id("summary", SYSTEM, f"{PERIOD}|cgm-summary")
    return cgm_report_resource(system=SYSTEM, period_identity=PERIOD, patient="Patient/123", panel_id=panel_id,
                               first_day=FIRST, last_day=LAST, issued=datetime(2024, 3, 18, 4, tzinfo=UTC).timestamp(),
                               pdf=pdf, status=status)


def test_diagnostic_report_follows_the_cgm_summary_pdf_profile(full_pdf: bytes) -> None:
    report = _report(full_pdf)
    assert validate_resource(report) == []
    assert report["resourceType"] == "DiagnosticReport"
    assert report["meta"]["profile"] == [CGM_REPORT_PROFILE] == [
        "http://hl7.org/fhir/uv/cgm/StructureDefinition/cgm-summary-pdf"]
    assert report["status"] == "final"
    assert report["category"][0]["coding"][0]["system"] == "http://terminology.hl7.org/CodeSystem/v2-0074"
    assert report["category"][0]["coding"][0]["code"] == "LAB"
    assert report["code"]["coding"][0]["system"] == "http://loinc.org"
    assert report["code"]["coding"][0]["code"] == "107931-8"
    assert report["subject"] == {"reference": "Patient/123"}
    assert report["effectivePeriod"] == {"start": "2024-03-04", "end": "2024-03-17"}  # last day inclusive
    assert report["issued"] == "2024-03-18T04:00:00Z"
    panel_id = resource_id("summary", SYSTEM, f"{PERIOD}|cgm-summary")
    assert report["result"] == [{"reference": f"Observation/{panel_id}"}]
    [form] = report["presentedForm"]
    assert form["contentType"] == "application/pdf"
    assert base64.b64decode(form["data"]) == full_pdf and form["size"] == len(full_pdf)
    assert base64.b64decode(form["hash"]) == hashlib.sha1(full_pdf).digest()  # noqa: S324 - R4 defines SHA-1
    assert form["title"] == "Continuous glucose monitoring report, 2024-03-04 to 2024-03-17"
    assert form["creation"] == report["issued"]
    assert report["identifier"] == [{"system": SYSTEM, "value": f"{PERIOD}|cgm-report"}]
    assert report["id"] == resource_id("summary", SYSTEM, report_identity(PERIOD)) != panel_id


def test_amended_report_keeps_its_id(full_pdf: bytes) -> None:
    first, amended = _report(full_pdf), _report(full_pdf + b"\n", status="amended")
    assert amended["status"] == "amended" and amended["id"] == first["id"]
    assert amended["presentedForm"][0]["data"] != first["presentedForm"][0]["data"]
    assert validate_resource(amended) == []
    with pytest.raises(ValueError, match="status"):
        _report(full_pdf, status="preliminary")
