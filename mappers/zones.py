"""The patient's local clock from an IANA time zone: UTC offsets and local day starts, exact and cached."""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import numpy as np

__all__ = ["local_day_start", "resolve_zone", "zone_offset", "zone_offsets"]

# Why zones and not written offsets (DESIGN §2 "Time"): an iPhone writes every date with the offset in force
# when the export was made, so the offset fixes the instant only; the local clock (hour, day and night windows,
# 23/25-hour DST days) comes from the zone's rules. Days are numbered as in ``aggregates.windows.day_keys``:
# days since 1970-01-01 on the local calendar, i.e. ``floor((epoch + offset) / 86400)``.

HOUR = 3600
DAY = 86400
_UNIX_EPOCH = datetime(1970, 1, 1)  # noqa: DTZ001 (a naive local wall clock: local days are counted from it)
_REFUSED = frozenset({"localtime", "Factory"})  # the server's own zone; "-00", tzdb's "zone unknown"
_CACHE_LIMIT = 200_000  # entries (per zone for hours) before a cache is cleared: a few MB
_ZONE_LIMIT = 64  # zones with cached hours

# zone -> hour bucket (``int(epoch // 3600)``) -> UTC offset in seconds, for hours without a transition
_HOUR_OFFSETS: dict[str, dict[int, int]] = {}
# (zone, local day, local seconds) -> the instant (epoch seconds) that local time starts
_DAY_STARTS: dict[tuple[str, int, int], float] = {}


@lru_cache(maxsize=1)
def _known_names() -> frozenset[str]:
    # tzdb's names only: this refuses paths ("../etc"), non-zone files ("zone.tab"), "posix/..." and "right/..."
    # (leap-second clocks), whatever the input says
    return frozenset(available_timezones()) - _REFUSED


@lru_cache(maxsize=4096)
def resolve_zone(name: str | None) -> ZoneInfo | None:
    """The IANA zone called ``name``, or None for None, an empty, unknown or invalid name; never raises.

    Only tzdb's own names are accepted, case-sensitively (``Europe/Berlin``, ``UTC``); ``localtime`` (the server's
    zone) and ``Factory`` are refused. Cached, so callers may resolve a name once per record.
    """
    if not name or not isinstance(name, str) or name not in _known_names():
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def _zone(name: str) -> ZoneInfo:
    zone = resolve_zone(name)
    if zone is None:
        raise ValueError("not a known IANA time zone name (resolve names with resolve_zone first)")
    return zone


def _offset_at(zone: ZoneInfo, epoch: float) -> int:
    delta = datetime.fromtimestamp(epoch, zone).utcoffset()
    assert delta is not None  # a ZoneInfo always has an offset
    return delta.days * DAY + delta.seconds


