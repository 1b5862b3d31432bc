"""The one-page CGM report (PDF, drawn by ``mappers.pdf``) and its FHIR R4 DiagnosticReport (``cgm-summary-pdf``).

The page follows the 2019 international consensus on time in range (Battelino et al., Diabetes Care 2019):
summary statistics (reporting period, days with data, sensor active, mean glucose, GMI, CV), time in the five
ranges against the consensus goals, glucose by time of day (5-95th and 25-75th percentile bands and the median
over a modal day, target 70-180 mg/dL shaded) and the daily profiles. Below 70 % sensor activity it says
"Insufficient data" at the top. It is deliberately not titled or laid out as the International Diabetes
Center's proprietary report.

Drawn straight into PDF operators (``mappers.pdf``: Helvetica, vector shapes), a few milliseconds a page: an
import of a year of CGM writes dozens of reports, and a plotting library would cost ~0.2 s each (see issue 13).
Deterministic: the same input gives the same bytes (no dates, fixed number formatting). The text is real
WinAnsi text, extractable and searchable. Pure: returns bytes, writes nothing.

DiagnosticReport per ``http://hl7.org/fhir/uv/cgm/StructureDefinition/cgm-summary-pdf`` (CGM IG 1.0.0):
category LAB (v2-0074, as the IG's example), code LOINC 107931-8, subject, ``effectivePeriod`` as dates with
the last day inclusive, ``issued``, ``result`` → the ``cgm-summary`` panel, ``presentedForm`` = one
``application/pdf`` attachment with the data.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from xml.sax.saxutils import escape

import numpy as np

from aggregates.cgm_profile import DAY, CgmProfile
from mappers.ids import resource_id
from mappers.pdf import A4, Page

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
_Y_MAX = 400.0  # mg/dL: fixed scale, so reports compare at a glance
_WIDTH, _HEIGHT = A4
_INK, _GREY, _MUTED, _FAINT = "#000000", "#333333", "#555555", "#777777"
_MEDIAN = "#0d2c54"
_REFERENCE_LINES = ((54.0, "#8e1b1b"), (70.0, "#43a047"), (180.0, "#43a047"), (250.0, "#ef6c00"))
_DASH = (4.0, 3.0)
LOINC = "http://loinc.org"


def _blend(colour: str, alpha: float) -> str:
    """``colour`` at opacity ``alpha`` over white, as an opaque colour (the page needs no transparency)."""
    channels = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
    return "#" + "".join(f"{round(255 - alpha * (255 - c)):02x}" for c in channels)


_TARGET_FILL = _blend("#43a047", 0.15)
_OUTER_BAND = _blend("#90caf9", 0.6)  # 5th-95th percentile
_INNER_BAND = _blend("#1e88e5", 0.65)  # 25th-75th percentile


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
    # "at least" / "or less" in words: WinAnsiEncoding (the page's Helvetica) has no ≥ or ≤
    return [
        ("Reporting period", f"{report.first_day.isoformat()} to {report.last_day.isoformat()} "
                             f"({report.days} days)"),
        ("Days with data", f"{report.days_worn} of {report.days}"),
        ("Sensor active", f"{percent_text(report.active_percent)}   (goal: at least 70 %)"),
        ("Readings", f"{report.profile.count:,}"),
        ("Mean glucose", f"{report.mean:.0f} mg/dL" if report.profile.count else "-"),
        ("Glucose management indicator (GMI)", f"{report.gmi:.1f} %" if report.profile.count else "-"),
        ("Glucose variability (CV)", f"{percent_text(report.cv)}   (goal: 36 % or less)" if report.profile.count
         else "-"),
    ]


class _Canvas:
    """The page with positions as fractions of its width and height (0,0 bottom left), as the layout is given."""

    def __init__(self) -> None:
        self.page = Page(_WIDTH, _HEIGHT)

    def text(self, fx: float, fy: float, text: str, size: float, **options: Any) -> None:
        self.page.text(fx * _WIDTH, fy * _HEIGHT, text, size, **options)

    def rect(self, fx: float, fy: float, fw: float, fh: float, fill: str, stroke: str | None = None,
             line_width: float = 1.0) -> None:
        self.page.rect(fx * _WIDTH, fy * _HEIGHT, fw * _WIDTH, fh * _HEIGHT, fill, stroke, line_width)


class _Axes:
    """A plot area on the page: data coordinates (x in seconds, y in mg/dL) to points."""

    def __init__(self, canvas: _Canvas, rect: tuple[float, float, float, float], x_max: float) -> None:
        self.page = canvas.page
        self.x0, self.y0 = rect[0] * _WIDTH, rect[1] * _HEIGHT
        self.w, self.h = rect[2] * _WIDTH, rect[3] * _HEIGHT
        self.x_max = x_max

    def px(self, x: Any) -> Any:
        return self.x0 + np.asarray(x, dtype=np.float64) * (self.w / self.x_max)

    def py(self, y: Any) -> Any:
        return self.y0 + np.asarray(y, dtype=np.float64) * (self.h / _Y_MAX)

    def points(self, x: np.ndarray, y: np.ndarray) -> list[tuple[float, float]]:
        return list(zip(self.px(x).tolist(), self.py(y).tolist(), strict=True))

    def glucose_grid(self, ticks: Sequence[int], tick_size: float) -> None:
        """The target range shaded, the range limits dashed, the frame's left and bottom edges, y tick labels."""
        page = self.page
        page.rect(self.x0, float(self.py(70.0)), self.w, float(self.py(180.0) - self.py(70.0)), fill=_TARGET_FILL)
        page.line(self.x0, self.y0, self.x0 + self.w, self.y0, _INK, 0.8)
        page.line(self.x0, self.y0, self.x0, self.y0 + self.h, _INK, 0.8)
        for level in ticks:
            y = float(self.py(level))
            page.line(self.x0 - 3.0, y, self.x0, y, _INK, 0.6)
            page.text(self.x0 - 5.0, y, str(level), tick_size, align="right", valign="center")

    def reference_lines(self) -> None:
        for level, colour in _REFERENCE_LINES:
            y = float(self.py(level))
            self.page.line(self.x0, y, self.x0 + self.w, y, colour, 0.6, _DASH)


