"""Glucose by time of day for one CGM reporting period: the modal-day percentile profile and daily profiles.

The modal day folds every reading of the period onto one 24-hour local clock, ``(epoch + offset) % 86400``
with the offset column's local clock (so on a DST day the repeated hour holds two hours of readings and the
skipped hour none), and gives the 5th/25th/50th/75th/95th percentiles of the readings in each time-of-day bin
(the 2019 international consensus on time in range asks for these curves; numpy's ``linear`` percentile
definition, computed for all bins at once).

Bins are 15 minutes wide (96 a day). Over a 14-day period of 5-minute readings a 15-minute bin holds 42
readings (30 at the 70 % sensor-active minimum), enough for the 5th and 95th percentiles to lie between
readings rather than on the extremes; 5-minute bins (14 readings) would make those curves the day's minimum
and maximum, and 30-minute bins blur the timing of a meal peak. ``bin_seconds`` can change it.

Daily profiles are the period's readings per local day (local day = ``(epoch + offset) // 86400``), in time
order, for a small-multiples strip. Pure: arrays in, arrays out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["BIN_SECONDS", "PERCENTILES", "CgmProfile", "DailyProfiles", "ModalDay", "cgm_profile", "daily_profiles",
           "modal_day", "percentiles_by_group"]

DAY = 86_400
BIN_SECONDS = 900  # 15-minute bins: 96 per day (see the module docstring)
PERCENTILES = (5.0, 25.0, 50.0, 75.0, 95.0)


@dataclass(frozen=True)
class ModalDay:
    """Percentiles of glucose by local time of day."""

    bin_seconds: int
    bin_start: np.ndarray  # seconds after local midnight at which each bin starts (all bins of the day)
    count: np.ndarray  # readings per bin
    levels: tuple[float, ...]  # the percentiles, e.g. (5, 25, 50, 75, 95)
    curves: np.ndarray  # [level, bin] mg/dL; NaN where a bin has no reading

    def curve(self, level: float) -> np.ndarray:
        """The curve of one percentile (``level`` must be one of ``levels``)."""
        return self.curves[self.levels.index(level)]


@dataclass(frozen=True)
class DailyProfiles:
    """The readings of each local day, in time order (one flat array cut at ``bounds``)."""

    days: np.ndarray  # local day numbers (days since 1970-01-01) that have readings, ascending
    bounds: np.ndarray  # len(days) + 1 positions: day i is [bounds[i], bounds[i + 1])
    second: np.ndarray  # seconds after local midnight of each reading
    value: np.ndarray  # mg/dL

    def __len__(self) -> int:
        return len(self.days)

    def series(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(seconds after local midnight, value) of day ``i`` (an index into ``days``)."""
        a, b = int(self.bounds[i]), int(self.bounds[i + 1])
        return self.second[a:b], self.value[a:b]


@dataclass(frozen=True)
class CgmProfile:
    """Both views of one reporting period."""

    modal: ModalDay
    daily: DailyProfiles
    count: int  # readings in the period


def _local_seconds(epoch: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Local seconds since 1970-01-01T00:00 (local clock) of each reading, as int64."""
    return np.floor(np.asarray(epoch, dtype=np.float64) + np.asarray(offset, dtype=np.float64)).astype(np.int64)


def percentiles_by_group(group: np.ndarray, value: np.ndarray, n_groups: int,
                         levels: tuple[float, ...] = PERCENTILES) -> tuple[np.ndarray, np.ndarray]:
    """(count per group, [level, group] percentiles) of ``value`` grouped by ``group`` (ints in [0, n_groups)).

    Vectorised over groups and levels, and the same numbers as ``np.percentile(values_of_group, levels)``
    (method ``linear``): the same virtual index ``(n − 1)·q`` and the same two-sided interpolation.
    A group without values gets NaN.
    """
    group = np.asarray(group, dtype=np.int64)
    value = np.asarray(value, dtype=np.float64)
    count = np.bincount(group, minlength=n_groups)[:n_groups]
    order = np.lexsort((value, group))
    ordered = value[order]
    start = np.concatenate(([0], np.cumsum(count)[:-1]))
    q = np.asarray(levels, dtype=np.float64)[:, None] / 100.0  # [level, 1]
    n = count[None, :].astype(np.float64)  # [1, group]
    virtual = (n - 1.0) * q  # numpy's virtual index for ``linear``
    previous = np.floor(virtual)
    gamma = virtual - previous
    below, above = virtual < 0, virtual >= n - 1
    lo = np.where(above, n - 1, np.where(below, 0, previous)).astype(np.int64)
    hi = np.where(above, n - 1, np.where(below, 0, previous + 1)).astype(np.int64)
    empty = count == 0
    last = len(ordered) - 1
    a = ordered[np.clip(start + lo, 0, max(last, 0))] if len(ordered) else np.zeros(lo.shape)
    b = ordered[np.clip(start + hi, 0, max(last, 0))] if len(ordered) else np.zeros(hi.shape)
    diff = b - a
    out = np.where(gamma >= 0.5, b - diff * (1.0 - gamma), a + diff * gamma)  # numpy's _lerp
    out[:, empty] = np.nan
    return count, out


def modal_day(epoch: np.ndarray, offset: np.ndarray, value: np.ndarray, bin_seconds: int = BIN_SECONDS,
              levels: tuple[float, ...] = PERCENTILES) -> ModalDay:
    """The percentile curves by local time of day of one period's readings (``bin_seconds`` must divide a day)."""
    if DAY % bin_seconds:
        raise ValueError(f"bin_seconds={bin_seconds} does not divide a day")
    n_bins = DAY // bin_seconds
    bins = (_local_seconds(epoch, offset) % DAY) // bin_seconds
    count, curves = percentiles_by_group(bins, value, n_bins, levels)
    return ModalDay(bin_seconds=bin_seconds, bin_start=np.arange(n_bins, dtype=np.int64) * bin_seconds,
                    count=count, levels=tuple(float(level) for level in levels), curves=curves)


def daily_profiles(epoch: np.ndarray, offset: np.ndarray, value: np.ndarray) -> DailyProfiles:
    """The readings of each local day of the period, in time order."""
    local = _local_seconds(epoch, offset)
    epoch = np.asarray(epoch, dtype=np.float64)
    day = local // DAY
    order = np.lexsort((epoch, day))  # by local day, then by instant (a repeated DST hour stays in order)
    day, local = day[order], local[order]
    days, first = np.unique(day, return_index=True)
    bounds = np.append(first, len(day)).astype(np.int64)
    return DailyProfiles(days=days, bounds=bounds, second=local - day * DAY,
                         value=np.asarray(value, dtype=np.float64)[order])


def cgm_profile(epoch: np.ndarray, offset: np.ndarray, value: np.ndarray, bin_seconds: int = BIN_SECONDS
                ) -> CgmProfile:
    """The modal day and the daily profiles of one reporting period's readings (epoch seconds, UTC offset of
    the patient's zone per reading in seconds, mg/dL)."""
    return CgmProfile(modal=modal_day(epoch, offset, value, bin_seconds), daily=daily_profiles(epoch, offset, value),
                      count=len(value))
