"""Intervals cut at the window boundaries they cross (hours, local days, nights), vectorised.

A sample that lies inside one window stays one piece (the common case, checked first for every sample at
once); one that crosses boundaries becomes one piece per window it overlaps, clipped to that window, so
cumulative values can be prorated and sleep minutes counted per window by overlap. No Python loop runs
per sample: the crossing samples are expanded with ``np.repeat`` over the number of windows each spans.
An instant (start == end) is never split or moved: its window is its start's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["Grid", "Pieces", "prorated", "split_intervals", "touched_keys"]

# (window keys, sample rows or None for "aligned with the samples") -> epoch seconds of each window's start
WindowStart = Callable[[np.ndarray, np.ndarray | None], np.ndarray]
# (epoch seconds, sample rows) -> window key of each instant, on the clock of those samples
KeyOf = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True, slots=True)
class Grid:
    """The windows of one kind for one set of samples: where window ``k`` starts, and which window holds an
    instant. Both take the sample rows the keys or instants belong to (windows may follow each sample's
    own offset). ``start(k + 1)`` is where window ``k`` ends: windows tile time without gaps."""

    start: WindowStart
    key_of: KeyOf


@dataclass(frozen=True, slots=True)
class Pieces:
    """The pieces of a set of intervals, one per (interval, window it overlaps), in interval order.

    ``rows`` is None when no interval crossed a boundary (each piece is its interval, in the same order).
    ``moved`` indexes the pieces that do not begin at their interval's start (every piece but the first of
    a split interval): their clock may differ from the interval's start (a DST change between them).
    """

    rows: np.ndarray | None
    keys: np.ndarray
    start: np.ndarray
    end: np.ndarray
    moved: np.ndarray

    def __len__(self) -> int:
        return len(self.keys)

    def of(self, column: np.ndarray) -> np.ndarray:
        """``column`` (one value per interval) repeated for each piece of its interval."""
        return column if self.rows is None else column[self.rows]


def _crossing(start: np.ndarray, end: np.ndarray, keys: np.ndarray, grid: Grid
              ) -> tuple[np.ndarray, np.ndarray] | None:
    """(indexes, last window key) of the intervals that end after their first window; None if there are none."""
    if len(start) == 0:
        return None
    crossing = (end > grid.start(keys + 1, None)) & (end > start)  # an instant never does
    if not crossing.any():
        return None
    cross = np.flatnonzero(crossing)
    first = keys[cross]
    last = np.maximum(grid.key_of(end[cross], cross), first + 1)
    last = last - (grid.start(last, cross) >= end[cross])  # an end on a boundary does not open the next window
    return cross, np.maximum(last, first + 1)


def touched_keys(start: np.ndarray, end: np.ndarray, keys: np.ndarray, grid: Grid) -> np.ndarray:
    """The window keys the intervals overlap (with repeats): each start window, plus the later windows of
    intervals that cross boundaries (only those are expanded)."""
    found = _crossing(start, end, keys, grid)
    if found is None:
        return keys
    cross, last = found
    span = last - keys[cross]  # later windows per crossing interval
    later = np.repeat(keys[cross] + 1 - _group_offsets(span), span) + np.arange(int(span.sum()))
    return np.concatenate([keys, later])


def _group_offsets(span: np.ndarray) -> np.ndarray:
    """Where each group of ``span`` consecutive items begins in their concatenation."""
    return np.cumsum(span) - span


def split_intervals(start: np.ndarray, end: np.ndarray, keys: np.ndarray, grid: Grid) -> Pieces:
    """Cut intervals [start, end) at the window boundaries of ``grid``; ``keys`` is each interval's start window.

    The pieces of an interval always tile it exactly (boundaries are clipped into it), so prorated values add
    up to the interval's value even where ``keys`` and ``grid`` disagree by a window; pieces of zero length
    are left out.
    """
    found = _crossing(start, end, keys, grid)
    if found is None:
        return Pieces(None, keys, start, end, np.zeros(0, dtype=np.intp))
    cross, last = found
    n = len(start)
    span = np.ones(n, dtype=np.int64)
    cross_span = last - keys[cross] + 1
    span[cross] = cross_span
    rows = np.repeat(np.arange(n), span)
    first_piece = _group_offsets(span)
    # the pieces of crossing intervals only: their positions, intervals and place within their interval
    m = int(cross_span.sum())
    within = np.arange(m) - np.repeat(_group_offsets(cross_span), cross_span)
    split = np.repeat(first_piece[cross], cross_span) + within
    split_rows = np.repeat(cross, cross_span)
    split_keys = keys[split_rows] + within
    piece_keys = keys[rows]
    piece_keys[split] = split_keys
    lo, hi = start[split_rows], end[split_rows]
    piece_start, piece_end = start[rows], end[rows]  # fancy indexing: new arrays, safe to write
    inner = within > 0
    piece_start[split[inner]] = np.clip(grid.start(split_keys[inner], split_rows[inner]), lo[inner], hi[inner])
    piece_end[split[:-1][inner[1:]]] = piece_start[split[1:][inner[1:]]]  # each piece ends where the next begins
    moved = split[inner]
    empty = piece_end[split] <= piece_start[split]
    if empty.any():
        keep = np.ones(len(rows), dtype=bool)
        keep[split[empty]] = False
        index = np.flatnonzero(keep)
        moved = np.searchsorted(index, moved[keep[moved]])
        rows, piece_keys, piece_start, piece_end = rows[keep], piece_keys[keep], piece_start[keep], piece_end[keep]
    return Pieces(rows, piece_keys, piece_start, piece_end, moved)


def prorated(pieces: Pieces, start: np.ndarray, end: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Each piece's share of its interval's value, in proportion to the time it covers.

    A piece that is its whole interval (or an instant) keeps the value exactly.
    """
    if pieces.rows is None:
        return value
    share = pieces.of(value).astype(np.float64, copy=True)
    length = pieces.of(end) - pieces.of(start)
    split = length > pieces.end - pieces.start
    share[split] *= (pieces.end[split] - pieces.start[split]) / length[split]
    return share
