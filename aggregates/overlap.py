"""Source de-duplication for cumulative metrics: where sources overlap, the higher-priority one counts.

An iPhone and an Apple Watch both count the steps of the same walk. Summing both inflates the daily total,
so (as the Health app does) each sample of a lower-priority source keeps only the share of its interval
that no higher-priority source covers, its value prorated by that share. Vectorised: one interval union
and a few ``searchsorted`` calls per priority level.
"""

from __future__ import annotations

import numpy as np

__all__ = ["covered_length", "deduplicate_sources", "interval_union"]


def interval_union(start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The union of intervals [start, end) as sorted, disjoint (starts, ends)."""
    if len(start) == 0:
        return start.astype(np.float64), end.astype(np.float64)
    order = np.argsort(start, kind="stable")
    s, e = start[order].astype(np.float64), end[order].astype(np.float64)
    reach = np.maximum.accumulate(e)
    new_group = np.r_[True, s[1:] > reach[:-1]]
    group_starts = np.flatnonzero(new_group)
    return s[group_starts], np.maximum.reduceat(e, group_starts)


def covered_length(a: np.ndarray, b: np.ndarray, u_start: np.ndarray, u_end: np.ndarray) -> np.ndarray:
    """Length of [a, b) covered by the disjoint sorted intervals (u_start, u_end), element-wise."""
    if len(u_start) == 0:
        return np.zeros(len(a))
    lengths = u_end - u_start
    before = np.r_[0.0, np.cumsum(lengths)]  # covered length before interval i starts

    def upto(t: np.ndarray) -> np.ndarray:
        i = np.searchsorted(u_start, t, side="right") - 1
        j = np.maximum(i, 0)  # index of the union interval at or before t (valid where i >= 0)
        inside = np.clip(t - u_start[j], 0.0, lengths[j])
        return np.where(i >= 0, before[j] + inside, 0.0)

    return upto(b) - upto(a)


def deduplicate_sources(start: np.ndarray, end: np.ndarray, value: np.ndarray, priority: np.ndarray
                        ) -> np.ndarray:
    """Values after prorating each sample by the share of its interval not covered by higher priorities.

    Samples of the highest priority present keep their value; an instant (zero-length) sample of a lower
    priority is dropped when it falls inside a higher-priority interval. Returns new values (same order).
    """
    out = value.astype(np.float64, copy=True)
    levels = np.unique(priority)[::-1]  # highest first
    higher = np.zeros(len(start), dtype=bool)
    for level in levels:
        mine = priority == level
        if higher.any():
            u_start, u_end = interval_union(start[higher], end[higher])
            a, b = start[mine].astype(np.float64), end[mine].astype(np.float64)
            length = b - a
            covered = covered_length(a, b, u_start, u_end)
            share = np.where(length > 0, 1.0 - covered / np.where(length > 0, length, 1.0), 1.0)
            instant = length == 0
            if instant.any():
                i = np.searchsorted(u_start, a[instant], side="right") - 1
                inside = (i >= 0) & (a[instant] < u_end[np.maximum(i, 0)])
                share[instant] = np.where(inside, 0.0, 1.0)
            out[mine] = out[mine] * np.clip(share, 0.0, 1.0)
        higher |= mine
    return out
