"""Vectorised per-window statistics: count, sum, min, max, mean and band counts (time in range).

The fold result (:class:`WindowStats`) is mergeable: folding two halves and merging equals folding the
whole, so windows can be built incrementally as batches arrive and re-emitted when late data lands.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["WindowStats", "band_index", "fold", "merge"]


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
    if np.all(keys[1:] >= keys[:-1]):  # batches from a source are usually in time order already
        k, v, t = keys, values.astype(np.float64, copy=False), tag
    else:
        order = np.argsort(keys, kind="stable")
        k, v = keys[order], values[order].astype(np.float64, copy=False)
        t = tag[order] if tag is not None else None
    starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
    count = np.diff(np.r_[starts, len(k)])
    bands = None
    if edges is not None:
        nbands = len(edges) + 1
        window = np.repeat(np.arange(len(starts)), count)
        flat = np.bincount(window * nbands + band_index(v, edges), minlength=len(starts) * nbands)
        bands = flat.reshape(len(starts), nbands).astype(np.int64)
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
    if len(a) == 0:
        return b
    if len(b) == 0:
        return a
    keys = np.concatenate((a.keys, b.keys))
    unique, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    n = len(unique)
    count = np.zeros(n, dtype=np.int64)
    total = np.zeros(n, dtype=np.float64)
    minimum = np.full(n, np.inf)
    maximum = np.full(n, -np.inf)
    tag = tag_last = None
    if a.tag is not None and b.tag is not None:
        tag = np.concatenate((a.tag, b.tag))[first]  # first occurrence: the earlier fold's tag wins
    if a.tag_last is not None and b.tag_last is not None:
        both = np.concatenate((a.tag_last, b.tag_last))
        _, first_from_end = np.unique(keys[::-1], return_index=True)
        tag_last = both[len(keys) - 1 - first_from_end]  # last occurrence: the later fold's tag wins
    np.add.at(count, inverse, np.concatenate((a.count, b.count)))
    np.add.at(total, inverse, np.concatenate((a.total, b.total)))
    np.minimum.at(minimum, inverse, np.concatenate((a.minimum, b.minimum)))
    np.maximum.at(maximum, inverse, np.concatenate((a.maximum, b.maximum)))
    bands = None
    if a.bands is not None and b.bands is not None:
        bands = np.zeros((n, a.bands.shape[1]), dtype=np.int64)
        np.add.at(bands, inverse, np.concatenate((a.bands, b.bands)))
    return WindowStats(unique, count, total, minimum, maximum, bands, tag, tag_last)