def _draw_header(canvas: _Canvas, report: CgmReportInput) -> None:
    canvas.text(0.06, 0.965, REPORT_TITLE, 17, bold=True, valign="top")
    line = f"{_day_text(report.first_day)} {report.first_day.year} – {_day_text(report.last_day)} " \
           f"{report.last_day.year}"
    if report.subject:
        line += f"     {report.subject}"
    canvas.text(0.06, 0.937, line, 10, colour=_GREY, valign="top")
    if report.insufficient:
        canvas.rect(0.06, 0.885, 0.88, 0.038, "#fdecea", "#c62828", 1.2)
        canvas.text(0.075, 0.904, "Insufficient data", 14, bold=True, colour="#b71c1c", valign="center")
        canvas.text(0.32, 0.904, f"sensor active {percent_text(report.active_percent)} of the reporting period; "
                                 f"at least {INSUFFICIENT_ACTIVE_PERCENT:.0f} % is needed", 9, colour="#b71c1c",
                    valign="center")


def _draw_stats(canvas: _Canvas, report: CgmReportInput) -> None:
    canvas.text(0.06, 0.862, "Summary", 12, bold=True, valign="top")
    y = 0.835
    for label, value in _stats_rows(report):
        canvas.text(0.06, y, label, 9, colour=_GREY, valign="top")
        canvas.text(0.06, y - 0.016, value, 10, bold=True, valign="top")
        y -= 0.037


