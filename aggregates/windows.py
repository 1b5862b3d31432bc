"""Local-time windows: which hour or day each sample falls in, in the patient's own wall-clock time.

Each sample carries its own UTC offset, so windows follow the clock the patient lived by: a DST day has
23 or 25 hours, and the repeated fall-back hour is two hour windows (same wall-clock hour, different
offsets). Everything here is vectorised over numpy arrays of epoch seconds and offsets in seconds.
"""

from __future__ import annotations

import numpy as np

__all__ = ["DAY", "HOUR", "day_keys", "hour_keys", "hour_window_bounds"]

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
