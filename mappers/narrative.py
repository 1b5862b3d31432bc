"""Generated narratives (``Observation.text``) for summary Observations: safe XHTML a clinician can read. Pure.

R4 (hl7.org/fhir/R4/narrative.html): ``text.status = generated`` means the narrative is built from the
structured data alone; ``div`` is an XHTML ``<div>`` in the XHTML namespace, of the basic formatting elements
only (txt-1) and with some content (txt-2). Everything written here is escaped text inside ``<p>``, ``<b>``,
``<ul>`` and ``<li>`` elements: no script, style, link or attribute other than the namespace, so no value, source
name or unit can become markup.

Windows are written in the patient's local time, with an inclusive last day: a day "Tue 12 Mar 2024", an hour
"Tue 12 Mar 2024, 09:00–10:00", a night "night of Tue 12 Mar 2024", a multi-day period "4–17 Mar 2024". They are
read from the local ISO date-times of ``effectivePeriod`` (their wall-clock part), so a narrative shows the same
local window as the structured data. Numbers are written for people: ``8,412``, ``76.5``.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from functools import lru_cache
from html import escape
from typing import Any
from zoneinfo import ZoneInfo

__all__ = ["XHTML", "day_text", "hour_text", "last_day", "narrative", "night_text", "number", "period_text",
           "quantity_text", "repeated_hour"]

XHTML = "http://www.w3.org/1999/xhtml"
_EN_DASH = "\u2013"


def number(value: float | int, decimals: int | None = None) -> str:
    """A number for people: thousands separated by commas, at most ``decimals`` decimals (trailing zeros dropped).

    ``number(8412) == "8,412"``, ``number(76.25, 1) == "76.2"`` (round half to even, as Python rounds),
    ``number(131.0, 1) == "131"``.
    """
    if isinstance(value, bool):
        raise TypeError("a boolean is not a number")
    if isinstance(value, int):
        return f"{value:,}"
    if decimals is not None:
        value = round(float(value), decimals)
    if float(value).is_integer():
        return f"{int(value):,}"
    text = f"{value:,.{decimals}f}" if decimals is not None else f"{value:,}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def quantity_text(value: float | int, unit: str, decimals: int | None = None) -> str:
    """``"76.5 beats/minute"``; a percentage is written ``"14.29 %"``."""
    return f"{number(value, decimals)} {unit}"


def _date(iso: str) -> date:
    return date.fromisoformat(iso[:10])


def _day(d: date) -> str:
    return f"{d:%a} {d.day} {d:%b %Y}"


def day_text(iso: str) -> str:
    """``"Tue 12 Mar 2024"`` for a local date or date-time (its first ten characters)."""
    return _day_text(iso[:10])


@lru_cache(maxsize=8192)
def _day_text(iso_date: str) -> str:
    return _day(date.fromisoformat(iso_date))


def hour_text(start: str, end: str, repeated: bool = False) -> str:
    """``"Tue 12 Mar 2024, 09:00–10:00"`` from local ISO date-times (their wall-clock part); an hour the clock
    shows twice (the fall-back hour, ``repeated``) adds its UTC offset:
    ``"Sun 3 Nov 2024, 01:00–02:00 (UTC-04:00)"``."""
    text = f"{day_text(start)}, {start[11:16]}{_EN_DASH}{end[11:16]}"
    return f"{text} (UTC{start[19:25]})" if repeated else text


def repeated_hour(start: str, zone: str | None) -> bool:
    """Whether the local wall-clock time ``start`` (ISO, local) occurs twice in ``zone`` (a fall-back hour)."""
    if zone is None or not _offset_falls(start[:10], zone):
        return False
    wall = datetime.fromisoformat(start[:19])
    tz = ZoneInfo(zone)
    return wall.replace(tzinfo=tz, fold=0).utcoffset() != wall.replace(tzinfo=tz, fold=1).utcoffset()


@lru_cache(maxsize=8192)
def _offset_falls(iso_date: str, zone: str) -> bool:
    """Whether ``zone``'s UTC offset is smaller at the end of the local day than at its start (the clock went
    back that day): the only days with a repeated hour (one check per day, not per hour)."""
    tz = ZoneInfo(zone)
    day = datetime.fromisoformat(iso_date)
    after = (day + timedelta(days=1)).replace(tzinfo=tz).utcoffset()
    before = day.replace(tzinfo=tz).utcoffset()
    return before is not None and after is not None and after < before


def night_text(iso: str) -> str:
    """``"night of Tue 12 Mar 2024"`` (the evening's date)."""
    return f"night of {day_text(iso)}"


def period_text(first: str, last: str) -> str:
    """A multi-day period with its last day inclusive: ``"4–17 Mar 2024"``, ``"26 Feb – 10 Mar 2024"``,
    ``"25 Dec 2023 – 7 Jan 2024"`` (``first`` and ``last`` are ISO dates)."""
    a, b = _date(first), _date(last)
    if a == b:
        return _day(a)
    if (a.year, a.month) == (b.year, b.month):
        return f"{a.day}{_EN_DASH}{b.day} {b:%b %Y}"
    if a.year == b.year:
        return f"{a.day} {a:%b} {_EN_DASH} {b.day} {b:%b %Y}"
    return f"{a.day} {a:%b %Y} {_EN_DASH} {b.day} {b:%b %Y}"


def last_day(end_exclusive: str) -> str:
    """The ISO date of the last day before an exclusive local-midnight end (``2024-03-18T00:00…`` → 2024-03-17)."""
    return (_date(end_exclusive) - timedelta(days=1)).isoformat()


def narrative(headline: str, window: str, details: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """``Observation.text``: the headline in bold, the window, then one list item per detail, all escaped."""
    parts = [f'<div xmlns="{XHTML}"><p><b>', escape(headline, quote=False), "</b></p><p>", escape(window, quote=False),
             "</p>"]
    if details:
        parts.append("<ul>")
        for detail in details:
            parts.extend(("<li>", escape(detail, quote=False), "</li>"))
        parts.append("</ul>")
    parts.append("</div>")
    return {"status": "generated", "div": "".join(parts)}
