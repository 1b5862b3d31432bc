"""Sleep per night: minutes in each stage from categorical sleep segments, without double counting.

A night runs from local noon to local noon and is named after the evening it starts (a segment starting
23:10 on 3 November or 02:00 on 4 November both belong to the night of 3 November); a segment that
crosses local noon is split between the two nights by overlap. Noon is the patient's zone's local noon
when the zone is known, else noon in the segment's own offset.

Several sources often record the same night (the Watch records stages, the iPhone "in bed", a third-party
app its own guess). For each night and each stage group (in bed; the asleep and awake stages) exactly one
source counts, chosen by this rule:

1. the highest source priority (the metric's ``source_priority`` order);
2. among equal priorities, the source with the most minutes of the group that night (asleep minutes for
   the asleep/awake group, in-bed minutes for the in-bed group);
3. then the lowest source id (a stable hash of the source name), so the choice never depends on order.

Sources are never unioned: two apps of equal priority that both watched the same night would otherwise
add up to a night nobody slept. Overlapping segments of the chosen source are merged before their minutes
are added up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from aggregates.overlap import interval_union
from aggregates.prorate import Grid, Pieces, split_intervals
from aggregates.stats import run_starts
from aggregates.windows import DAY, day_grid
from mappers.zones import zone_offsets

__all__ = ["NOON", "SleepNights", "night_grid", "night_keys", "night_pieces", "sleep_nights"]

NOON = 12 * 3600
ASLEEP = "asleep"  # the pseudo-stage of all asleep stages together (the night's total sleep)
_SOURCE_BITS = 32  # source ids are uint32: (slot, source) pairs pack into one int64


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


def night_grid(offset: np.ndarray, zone: str | None) -> Grid:
    """Nights of segments with these start offsets: local noon to local noon (by ``zone``'s rules if known)."""
    return day_grid(offset, zone, NOON)


def night_pieces(start: np.ndarray, end: np.ndarray, offset: np.ndarray, zone: str | None) -> Pieces:
    """Segments cut at local noon: one piece per night each overlaps."""
    return split_intervals(start, end, night_keys(start, offset), night_grid(offset, zone))


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


def _one_source_per_slot(slot: np.ndarray, priority: np.ndarray, source: np.ndarray, measured: np.ndarray,
                         start: np.ndarray, end: np.ndarray, slots: int) -> np.ndarray:
    """Which segments belong to the one source chosen for their slot (night × stage group), by the module's
    rule: highest priority, then most measured minutes (the union of the ``measured`` segments), then the
    lowest source id."""
    best = np.full(slots, np.iinfo(np.int64).min)
    np.maximum.at(best, slot, priority)
    candidate = np.flatnonzero(priority == best[slot])
    pair = (slot[candidate].astype(np.int64) << _SOURCE_BITS) | source[candidate].astype(np.int64)
    pairs, pair_index = np.unique(pair, return_inverse=True)
    if len(pairs) == len(np.unique(pairs >> _SOURCE_BITS)):  # one source per slot: nothing to choose
        chosen = np.zeros(len(slot), dtype=bool)
        chosen[candidate] = True
        return chosen
    measure = measured[candidate]
    minutes = _union_minutes(pair_index[measure], start[candidate][measure], end[candidate][measure], len(pairs))
    pair_slot, pair_source = pairs >> _SOURCE_BITS, pairs & ((1 << _SOURCE_BITS) - 1)
    order = np.lexsort((pair_source, -minutes, pair_slot))  # by slot; most minutes first; then lowest id
    winners = order[run_starts(pair_slot[order])]
    winner = np.full(slots, -1, dtype=np.int64)
    winner[pair_slot[winners]] = pair_source[winners]
    chosen = np.zeros(len(slot), dtype=bool)
    chosen[candidate] = source[candidate].astype(np.int64) == winner[slot[candidate]]
    return chosen


def sleep_nights(start: np.ndarray, end: np.ndarray, offset: np.ndarray, code: np.ndarray,
                 priority: np.ndarray, source: np.ndarray, stages: Sequence[str],
                 zone: str | None = None) -> SleepNights:
    """Minutes per stage per night. ``code`` indexes ``stages`` (the metric's codes; -1 = unknown, ignored);
    ``source`` is each segment's source id; ``zone`` the patient's IANA zone (None: the segments' offsets).

    Stage names starting with ``asleep`` also count towards the ``asleep`` total; ``in_bed`` forms its own
    source group; ``out_of_bed`` and unknown codes are not counted.
    """
    names = tuple(stages) + (ASLEEP,)
    asleep_codes = np.array([i for i, s in enumerate(stages) if s.startswith("asleep")], dtype=np.int64)
    counted = np.array([s != "out_of_bed" for s in stages] + [False], dtype=bool)
    in_bed = np.array([s == "in_bed" for s in stages] + [False], dtype=bool)
    keep = (code >= 0) & (end > start)
    keep[keep] &= counted[code[keep]]
    start, end, offset, code, priority, source = (start[keep], end[keep], offset[keep], code[keep], priority[keep],
                                                  source[keep])
    pieces = night_pieces(start, end, offset, zone)
    if pieces.rows is not None:
        piece_offset = pieces.of(offset)
        if zone is not None and len(pieces.moved):
            piece_offset[pieces.moved] = zone_offsets(zone, pieces.start[pieces.moved])
        offset, code, priority, source = piece_offset, pieces.of(code), pieces.of(priority), pieces.of(source)
        start, end = pieces.start, pieces.end
    keys, night_index = np.unique(pieces.keys, return_inverse=True)
    n_nights = len(keys)
    n_stages = len(names)
    is_asleep = np.isin(code, asleep_codes)
    # one source per (night, stage group): group 0 = in bed, group 1 = asleep/awake stages
    bed = in_bed[code]
    slot = night_index * 2 + np.where(bed, 0, 1)
    chosen = _one_source_per_slot(slot, priority, source, is_asleep | bed, start, end, n_nights * 2)
    start, end, offset, code, night_index, is_asleep = (start[chosen], end[chosen], offset[chosen], code[chosen],
                                                        night_index[chosen], is_asleep[chosen])
    stage_group = night_index * n_stages + code
    minutes = _union_minutes(stage_group, start, end, n_nights * n_stages).reshape(n_nights, n_stages)
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
    # the offset shown at the night's end: the zone's at that instant when known (DST may change overnight)
    end_offset = zone_offsets(zone, last) if zone is not None and n_nights else offset[last_at]
    return SleepNights(keys=keys, start=first, start_offset=offset[first_at], end=last,
                       end_offset=end_offset, stages=names, minutes=minutes, recorded=recorded)


def _argmatch(group: np.ndarray, values: np.ndarray, target: np.ndarray) -> np.ndarray:
    """For each group, the index of one element whose value equals the group's ``target``."""
    hit = np.flatnonzero(values == target[group])
    out = np.zeros(len(target), dtype=np.int64)
    out[group[hit][::-1]] = hit[::-1]  # any hit will do; all hits of a group carry the same value
    return out
