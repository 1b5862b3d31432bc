"""The one-page CGM report (PDF, matplotlib) and its FHIR R4 DiagnosticReport (HL7 CGM IG ``cgm-summary-pdf``).

The page follows the 2019 international consensus on time in range (Battelino et al., Diabetes Care 2019):
summary statistics (reporting period, days with data, sensor active, mean glucose, GMI, CV), time in the five
ranges against the consensus goals, glucose by time of day (5-95th and 25-75th percentile bands and the median
over a modal day, target 70-180 mg/dL shaded) and the daily profiles. Below 70 % sensor activity it says
"Insufficient data" at the top. It is deliberately not titled or laid out as the International Diabetes
Center's proprietary report.

Deterministic: the same input gives the same bytes (no dates in the metadata, matplotlib's default style with
fixed settings, DejaVu Sans embedded with a ToUnicode map so the text stays extractable and searchable). Pure: returns
bytes, writes nothing.

DiagnosticReport per ``http://hl7.org/fhir/uv/cgm/StructureDefinition/cgm-summary-pdf`` (CGM IG 1.0.0):
category LAB (v2-0074, as the IG's example), code LOINC 107931-8, subject, ``effectivePeriod`` as dates with
the last day inclusive, ``issued``, ``result`` → the ``cgm-summary`` panel, ``presentedForm`` = one
``application/pdf`` attachment with the data.
"""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, cast
from xml.sax.saxutils import escape

import numpy as np

from aggregates.cgm_profile import DAY, CgmProfile
from mappers.ids import resource_id

__all__ = ["CGM_REPORT_PROFILE", "CONSENSUS_GOALS", "INSUFFICIENT_ACTIVE_PERCENT", "REPORT_TITLE", "CgmReportInput",
           "cgm_report_resource", "percent_text", "render_cgm_report_pdf", "report_identity"]

CGM_REPORT_PROFILE = "http://hl7.org/fhir/uv/cgm/StructureDefinition/cgm-summary-pdf"
REPORT_TITLE = "Continuous glucose monitoring report"
INSUFFICIENT_ACTIVE_PERCENT = 70.0  # consensus: at least 70 % of the period's possible readings
# The five ranges, lowest first (as CgmStats.band_percent): label, consensus goal text, colour.
CONSENSUS_GOALS = (
    ("Very low  <54 mg/dL", "goal <1 %", "#8e1b1b"),
    ("Low  54-69 mg/dL", "goal <4 %", "#e53935"),
    ("Target  70-180 mg/dL", "goal >70 %", "#43a047"),
    ("High  181-250 mg/dL", "goal <25 %", "#f9a825"),
    ("Very high  >250 mg/dL", "goal <5 %", "#ef6c00"),
)
_PRODUCER = "wearfhir"
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_GAP_SECONDS = 900  # a daily profile line breaks where readings are more than 15 minutes apart (sensor off)
_FONT_FEATURES = ("-liga",)  # no "fi"/"ffi" ligature glyphs: every word stays searchable as typed
_Y_MAX = 400.0  # mg/dL: fixed scale, so reports compare at a glance
_RC: dict[str, Any] = {  # no "backend": pyplot is never used, Figure.savefig picks the PDF canvas itself
    # Type 3 (DejaVu Sans glyphs as PDF drawing procedures, with a ToUnicode map, so the text can be searched and
    # extracted): 0.15-0.25 s a page here; Type 42 (embedded TrueType) reads the same but its fontTools
    # subsetting took 0.35-0.5 s of a 0.5 s page, and a year of CGM is 26 reports
    "pdf.fonttype": 3,
    "pdf.compression": 6,
    "pdf.use14corefonts": False,
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans"],  # ships with matplotlib: the same glyphs everywhere
    "text.usetex": False,
    "svg.hashsalt": "wearfhir",
    "path.simplify": True,
    "axes.unicode_minus": False,
}
LOINC = "http://loinc.org"


def percent_text(value: float) -> str:
    """A percentage as the report prints it: one decimal, halves rounded up (``0.4 %``: a <1 % goal stays
    readable; 71.25 → ``71.3 %``, as a reader rounds the panel's two decimals)."""
    return f"{Decimal(repr(round(float(value), 6))).quantize(Decimal('0.1'), ROUND_HALF_UP)} %"


@dataclass(frozen=True)
class CgmReportInput:
    """What one report shows: one reporting period's statistics (as the ``cgm-summary`` panel) and profile."""

    first_day: date  # first local day of the reporting period
    last_day: date  # last local day, inclusive
    days_worn: int  # local days with at least one reading
    active_percent: float  # sensor active, % of the reporting period
    mean: float  # mg/dL
    gmi: float  # %
    cv: float  # %
    band_percent: Sequence[float]  # % of readings per range, lowest first (<54, 54-69, 70-180, 181-250, >250)
    profile: CgmProfile  # readings of the period by time of day (aggregates.cgm_profile)
    subject: str | None = None  # e.g. "Patient/123", printed under the title when given

    @property
    def days(self) -> int:
        return (self.last_day - self.first_day).days + 1

    @property
    def insufficient(self) -> bool:
        return self.active_percent < INSUFFICIENT_ACTIVE_PERCENT


