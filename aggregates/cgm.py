"""CGM summary statistics per multi-day period (HL7 CGM IG): times in ranges, mean, GMI, CV, wear.

Definitions (International Consensus on Time in Range, Battelino et al., Diabetes Care 2019; GMI from
Bergenstal et al., Diabetes Care 2018):

* time in each band = share of readings in the band (readings are equally spaced), in percent;
* GMI (%) = 3.31 + 0.02392 × mean glucose (mg/dL);
* CV (%) = 100 × standard deviation / mean (sample standard deviation);
* days of wear = local days with at least one reading;
* sensor active (%) = readings × the sensor's reading interval / the whole reporting period.

The reporting period is the fixed ``days``-long block that holds the readings (blocks start on a Monday,
counted from Monday 1970-01-05, so a re-import or late data updates the same report), reported **whole**:
the consensus measures wear against the reporting period, so two days of readings in a 14-day block are
≈14 % sensor active ("insufficient data" below 70 %), never 100 % of the two days worn. A block that is
still running when the export ends is reported the same way and amended as data arrives. Its start and end
are the local midnights that open its first day and close its last: by the patient's zone's rules when the
zone is known, else in the offsets of the period's first and last readings. ``first_day`` / ``last_day``
are its first and last (inclusive) local days: the HL7 CGM IG writes the period as these dates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aggregates.stats import fold, is_sorted
from aggregates.windows import day_keys, day_window_bounds

__all__ = ["CgmStats", "GMI_INTERCEPT", "GMI_SLOPE", "cgm_stats", "period_first_day", "period_keys",
           "reading_interval"]

GMI_INTERCEPT = 3.31
GMI_SLOPE = 0.02392  # per mg/dL
PERIOD_ANCHOR_DAY = 4  # 1970-01-05, a Monday: reporting periods start on Mondays
_DEFAULT_INTERVAL = 300.0  # seconds: 5-minute sensors (Dexcom G6/G7, Libre 3 1-minute data is thinned)


@dataclass(frozen=True)
class CgmStats:
    """Per reporting period (arrays aligned with ``keys``)."""

    keys: np.ndarray  # period index: local day // days
    start: np.ndarray  # epoch seconds of the local midnight that opens the period's first day
    start_offset: np.ndarray
    end: np.ndarray  # epoch seconds of the local midnight that closes the period's last day
    end_offset: np.ndarray
    count: np.ndarray
    mean: np.ndarray
    cv: np.ndarray  # percent
    gmi: np.ndarray  # percent
    band_percent: np.ndarray  # [period, band] percent of readings per band
    days_worn: np.ndarray
    active_percent: np.ndarray
    days: int = 14  # the length of a reporting period block

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def first_day(self) -> np.ndarray:
        """The local day number (days since 1970-01-01) of each period's first day."""
        return self.keys * self.days + PERIOD_ANCHOR_DAY

    @property
    def last_day(self) -> np.ndarray:
        """The local day number of each period's last day (inclusive)."""
        return self.first_day + (self.days - 1)


def period_keys(epoch: np.ndarray, offset: np.ndarray, days: int) -> np.ndarray:
    """The reporting period of each reading: blocks of ``days`` local days counted from Monday 1970-01-05."""
    return (day_keys(epoch, offset) - PERIOD_ANCHOR_DAY) // days


def period_first_day(key: int, days: int) -> int:
    """The local day number (days since 1970-01-01) on which reporting period ``key`` starts."""
    return key * days + PERIOD_ANCHOR_DAY


def reading_interval(epoch: np.ndarray) -> float:
    """The sensor's reading interval in seconds: the median gap between consecutive readings.

    Gaps over 15 minutes (sensor off) are ignored; with too few readings a 5-minute sensor is assumed.
    """
    if len(epoch) < 3:
        return _DEFAULT_INTERVAL
    gaps = np.diff(epoch if is_sorted(epoch) else np.sort(epoch))
    gaps = gaps[(gaps > 0) & (gaps <= 900)]
    return float(np.clip(np.median(gaps), 60.0, 900.0)) if len(gaps) else _DEFAULT_INTERVAL


def cgm_stats(epoch: np.ndarray, offset: np.ndarray, value: np.ndarray, edges: np.ndarray,
              days: int = 14, zone: str | None = None) -> CgmStats:
    """CGM summary statistics of every reporting period that has readings (vectorised over periods);
    ``zone`` is the patient's IANA zone (None: local days follow the readings' offsets)."""
    if len(epoch) == 0:
        f, i = np.zeros(0), np.zeros(0, dtype=np.int64)
        return CgmStats(i, f, i, f, i, i, f, f, f, np.zeros((0, len(edges) + 1)), i, f, days)
    day = day_keys(epoch, offset)
    period = (day - PERIOD_ANCHOR_DAY) // days
    if not (is_sorted(period) and is_sorted(epoch)):  # by period, then time (exports are usually in order)
        order = np.lexsort((epoch, period))
        epoch, offset, value, day, period = epoch[order], offset[order], value[order], day[order], period[order]
    value = value.astype(np.float64, copy=False)
    stats = fold(period, value, edges)
    sq = fold(period, value * value)
    n = stats.count.astype(np.float64)
    mean = stats.total / n
    variance = np.where(n > 1, (sq.total - n * mean * mean) / np.maximum(n - 1, 1), 0.0)
    sd = np.sqrt(np.maximum(variance, 0.0))
    assert stats.bands is not None
    band_percent = 100.0 * stats.bands / n[:, None]
    # distinct local days per period (a day belongs to exactly one period)
    worn = np.unique(day)
    days_worn = np.bincount(np.searchsorted(stats.keys, (worn - PERIOD_ANCHOR_DAY) // days),
                            minlength=len(stats.keys))
    first = np.searchsorted(period, stats.keys, side="left")
    last = np.searchsorted(period, stats.keys, side="right") - 1
    # the whole block: from the midnight that opens its first day to the one that closes its last day
    first_day = stats.keys * days + PERIOD_ANCHOR_DAY
    start, start_offset, end, end_offset = day_window_bounds(first_day, offset[first], first_day + (days - 1),
                                                             offset[last], zone)
    interval = reading_interval(epoch)
    active = np.minimum(100.0, 100.0 * n * interval / (end - start))
    return CgmStats(
        keys=stats.keys, start=start.astype(np.float64), start_offset=start_offset,
        end=end.astype(np.float64), end_offset=end_offset, count=stats.count, mean=mean,
        cv=np.where(mean > 0, 100.0 * sd / mean, 0.0), gmi=GMI_INTERCEPT + GMI_SLOPE * mean,
        band_percent=band_percent, days_worn=days_worn, active_percent=active, days=days,
    )
