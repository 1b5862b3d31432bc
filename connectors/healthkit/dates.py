"""HealthKit export dates: strict, round-trip-exact parsing of the two shapes iPhones write."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

__all__ = ["DateWithoutOffsetError", "format_healthkit_date", "parse_healthkit_date"]

# The only two shapes accepted (anything else raises ValueError):
#   modern   "2017-05-17 08:00:00 +0200"   (iOS 10 and later; "+02:00" is accepted too)
#   compact  "20140107104300-0800"          (iOS 8/9; Python 3.11's fromisoformat reads it as 04:30, or rejects it)
# The written offset fixes the instant only: iPhones write the offset in force when the export was made on every
# date, so the patient's local clock comes from an IANA zone (mappers.zones), never from this offset.
#
# Exactness: a text is accepted only if formatting the parsed value back in the same shape gives the same text.
# The modern path gets that without formatting back (which would triple its cost): the length, the six separator
# positions and ASCII are checked first; the offset text must be one of the valid ``±HHMM``/``±HH:MM`` spellings
# (HH <= 23, MM <= 59, no "-0000": fromisoformat alone would read "+0099" as +01:39 and "-0000" as UTC); and
# fromisoformat then rejects any non-digit or out-of-range field. Every field being fixed-width, what it accepts
# formats back to the same text (tests/test_dates.py checks this by mutation and with hypothesis).
#
# Fixed offsets: the compact path attaches a shared, cached ``timezone`` per offset text. The modern path returns
# fromisoformat's own ``timezone`` (equal to the cached one, not the same object; UTC is the ``datetime.UTC``
# singleton): attaching the cached instance costs more than the whole parse (``replace`` +0.6 µs, ``combine``
# of a date and a time +0.16 µs), and downstream code compares offsets by value.

_MODERN_LENGTHS = (25, 26)  # "... +0200", "... +02:00"
_COMPACT_LENGTH = 19
_SEPARATORS = "-- :: "  # text[4:20:3] of a modern date: positions 4, 7, 10, 13, 16 and 19
_MESSAGE = "not a HealthKit date: expected 'YYYY-MM-DD HH:MM:SS +HHMM' or 'YYYYMMDDHHMMSS+HHMM'"

# offset text ("+0200", "-08:00") -> a shared fixed-offset timezone. Only valid texts are stored, so it holds at
# most the 5,758 valid spellings (in practice a handful).
_ZONES: dict[str, timezone] = {}
_fromisoformat = datetime.fromisoformat


class DateWithoutOffsetError(ValueError):
    """A modern-shaped date written without its UTC offset: its instant cannot be known."""


def parse_healthkit_date(text: str) -> datetime:
    """A HealthKit date as a tz-aware datetime with a fixed ``datetime.timezone`` offset.

    Accepts exactly ``YYYY-MM-DD HH:MM:SS ±HHMM`` (or ``±HH:MM``) and the iOS 8/9 compact ``YYYYMMDDHHMMSS±HHMM``;
    raises ``ValueError`` for anything else: no offset, another shape, out-of-range fields, leading or trailing
    text, or a text that would not round-trip. Messages never quote the text (dates are PHI).
    """
    size = len(text)
    if size in _MODERN_LENGTHS and text[4:20:3] == _SEPARATORS and text.isascii():
        if text[20:] not in _ZONES:
            _offset_zone(text[20:])  # raises for a malformed offset
        try:
            return _fromisoformat(text)
        except ValueError:
            raise ValueError(_MESSAGE + " (a field is not a number or is out of range)") from None
    if size == _COMPACT_LENGTH:
        wall = text[:14]
        if wall.isascii() and wall.isdigit():
            zone = _ZONES.get(text[14:]) or _offset_zone(text[14:])
            try:
                return datetime(int(wall[0:4]), int(wall[4:6]), int(wall[6:8]), int(wall[8:10]), int(wall[10:12]),
                                int(wall[12:14]), tzinfo=zone)
            except ValueError:
                raise ValueError(_MESSAGE + " (a field is out of range)") from None
        if text[4:19:3] == _SEPARATORS[:5]:
            raise DateWithoutOffsetError(_MESSAGE + " (the date has no UTC offset)")
    raise ValueError(_MESSAGE)


def _offset_zone(offset: str) -> timezone:
    """The cached fixed-offset zone for ``±HHMM`` or ``±HH:MM``; ValueError for any other text."""
    zone = _ZONES.get(offset)
    if zone is not None:
        return zone
    if len(offset) == 6 and offset[3] == ":":
        digits = offset[1:3] + offset[4:6]
    elif len(offset) == 5:
        digits = offset[1:]
    else:
        raise ValueError(_MESSAGE + " (the UTC offset must look like +0200)")
    if offset[0] not in "+-" or not (digits.isascii() and digits.isdigit()):
        raise ValueError(_MESSAGE + " (the UTC offset must look like +0200)")
    hours, minutes = int(digits[:2]), int(digits[2:])
    if hours > 23 or minutes > 59:
        raise ValueError(_MESSAGE + " (the UTC offset is out of range)")
    if offset[0] == "-" and not (hours or minutes):
        raise ValueError(_MESSAGE + " (a zero UTC offset is written +0000, not -0000)")
    delta = timedelta(hours=hours, minutes=minutes)
    zone = UTC if not delta else timezone(-delta if offset[0] == "-" else delta)
    _ZONES[offset] = zone
    return zone


def format_healthkit_date(moment: datetime, *, compact: bool = False, colon: bool = False) -> str:
    """``moment`` written as HealthKit writes it, in its own UTC offset: the inverse of ``parse_healthkit_date``.

    ``compact`` gives the iOS 8/9 shape; ``colon`` writes the modern offset as ``±HH:MM``. Microseconds are dropped
    (HealthKit dates have none). Raises ``ValueError`` for a naive datetime or an offset that is not a whole
    number of minutes.
    """
    delta = moment.utcoffset()
    if delta is None:
        raise ValueError("a HealthKit date needs a UTC offset")
    total = delta.days * 86400 + delta.seconds
    if total % 60 or delta.microseconds:
        raise ValueError("a HealthKit UTC offset is a whole number of minutes")
    sign = "-" if total < 0 else "+"
    hours, minutes = divmod(abs(total) // 60, 60)
    if compact:
        return (f"{moment.year:04d}{moment.month:02d}{moment.day:02d}{moment.hour:02d}{moment.minute:02d}"
                f"{moment.second:02d}{sign}{hours:02d}{minutes:02d}")
    offset = f"{sign}{hours:02d}:{minutes:02d}" if colon else f"{sign}{hours:02d}{minutes:02d}"
    return (f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d} {moment.hour:02d}:{moment.minute:02d}:"
            f"{moment.second:02d} {offset}")