def _day_text(day: date) -> str:
    return f"{_WEEKDAYS[day.weekday()]} {day.day} {_MONTHS[day.month - 1]}"


def _stats_rows(report: CgmReportInput) -> list[tuple[str, str]]:
    return [
        ("Reporting period", f"{report.first_day.isoformat()} to {report.last_day.isoformat()} "
                             f"({report.days} days)"),
        ("Days with data", f"{report.days_worn} of {report.days}"),
        ("Sensor active", f"{percent_text(report.active_percent)}   (goal ≥70 %)"),
        ("Readings", f"{report.profile.count:,}"),
        ("Mean glucose", f"{report.mean:.0f} mg/dL" if report.profile.count else "-"),
        ("Glucose management indicator (GMI)", f"{report.gmi:.1f} %" if report.profile.count else "-"),
        ("Glucose variability (CV)", f"{percent_text(report.cv)}   (goal ≤36 %)" if report.profile.count else "-"),
    ]


def _draw_header(fig: Any, report: CgmReportInput) -> None:
    fig.text(0.06, 0.965, REPORT_TITLE, fontsize=17, fontweight="bold", va="top")
    line = f"{_day_text(report.first_day)} {report.first_day.year} – {_day_text(report.last_day)} " \
           f"{report.last_day.year}"
    if report.subject:
        line += f"     {report.subject}"
    fig.text(0.06, 0.937, line, fontsize=10, va="top", color="#333333")
    if report.insufficient:
        fig.add_artist(_rectangle(fig, (0.06, 0.885), 0.88, 0.038, "#fdecea", "#c62828"))
        fig.text(0.075, 0.904, "Insufficient data", fontsize=14, fontweight="bold", color="#b71c1c", va="center")
        fig.text(0.32, 0.904, f"sensor active {percent_text(report.active_percent)} of the reporting period; "
                              f"at least {INSUFFICIENT_ACTIVE_PERCENT:.0f} % is needed", fontsize=9,
                 color="#b71c1c", va="center")


def _rectangle(fig: Any, xy: tuple[float, float], width: float, height: float, face: str, edge: str) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle(xy, width, height, transform=fig.transFigure, figure=fig, facecolor=face, edgecolor=edge,
                     linewidth=1.2)


def _draw_stats(fig: Any, report: CgmReportInput) -> None:
    fig.text(0.06, 0.862, "Summary", fontsize=12, fontweight="bold", va="top")
    y = 0.835
    for label, value in _stats_rows(report):
        fig.text(0.06, y, label, fontsize=9, va="top", color="#333333")
        fig.text(0.06, y - 0.016, value, fontsize=10, va="top", fontweight="bold")
        y -= 0.037


def _draw_ranges(fig: Any, report: CgmReportInput) -> None:
    fig.text(0.55, 0.862, "Time in ranges", fontsize=12, fontweight="bold", va="top")
    ax = fig.add_axes((0.55, 0.585, 0.06, 0.255))
    shares = np.clip(np.asarray(report.band_percent, dtype=np.float64), 0.0, 100.0)
    bottom = 0.0
    for share, (_, _, colour) in zip(shares.tolist(), CONSENSUS_GOALS, strict=True):
        ax.bar(0.0, share, bottom=bottom, width=1.0, color=colour, edgecolor="white", linewidth=0.5)
        bottom += share
    ax.set_xlim(-0.5, 0.5)
    ax.set_ylim(0.0, max(100.0, bottom))
    ax.set_axis_off()
    # labels at fixed heights (a 0.3 % segment is too thin to carry its own), highest range on top
    for i, (share, (label, goal, colour)) in enumerate(zip(shares.tolist(), CONSENSUS_GOALS, strict=True)):
        y = 0.605 + i * 0.052
        fig.add_artist(_rectangle(fig, (0.625, y - 0.006), 0.012, 0.012, colour, colour))
        fig.text(0.645, y + 0.008, label, fontsize=9, va="center")
        fig.text(0.645, y - 0.009, goal, fontsize=8, va="center", color="#555555")
        fig.text(0.935, y, percent_text(share), fontsize=11, fontweight="bold", va="center", ha="right")


def _hour_axis(ax: Any) -> None:
    ticks = np.arange(0, 25, 3)
    ax.set_xticks(ticks * 3600.0, [f"{h:02d}:00" for h in ticks.tolist()], fontsize=8)
    ax.set_xlim(0.0, float(DAY))


