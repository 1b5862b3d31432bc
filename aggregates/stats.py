"""Vectorised per-window statistics: count, sum, min, max, mean and band counts (time in range).

The fold result (:class:`WindowStats`) is mergeable: folding two halves and merging equals folding the
whole, so windows can be built incrementally as batches arrive and re-emitted when late data lands.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["WindowStats", "band_index", "fold", "is_sorted", "merge", "merge_all", "run_starts"]


@dataclass(frozen=True)
class WindowStats:
    """Statistics of samples grouped by window key; arrays aligned with the sorted, unique ``keys``."""

    keys: np.ndarray  # int64, sorted, unique
    count: np.ndarray  # int64
    total: np.ndarray  # float64
    minimum: np.ndarray  # float64
    maximum: np.ndarray  # float64
    bands: np.ndarray | None = None  # int64 [window, band] counts, when bands were given
    tag: np.ndarray | None = None  # a per-sample attribute (e.g. UTC offset) of each window's first sample
    tag_last: np.ndarray | None = None  # the same attribute of each window's last sample

    @property
    def mean(self) -> np.ndarray:
        """Mean per window."""
        return self.total / self.count

    def __len__(self) -> int:
        return len(self.keys)


def is_sorted(values: np.ndarray) -> bool:
    """Whether ``values`` never decrease (data from a source usually arrives in time order: no sort needed)."""
    return not np.any(values[1:] < values[:-1])


def run_starts(keys: np.ndarray) -> np.ndarray:
    """Indexes where a run of equal keys begins (every window's first row, for sorted keys)."""
    return np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if len(keys) else np.zeros(0, dtype=np.intp)


def band_index(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Band of each value for band lower edges ``edges`` (band i holds ``edges[i-1] <= v < edges[i]``).

    With edges ``[54, 70, 181, 251]`` the bands are <54, 54–69, 70–180, 181–250, >250 (mg/dL, integers).
    """
    which = np.zeros(len(values), dtype=np.int64)
    for edge in edges:  # a few vector compares beat a binary search for a handful of edges
        which += values >= edge
    return which


def fold(keys: np.ndarray, values: np.ndarray, edges: np.ndarray | None = None,
         tag: np.ndarray | None = None) -> WindowStats:
    """Statistics per distinct key (a sort only if needed, then ``reduceat``); no Python loop over windows.

    ``edges`` adds band counts (time in range); ``tag`` carries one attribute of each window's first and
    last sample (in key order, then input order: pass time-ordered samples for "first" to mean earliest).
    """
    if len(keys) == 0:
        empty_i = np.zeros(0, dtype=np.int64)
        empty_f = np.zeros(0, dtype=np.float64)
        bands = np.zeros((0, len(edges) + 1), dtype=np.int64) if edges is not None else None
        tags = empty_i if tag is not None else None
        return WindowStats(empty_i, empty_i, empty_f, empty_f, empty_f, bands, tags, tags)
    if is_sorted(keys):
        k, v, t = keys, values.astype(np.float64, copy=False), tag
    else:
        order = np.argsort(keys, kind="stable")
        k, v = keys[order], values[order].astype(np.float64, copy=False)
        t = tag[order] if tag is not None else None
    starts = run_starts(k)
    count = np.diff(np.r_[starts, len(k)])
    bands = None
    if edges is not None:
        # per window, how many values reach each edge (one reduceat per edge); band i = reach(i-1) - reach(i)
        reach = np.empty((len(starts), len(edges) + 2), dtype=np.int64)
        reach[:, 0] = count
        for i, edge in enumerate(edges):
            reach[:, i + 1] = np.add.reduceat(v >= edge, starts, dtype=np.int64)
        reach[:, -1] = 0
        bands = reach[:, :-1] - reach[:, 1:]
    return WindowStats(
        keys=k[starts].astype(np.int64),
        count=count.astype(np.int64),
        total=np.add.reduceat(v, starts),
        minimum=np.minimum.reduceat(v, starts),
        maximum=np.maximum.reduceat(v, starts),
        bands=bands,
        tag=t[starts] if t is not None else None,
        tag_last=t[np.r_[starts[1:], len(k)] - 1] if t is not None else None,
    )


def merge(a: WindowStats, b: WindowStats) -> WindowStats:
    """Combine two folds (of disjoint sample sets) into the fold of their union."""
    return merge_all([a, b])


def merge_all(parts: list[WindowStats]) -> WindowStats:
    """Combine many folds (of disjoint sample sets, in arrival order) into the fold of their union.

    One stable sort and a ``reduceat`` per statistic, however many parts: window state can be kept as a
    list of per-batch folds and combined once, when it is read.
    """
    parts = [p for p in parts if len(p)]
    if len(parts) <= 1:
        return parts[0] if parts else fold(np.zeros(0, dtype=np.int64), np.zeros(0))
    keys = np.concatenate([p.keys for p in parts])
    order = np.argsort(keys, kind="stable")  # stable: earlier parts first within a window
    k = keys[order]
    starts = run_starts(k)
    ends = np.r_[starts[1:], len(k)] - 1

    def combined(name: str) -> np.ndarray:
        return np.concatenate([getattr(p, name) for p in parts])[order]

    bands = tag = tag_last = None
    if all(p.bands is not None for p in parts):
        bands = np.add.reduceat(combined("bands"), starts, axis=0)
    if all(p.tag is not None for p in parts):
        tag = combined("tag")[starts]  # the earliest part's tag wins
    if all(p.tag_last is not None for p in parts):
        tag_last = combined("tag_last")[ends]  # the latest part's last tag wins
    return WindowStats(
        keys=k[starts],
        count=np.add.reduceat(combined("count"), starts),
        total=np.add.reduceat(combined("total"), starts),
        minimum=np.minimum.reduceat(combined("minimum"), starts),
        maximum=np.maximum.reduceat(combined("maximum"), starts),
        bands=bands,
        tag=tag,
        tag_last=tag_last,
    )
