"""Sleep per night: minutes in each stage from categorical sleep segments, without double counting.

A night runs from local noon to local noon and is named after the evening it starts (a segment starting
23:10 on 3 November or 02:00 on 4 November both belong to the night of 3 November). Several sources
often record the same night (the Watch records stages, the iPhone "in bed"): for each night and each
stage group (in bed; asleep and awake stages), only the highest-priority source that recorded that group
counts, and overlapping segments of that source are merged before their minutes are added up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from aggregates.overlap import interval_union
from aggregates.windows import DAY

__all__ = ["NOON", "SleepNights", "night_keys", "sleep_nights"]

NOON = 12 * 3600
ASLEEP = "asleep"  # the pseudo-stage of all asleep stages together (the night's total sleep)


@dataclass(frozen=True)
class SleepNights:
    """Per night (aligned with ``keys``): the span and the minutes per stage."""

    keys: np.ndarray  # local day number of the evening the night starts
    start: np.ndarray  # epoch seconds of the first counted segment's start
    start_offset: np.ndarray
    end: np.ndarray  # epoch seconds of the last counted segment's end
    end_offset: np.ndarray
    stages: tuple[str, ...]  # column names of ``minutes``: the metric's stage codes, then "asleep"
    minutes: np.ndarray  # float64 [night, stage]; 0 where the stage was not recorded
    recorded: np.ndarray  # bool [night, stage]: whether any segment of the stage counted

    def __len__(self) -> int:
        return len(self.keys)


def night_keys(start: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """The night of each segment (by its start in local time): the local day of ``start - 12 h``."""
    return np.floor((start + offset - NOON) / DAY).astype(np.int64)


def _union_minutes(group: np.ndarray, start: np.ndarray, end: np.ndarray, groups: int) -> np.ndarray:
    """Minutes covered by the union of intervals within each group (groups never merge with each other)."""
    if len(group) == 0:
        return np.zeros(groups)
    base = start.min()
    span = float(max(end.max(), start.max()) - base) + 1.0  # groups are laid out ``span`` apart: no overlap
    shifted_start = (start - base) + group * span
    shifted_end = (end - base) + group * span
    u_start, u_end = interval_union(shifted_start, shifted_end)
    owner = np.floor(u_start / span).astype(np.int64)
    return np.bincount(owner, weights=u_end - u_start, minlength=groups) / 60.0


def sleep_nights(start: np.ndarray, end: np.ndarray, offset: np.ndarray, code: np.ndarray,
                 priority: np.ndarray, stages: Sequence[str]) -> SleepNights:
    """Minutes per stage per night. ``code`` indexes ``stages`` (the metric's codes; -1 = unknown, ignored).

    Stage names starting with ``asleep`` also count towards the ``asleep`` total; ``in_bed`` forms its own
    source group; ``out_of_bed`` and unknown codes are not counted.
    """
    names = tuple(stages) + (ASLEEP,)
    asleep_codes = np.array([i for i, s in enumerate(stages) if s.startswith("asleep")], dtype=np.int64)
    counted = np.array([s != "out_of_bed" for s in stages] + [False], dtype=bool)
    in_bed = np.array([s == "in_bed" for s in stages] + [False], dtype=bool)
    keep = (code >= 0) & (end > start)
    keep[keep] &= counted[code[keep]]
    start, end, offset, code, priority = start[keep], end[keep], offset[keep], code[keep], priority[keep]
    night = night_keys(start, offset)
    keys, night_index = np.unique(night, return_inverse=True)
    n_nights = len(keys)
    n_stages = len(names)
    # source choice per (night, stage group): group 0 = in bed, group 1 = asleep/awake stages
    source_group = np.where(in_bed[code], 0, 1)
    slot = night_index * 2 + source_group
    best = np.full(n_nights * 2, np.iinfo(np.int64).min)
    np.maximum.at(best, slot, priority)
    chosen = priority == best[slot]
    start, end, offset, code, night_index = (start[chosen], end[chosen], offset[chosen], code[chosen],
                                             night_index[chosen])
    stage_group = night_index * n_stages + code
    minutes = _union_minutes(stage_group, start, end, n_nights * n_stages).reshape(n_nights, n_stages)
    is_asleep = np.isin(code, asleep_codes)
    asleep = _union_minutes(night_index[is_asleep], start[is_asleep], end[is_asleep], n_nights)
    minutes[:, -1] = asleep
    recorded = np.zeros((n_nights, n_stages), dtype=bool)
    recorded[night_index, code] = True
    recorded[night_index[is_asleep], -1] = True
    # the span of each night: earliest start and latest end of the counted segments
    first = np.full(n_nights, np.inf)
    last = np.full(n_nights, -np.inf)
    np.minimum.at(first, night_index, start)
    np.maximum.at(last, night_index, end)
    first_at = _argmatch(night_index, start, first)
    last_at = _argmatch(night_index, end, last)
    return SleepNights(keys=keys, start=first, start_offset=offset[first_at], end=last,
                       end_offset=offset[last_at], stages=names, minutes=minutes, recorded=recorded)


def _argmatch(group: np.ndarray, values: np.ndarray, target: np.ndarray) -> np.ndarray:
    """For each group, the index of one element whose value equals the group's ``target``."""
    hit = np.flatnonzero(values == target[group])
    out = np.zeros(len(target), dtype=np.int64)
    out[group[hit][::-1]] = hit[::-1]  # any hit will do; all hits of a group carry the same value
    return out