def _glucose_axis(ax: Any, labels: bool = True) -> None:
    ax.axhspan(70.0, 180.0, color="#43a047", alpha=0.12, linewidth=0)
    for level, colour in ((54.0, "#8e1b1b"), (70.0, "#43a047"), (180.0, "#43a047"), (250.0, "#ef6c00")):
        ax.axhline(level, color=colour, linewidth=0.6, linestyle=(0, (4, 3)))
    ax.set_ylim(0.0, _Y_MAX)
    if labels:
        ax.set_yticks([54, 70, 180, 250, 350], ["54", "70", "180", "250", "350"], fontsize=8)
    else:
        ax.set_yticks([])
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def _draw_modal_day(fig: Any, report: CgmReportInput) -> None:
    modal = report.profile.modal
    fig.text(0.06, 0.555, "Glucose by time of day (all days of the period on one 24-hour clock)", fontsize=12,
             fontweight="bold", va="top")
    fig.text(0.06, 0.535, f"Median (line), 25th-75th and 5th-95th percentiles (bands) per "
                          f"{modal.bin_seconds // 60}-minute interval of local time; target 70-180 mg/dL shaded",
             fontsize=8, va="top", color="#555555")
    ax = fig.add_axes((0.10, 0.325, 0.84, 0.195))
    _glucose_axis(ax)
    x = modal.bin_start + modal.bin_seconds / 2.0
    # close the day: the last bin's values repeat at 24:00 and the first bin's at 00:00, so the bands span it
    x = np.concatenate(([0.0], x, [float(DAY)]))
    curves = np.concatenate((modal.curves[:, :1], modal.curves, modal.curves[:, -1:]), axis=1)
    p = {level: curves[i] for i, level in enumerate(modal.levels)}
    if {5.0, 95.0} <= p.keys():
        ax.fill_between(x, p[5.0], p[95.0], color="#90caf9", alpha=0.55, linewidth=0, label="5th-95th")
    if {25.0, 75.0} <= p.keys():
        ax.fill_between(x, p[25.0], p[75.0], color="#1e88e5", alpha=0.6, linewidth=0, label="25th-75th")
    if 50.0 in p:
        ax.plot(x, p[50.0], color="#0d2c54", linewidth=1.6, label="median")
    ax.set_ylabel("mg/dL", fontsize=8)
    _hour_axis(ax)
    if report.profile.count == 0:
        ax.text(0.5, 0.5, "no readings", transform=ax.transAxes, ha="center", va="center", color="#777777")


def _day_series(report: CgmReportInput, first: int) -> tuple[np.ndarray, np.ndarray, set[int]]:
    """(x, y) of every day's readings placed side by side (x = column of the day × 86400 + second), lines
    broken with NaN between days and across gaps; and the period columns that have readings."""
    daily = report.profile.daily
    if not len(daily):
        return np.zeros(0), np.zeros(0), set()
    column = np.repeat(daily.days - first, np.diff(daily.bounds))
    x = column * float(DAY) + daily.second
    y = daily.value
    breaks = np.flatnonzero((np.diff(x) > _GAP_SECONDS) | (np.diff(column) != 0)) + 1
    x = np.insert(x.astype(np.float64), breaks, np.nan)
    y = np.insert(y, breaks, np.nan)
    return x, y, set((daily.days - first).tolist())