def _draw_ranges(canvas: _Canvas, report: CgmReportInput) -> None:
    canvas.text(0.55, 0.862, "Time in ranges", 12, bold=True, valign="top")
    shares = np.clip(np.asarray(report.band_percent, dtype=np.float64), 0.0, 100.0).tolist()
    bottom, height = 0.585, 0.255
    scale = height / max(100.0, sum(shares))
    for share, (_, _, colour) in zip(shares, CONSENSUS_GOALS, strict=True):
        if share > 0.0:
            canvas.rect(0.55, bottom, 0.06, share * scale, colour, "#ffffff", 0.5)
        bottom += share * scale
    # labels at fixed heights (a 0.3 % segment is too thin to carry its own), highest range on top
    for i, (share, (label, goal, colour)) in enumerate(zip(shares, CONSENSUS_GOALS, strict=True)):
        y = 0.605 + i * 0.052
        canvas.rect(0.625, y - 0.006, 0.012, 0.012 * _WIDTH / _HEIGHT, colour)
        canvas.text(0.645, y + 0.008, label, 9, valign="center")
        canvas.text(0.645, y - 0.009, goal, 8, colour=_MUTED, valign="center")
        canvas.text(0.935, y, percent_text(share), 11, bold=True, valign="center", align="right")


def _hour_axis(axes: _Axes) -> None:
    for hour in range(0, 25, 3):
        x = float(axes.px(hour * 3600.0))
        axes.page.line(x, axes.y0, x, axes.y0 - 3.0, _INK, 0.6)
        axes.page.text(x, axes.y0 - 5.0, f"{hour:02d}:00", 8, align="center", valign="top")


def _band(axes: _Axes, x: np.ndarray, low: np.ndarray, high: np.ndarray, colour: str) -> None:
    """The area between two curves, one polygon per stretch of bins that have readings."""
    finite = np.isfinite(low) & np.isfinite(high)
    edges = np.flatnonzero(np.diff(np.concatenate(([0], finite.astype(np.int8), [0]))))
    for a, b in zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True):
        upper = axes.points(x[a:b], high[a:b])
        lower = axes.points(x[a:b], low[a:b])
        axes.page.polygon(upper + lower[::-1], fill=colour)


def _draw_modal_day(canvas: _Canvas, report: CgmReportInput) -> None:
    modal = report.profile.modal
    canvas.text(0.06, 0.555, "Glucose by time of day (all days of the period on one 24-hour clock)", 12, bold=True,
                valign="top")
    canvas.text(0.06, 0.535, f"Median (line), 25th-75th and 5th-95th percentiles (bands) per "
                             f"{modal.bin_seconds // 60}-minute interval of local time; target 70-180 mg/dL shaded",
                8, colour=_MUTED, valign="top")
    axes = _Axes(canvas, (0.10, 0.325, 0.84, 0.195), float(DAY))
    axes.glucose_grid((54, 70, 180, 250, 350), 8)
    canvas.page.text(axes.x0 - 28.0, axes.y0 + axes.h / 2, "mg/dL", 8, align="center", valign="bottom", angle=90)
    _hour_axis(axes)
    x = modal.bin_start + modal.bin_seconds / 2.0
    # close the day: the last bin's values repeat at 24:00 and the first bin's at 00:00, so the bands span it
    x = np.concatenate(([0.0], x, [float(DAY)]))
    curves = np.clip(np.concatenate((modal.curves[:, :1], modal.curves, modal.curves[:, -1:]), axis=1), 0.0, _Y_MAX)
    p = {level: curves[i] for i, level in enumerate(modal.levels)}
    if {5.0, 95.0} <= p.keys():
        _band(axes, x, p[5.0], p[95.0], _OUTER_BAND)
    if {25.0, 75.0} <= p.keys():
        _band(axes, x, p[25.0], p[75.0], _INNER_BAND)
    axes.reference_lines()
    if 50.0 in p:
        axes.page.polyline(axes.points(x, p[50.0]), _MEDIAN, 1.6)
    _legend(axes)
    if report.profile.count == 0:
        axes.page.text(axes.x0 + axes.w / 2, axes.y0 + axes.h / 2, "no readings", 10, colour=_FAINT, align="center",
                       valign="center")


