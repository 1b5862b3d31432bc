"""Local-time windows: which hour or day each sample falls in, in the patient's own wall-clock time.

Each sample carries the UTC offset of the patient's zone at its start, so windows follow the clock the
patient lived by: a DST day has 23 or 25 hours, and the repeated fall-back hour is two hour windows (same
wall-clock hour, different offsets). Where the patient's IANA zone is known, day boundaries come from its
rules (local midnight, exactly); without one, from the samples' own offsets. Everything here is vectorised
over numpy arrays of epoch seconds and offsets in seconds.
"""

from __future__ import annotations

import numpy as np

from aggregates.prorate import Grid
from aggregates.stats import is_sorted, run_starts
from mappers.zones import local_day_start, zone_offsets

__all__ = ["DAY", "HOUR", "day_grid", "day_keys", "day_window_bounds", "hour_grid", "hour_keys",
           "hour_window_bounds", "local_day_keys", "local_starts"]

HOUR = 3600
DAY = 86400


def hour_keys(epoch: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """A sortable int64 key per sample: the index of its local clock hour as an absolute hour.

    A local hour is a real hour of time, so the key counts hours since the epoch, shifted by the
    sub-hour part of the offset (+05:30 zones have half-past hours). Consequences: keys grow with time
    (time-ordered samples need no sort), the repeated fall-back hour is two keys (two real hours), and the
    spring-forward day has 23 keys.
    """
    sub = _sub_hour_offset(offset)
    shifted = epoch if sub is None else epoch + sub
    return np.floor(shifted / HOUR).astype(np.int64)  # exact: IEEE division


def _sub_hour_offset(offset: np.ndarray) -> np.ndarray | None:
    """``offset % HOUR`` per sample, or None when every offset is a whole number of hours.

    Offsets change rarely along time-ordered samples (a DST change, a trip), so the modulo is taken once
    per run of equal offsets instead of once per sample (an integer modulo is the slowest step here).
    """
    if len(offset) == 0:
        return None
    change = np.flatnonzero(offset[1:] != offset[:-1]) + 1
    if len(change) * 16 > len(offset):  # offsets jump around: per-sample modulo
        sub = offset % HOUR
        return sub if sub.any() else None
    starts = np.r_[0, change]
    per_run = offset[starts] % HOUR
    if not per_run.any():
        return None
    return np.repeat(per_run, np.diff(np.r_[starts, len(offset)]))


def hour_window_bounds(keys: np.ndarray, offset: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(start, end) epoch seconds of hour windows, given each window's UTC offset in seconds."""
    start = keys * HOUR - offset % HOUR
    return start, start + HOUR


def day_keys(epoch: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """The local day of each sample as days since 1970-01-01 (in the sample's own offset).

    DST changes happen inside a day, so keys still grow with time for time-ordered samples.
    """
    return np.floor((epoch + offset) / DAY).astype(np.int64)


def local_starts(zone: str | None, days: np.ndarray, offset: np.ndarray, seconds: int = 0) -> np.ndarray:
    """Epoch seconds of local time ``seconds`` after midnight of local day number ``days`` (float64).

    With a zone, its rules decide (computed once per distinct day: samples share few days); without one,
    ``offset`` (each element's own fallback offset) does.
    """
    if zone is None or len(days) <= 1:
        return local_day_start(zone, days, offset, seconds)
    if is_sorted(days):
        starts = run_starts(days)
        per_day = local_day_start(zone, days[starts], offset[starts], seconds)
        return np.repeat(per_day, np.diff(np.r_[starts, len(days)]))
    distinct, index = np.unique(days, return_inverse=True)
    return local_day_start(zone, distinct, np.zeros(len(distinct), dtype=np.int32), seconds)[index]


def local_day_keys(zone: str | None, epoch: np.ndarray, offset: np.ndarray, seconds: int = 0) -> np.ndarray:
    """The local day of each instant shifted back by ``seconds`` (nights: noon to noon), by the zone's offset
    at that instant, or by ``offset`` without a zone."""
    at = zone_offsets(zone, epoch) if zone is not None else offset
    return np.floor((epoch + at - seconds) / DAY).astype(np.int64)


def hour_grid(offset: np.ndarray) -> Grid:
    """Hour windows of samples with these start offsets: real hours, on the sub-hour part of each offset."""
    sub = _sub_hour_offset(offset)

    def start(keys: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
        base = keys * float(HOUR)
        if sub is None:
            return base
        return base - (sub if rows is None else sub[rows])

    def key_of(epoch: np.ndarray, rows: np.ndarray) -> np.ndarray:
        shifted = epoch if sub is None else epoch + sub[rows]
        return np.floor(shifted / HOUR).astype(np.int64)

    return Grid(start, key_of)


def day_grid(offset: np.ndarray, zone: str | None, seconds: int = 0) -> Grid:
    """Local days [midnight, next midnight) of samples with these start offsets, by ``zone``'s rules when
    known (23 or 25 hours on DST days), else by each sample's offset; ``seconds`` shifts the day's start
    (noon to noon for nights)."""

    def start(keys: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
        return local_starts(zone, keys, offset if rows is None else offset[rows], seconds)

    def key_of(epoch: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return local_day_keys(zone, epoch, offset[rows], seconds)

    return Grid(start, key_of)


def day_window_bounds(first_day: np.ndarray, first_offset: np.ndarray, last_day: np.ndarray,
                      last_offset: np.ndarray, zone: str | None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(start, start offset, end, end offset) of windows of whole local days, from the midnight that opens
    ``first_day`` to the midnight that closes ``last_day`` (the same day for day windows).

    With a zone: local midnights by its rules, each shown in the zone's offset at that instant (true even
    when a DST day's first sample comes after the change). Without one: midnight in the offset of the
    window's first sample (``first_offset``) to midnight in the offset of its last (``last_offset``).
    """
    if zone is None:
        return (first_day * DAY - first_offset).astype(np.float64), first_offset, \
            ((last_day + 1) * DAY - last_offset).astype(np.float64), last_offset
    start = local_starts(zone, first_day, first_offset)
    end = local_starts(zone, last_day + 1, last_offset)
    return start, zone_offsets(zone, start), end, zone_offsets(zone, end)