def _draw_daily(fig: Any, report: CgmReportInput) -> None:
    fig.text(0.06, 0.285, "Daily glucose profiles", fontsize=12, fontweight="bold", va="top")
    first = (report.first_day - date(1970, 1, 1)).days
    x, y, with_data = _day_series(report, first)
    rows = max(1, -(-report.days // 7))
    height = min(0.085, 0.19 / rows - 0.02)
    for row in range(rows):
        top = 0.262 - row * (height + 0.022)
        ax = fig.add_axes((0.10, top - height, 0.84, height))
        _glucose_axis(ax, labels=False)
        lo, hi = row * 7 * float(DAY), (row + 1) * 7 * float(DAY)
        if len(x):
            inside = (x >= lo) & (x < hi) | np.isnan(x)
            ax.plot(x[inside] - lo, y[inside], color="#0d2c54", linewidth=0.7)
        columns = range(row * 7, min(report.days, (row + 1) * 7))
        for col in columns:
            if col > row * 7:
                ax.axvline((col - row * 7) * float(DAY), color="#999999", linewidth=0.6)
            if col not in with_data:
                ax.text((col - row * 7 + 0.5) * DAY, _Y_MAX / 2, "no data", ha="center", va="center", fontsize=7,
                        color="#777777")
        ax.set_xlim(0.0, 7.0 * DAY)
        days = [report.first_day + timedelta(days=col) for col in columns]
        ax.set_xticks([(col - row * 7 + 0.5) * DAY for col in columns], [_day_text(d) for d in days], fontsize=7)
        ax.tick_params(axis="x", length=0)
        ax.set_yticks([70, 180], ["70", "180"], fontsize=6)


def _draw_footer(fig: Any) -> None:
    fig.text(0.06, 0.03, "Ranges and goals: International Consensus on Time in Range (Battelino et al., Diabetes Care "
                         "2019). GMI = 3.31 + 0.02392 × mean glucose (mg/dL).", fontsize=6.5, color="#555555",
             va="bottom")
    fig.text(0.06, 0.018, "Times are the patient's local time. Generated by wearfhir from the CGM readings of the "
                          "reporting period.", fontsize=6.5, color="#555555", va="bottom")


def render_cgm_report_pdf(report: CgmReportInput) -> bytes:
    """The one-page A4 PDF of one reporting period (deterministic: the same input gives the same bytes)."""
    import matplotlib
    import matplotlib.style
    from matplotlib.figure import Figure
    from matplotlib.text import Text

    with matplotlib.rc_context(), matplotlib.style.context("default"), matplotlib.rc_context(cast(Any, _RC)):
        fig = Figure(figsize=(8.27, 11.69))  # A4 portrait
        _draw_header(fig, report)
        _draw_stats(fig, report)
        _draw_ranges(fig, report)
        _draw_modal_day(fig, report)
        _draw_daily(fig, report)
        _draw_footer(fig)
        for text in fig.findobj(Text):
            if hasattr(text, "set_fontfeatures"):  # matplotlib >= 3.11 shapes text (ligatures); older does not
                text.set_fontfeatures(_FONT_FEATURES)
        out = io.BytesIO()
        fig.savefig(out, format="pdf", metadata={
            "Title": f"{REPORT_TITLE}, {report.first_day.isoformat()} to {report.last_day.isoformat()}",
            "Creator": _PRODUCER, "Producer": _PRODUCER, "CreationDate": None, "ModDate": None})
    return out.getvalue()


# -- FHIR ---------------------------------------------------------------------------------------------------
def report_identity(period_identity: str) -> str:
    """The identifier value of a period's report: the period's identifier value (``patient|metric|cgm|first/Nd``,
    which the ``cgm-summary`` panel extends with ``|cgm-summary``) plus ``|cgm-report``."""
    return f"{period_identity}|cgm-report"


def _instant(epoch: float) -> str:
    return datetime.fromtimestamp(int(epoch), UTC).isoformat().replace("+00:00", "Z")


def cgm_report_resource(*, system: str, period_identity: str, patient: str, panel_id: str, first_day: date,
                        last_day: date, issued: float, pdf: bytes, status: str = "final") -> dict[str, Any]:
    """The ``cgm-summary-pdf`` DiagnosticReport of one reporting period.

    ``system`` is the summary identifier system, ``period_identity`` the period's identifier value (see
    :func:`report_identity`), ``panel_id`` the logical id of its ``cgm-summary`` Observation, ``issued`` epoch
    seconds (written as a UTC instant; the caller picks a deterministic instant) and ``status`` ``final`` or
    ``amended`` (same id either way).
    """
    if status not in ("final", "amended"):
        raise ValueError(f"status {status!r} is not final or amended")
    identity = report_identity(period_identity)
    period = f"{first_day.isoformat()} to {last_day.isoformat()}"
    title = f"{REPORT_TITLE}, {period}"
    issued_text = _instant(issued)
    return {
        "resourceType": "DiagnosticReport",
        "id": resource_id("summary", system, identity),
        "meta": {"profile": [CGM_REPORT_PROFILE]},
        "text": {"status": "generated",
                 "div": f'<div xmlns="http://www.w3.org/1999/xhtml"><p>{escape(title)} (PDF, one page), issued '
                        f"{escape(issued_text)}.</p></div>"},
        "identifier": [{"system": system, "value": identity}],
        "status": status,
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "LAB",
                                  "display": "Laboratory"}]}],
        "code": {"coding": [{"system": LOINC, "code": "107931-8",
                             "display": "Continuous glucose monitoring summary panel - Reporting Period"}],
                 "text": REPORT_TITLE},
        "subject": {"reference": patient},
        "effectivePeriod": {"start": first_day.isoformat(), "end": last_day.isoformat()},
        "issued": issued_text,
        "result": [{"reference": f"Observation/{panel_id}"}],
        "presentedForm": [{
            "contentType": "application/pdf",
            "language": "en",
            "data": base64.b64encode(pdf).decode("ascii"),
            "size": len(pdf),
            "hash": base64.b64encode(hashlib.sha1(pdf, usedforsecurity=False).digest()).decode("ascii"),
            "title": title,
            "creation": issued_text,
        }],
    }