def _legend(axes: _Axes) -> None:
    """A key in the chart's top right corner: the two bands and the median."""
    page = axes.page
    x, y = axes.x0 + axes.w - 190.0, axes.y0 + axes.h - 2.0
    for label, colour in (("5th-95th", _OUTER_BAND), ("25th-75th", _INNER_BAND)):
        page.rect(x, y - 7.0, 10.0, 7.0, fill=colour)
        page.text(x + 13.0, y - 3.5, label, 7, valign="center")
        x += 60.0
    page.line(x, y - 3.5, x + 10.0, y - 3.5, _MEDIAN, 1.6)
    page.text(x + 13.0, y - 3.5, "median", 7, valign="center")


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


def _draw_daily(canvas: _Canvas, report: CgmReportInput) -> None:
    canvas.text(0.06, 0.285, "Daily glucose profiles", 12, bold=True, valign="top")
    first = (report.first_day - date(1970, 1, 1)).days
    x, y, with_data = _day_series(report, first)
    rows = max(1, -(-report.days // 7))
    gap = min(0.022, 0.25 * 0.21 / rows)
    height = min(0.085, 0.21 / rows - gap)
    for row in range(rows):
        top = 0.262 - row * (height + gap)
        axes = _Axes(canvas, (0.10, top - height, 0.84, height), 7.0 * DAY)
        axes.glucose_grid((70, 180), 6)
        axes.reference_lines()
        lo, hi = row * 7 * float(DAY), (row + 1) * 7 * float(DAY)
        if len(x):
            inside = ((x >= lo) & (x < hi)) | np.isnan(x)
            with axes.page.clipped(axes.x0, axes.y0, axes.w, axes.h):
                axes.page.polyline(axes.points(x[inside] - lo, y[inside]), _MEDIAN, 0.5)
        columns = range(row * 7, min(report.days, (row + 1) * 7))
        for col in columns:
            left = float(axes.px((col - row * 7) * float(DAY)))
            middle = float(axes.px((col - row * 7 + 0.5) * DAY))
            if col > row * 7:
                axes.page.line(left, axes.y0, left, axes.y0 + axes.h, "#999999", 0.6)
            if col not in with_data:
                axes.page.text(middle, float(axes.py(300.0)), "no data", 7, colour=_FAINT, align="center",
                               valign="center")
            day = report.first_day + timedelta(days=col)
            axes.page.text(middle, axes.y0 - 2.0, _day_text(day), 7, align="center", valign="top")


def _draw_footer(canvas: _Canvas) -> None:
    canvas.text(0.06, 0.03, "Ranges and goals: International Consensus on Time in Range (Battelino et al., Diabetes "
                            "Care 2019). GMI = 3.31 + 0.02392 × mean glucose (mg/dL).", 6.5, colour=_MUTED,
                valign="bottom")
    canvas.text(0.06, 0.018, "Times are the patient's local time. Generated by wearfhir from the CGM readings of the "
                             "reporting period.", 6.5, colour=_MUTED, valign="bottom")


def render_cgm_report_pdf(report: CgmReportInput) -> bytes:
    """The one-page A4 PDF of one reporting period (deterministic: the same input gives the same bytes)."""
    canvas = _Canvas()
    _draw_header(canvas, report)
    _draw_stats(canvas, report)
    _draw_ranges(canvas, report)
    _draw_modal_day(canvas, report)
    _draw_daily(canvas, report)
    _draw_footer(canvas)
    return canvas.page.pdf(title=f"{REPORT_TITLE}, {report.first_day.isoformat()} to {report.last_day.isoformat()}",
                           producer=_PRODUCER)


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