def zone_offset(zone: str, epoch: float) -> int:
    """The UTC offset in seconds of ``zone`` at the instant ``epoch`` (epoch seconds).

    Exactly ``datetime.fromtimestamp(epoch, ZoneInfo(zone)).utcoffset()``. Cached per (zone, hour); an hour with a
    transition in it is computed per call. Raises ValueError for a name ``resolve_zone`` refuses.
    """
    try:
        return _HOUR_OFFSETS[zone][int(epoch // HOUR)]
    except KeyError:
        return _offset_miss(zone, epoch)


def _offset_miss(zone_name: str, epoch: float) -> int:
    bucket = int(epoch // HOUR)
    offset = _hour_offset(zone_name, bucket)
    return offset if offset is not None else _offset_at(_zone(zone_name), epoch)


def _hour_offset(zone_name: str, bucket: int) -> int | None:
    """The offset all through hour ``bucket``, cached; None when the offset changes within that hour."""
    hours = _HOUR_OFFSETS.get(zone_name)
    if hours is not None and bucket in hours:
        return hours[bucket]
    zone = _zone(zone_name)
    first = _offset_at(zone, bucket * HOUR)
    # the hour's end is checked inclusively: fromtimestamp rounds to the microsecond, so an epoch a hair before
    # the next hour is read at the next hour's first second
    if first != _offset_at(zone, (bucket + 1) * HOUR):
        return None
    if hours is None or len(hours) >= _CACHE_LIMIT:
        if len(_HOUR_OFFSETS) >= _ZONE_LIMIT:
            _HOUR_OFFSETS.clear()
        hours = _HOUR_OFFSETS[zone_name] = {}
    hours[bucket] = first
    return first


def zone_offsets(zone: str, epochs: np.ndarray) -> np.ndarray:
    """``zone_offset`` of each epoch, as int32 seconds: computed once per distinct hour, not per element.

    Time-ordered input (the usual case) is handled as runs of equal hours without sorting, other input through
    ``np.unique``; only the elements of an hour holding a transition are computed one by one. Raises ValueError
    for a name ``resolve_zone`` refuses.
    """
    epochs = np.asarray(epochs, dtype=np.float64)
    tz = _zone(zone)
    flat = epochs.ravel()
    if flat.size == 0:
        return np.empty(epochs.shape, dtype=np.int32)
    buckets = np.floor(flat / HOUR).astype(np.int64)
    change = np.flatnonzero(buckets[1:] != buckets[:-1]) + 1
    if len(change) * 4 <= len(buckets):  # runs of equal hours (time-ordered input): no sort
        starts = np.r_[0, change]
        ends = np.r_[change, len(buckets)]
        per_run, mixed = _per_hour(zone, buckets[starts])
        result = np.repeat(per_run, ends - starts)
        for run in mixed:
            result[starts[run]:ends[run]] = [_offset_at(tz, e) for e in flat[starts[run]:ends[run]].tolist()]
    else:
        hours, inverse = np.unique(buckets, return_inverse=True)
        inverse = inverse.ravel()
        per_hour, mixed = _per_hour(zone, hours)
        result = per_hour[inverse]
        if mixed:
            for index in np.flatnonzero(np.isin(inverse, mixed)).tolist():
                result[index] = _offset_at(tz, float(flat[index]))
    return result.reshape(epochs.shape)


def _per_hour(zone: str, hours: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """The offset of each hour bucket, and the positions of those holding a transition (their offset is left 0)."""
    offsets = np.zeros(len(hours), dtype=np.int32)
    mixed = []
    for index, hour in enumerate(hours.tolist()):
        offset = _hour_offset(zone, hour)
        if offset is None:
            mixed.append(index)
        else:
            offsets[index] = offset
    return offsets, mixed


def local_day_start(zone: str | None, days: np.ndarray, fallback_offset: np.ndarray, seconds: int = 0) -> np.ndarray:
    """Epoch seconds (float64) at which local wall time ``seconds`` (a time of day; 43200 = noon) begins on each
    local day ``days`` (days since 1970-01-01 on the local calendar).

    With a zone, by its rules: the window [start of day, start of next day) is 23 or 25 hours long on DST days.
    A local time that occurs twice (fall-back) is its first occurrence (zoneinfo's fold=0). A local time that does
    not exist (a DST gap, e.g. zones that spring forward at midnight) is the first instant after the gap: the
    transition itself, the first instant whose local time is later than ``seconds`` on that day. So with
    ``seconds=0`` the result is always the first instant of the local day. Without a zone (None):
    ``days * 86400 + seconds - fallback_offset`` (a fixed offset; ``fallback_offset`` broadcasts against
    ``days``). Computed once per distinct (zone, day, seconds). Raises ValueError for a name ``resolve_zone``
    refuses.
    """
    days = np.asarray(days, dtype=np.int64)
    if zone is None:
        return (days * DAY + seconds - np.asarray(fallback_offset, dtype=np.int64)).astype(np.float64)
    _zone(zone)
    if days.size == 0:
        return np.empty(days.shape, dtype=np.float64)
    unique, inverse = np.unique(days, return_inverse=True)
    starts = np.fromiter((_day_start(zone, int(day), seconds) for day in unique), dtype=np.float64,
                         count=len(unique))
    return starts[inverse].reshape(days.shape)


def _day_start(zone_name: str, day: int, seconds: int) -> float:
    key = (zone_name, day, seconds)
    start = _DAY_STARTS.get(key)
    if start is None:
        start = float(_local_instant(_zone(zone_name), _UNIX_EPOCH + timedelta(days=day, seconds=seconds)))
        if len(_DAY_STARTS) >= _CACHE_LIMIT:
            _DAY_STARTS.clear()
        _DAY_STARTS[key] = start
    return start


def _local_instant(zone: ZoneInfo, wall: datetime) -> int:
    """The first instant whose local wall time in ``zone`` is ``wall`` or, inside a gap, the gap's end."""
    earlier = wall.replace(tzinfo=zone)  # fold=0: the first occurrence of a repeated time
    instant = _whole_seconds(earlier)
    if datetime.fromtimestamp(instant, zone).replace(tzinfo=None) == wall:
        return instant
    # a gap: fold=0 reads ``wall`` with the offset before the transition (past the transition), fold=1 with the
    # offset after it (before the transition); the transition is the first instant in between whose local time
    # is at or after ``wall`` (transitions fall on whole seconds)
    low, high = _whole_seconds(wall.replace(tzinfo=zone, fold=1)), instant
    if low > high:
        low, high = high, low
    while low < high:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, zone).replace(tzinfo=None) >= wall:
            high = middle
        else:
            low = middle + 1
    return high


def _whole_seconds(moment: datetime) -> int:
    delta = moment.utcoffset()
    assert delta is not None
    return (moment.replace(tzinfo=None) - _UNIX_EPOCH) // timedelta(seconds=1) - (delta.days * DAY + delta.seconds)
