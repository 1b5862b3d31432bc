"""Aggregation kernel benchmark: numpy fold (sort + reduceat) vs a plain Python per-window loop, one run.

Usage: ``python bench/aggregate_bench.py --samples 1000000``. Both compute count/sum/min/max and CGM band
counts per local hour window over the same heart-rate-like data; results are checked to agree.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aggregates.stats import fold  # noqa: E402
from aggregates.windows import HOUR, hour_keys  # noqa: E402

EDGES = np.array([54, 70, 181, 251])
T = TypeVar("T")


def python_loop(epoch: list[float], offset: list[int], value: list[float]) -> dict[int, list[float]]:
    """The straightforward version: a dict of windows, one Python step per sample."""
    windows: dict[int, list[float]] = {}
    for e, o, v in zip(epoch, offset, value, strict=True):
        key = (int(e) + o % HOUR) // HOUR
        w = windows.get(key)
        if w is None:
            w = windows[key] = [0, 0.0, v, v, 0, 0, 0, 0, 0]
        w[0] += 1
        w[1] += v
        if v < w[2]:
            w[2] = v
        if v > w[3]:
            w[3] = v
        band = 0 if v < 54 else 1 if v < 70 else 2 if v < 181 else 3 if v < 251 else 4
        w[4 + band] += 1
    return windows


def best_of(runs: int, work: Callable[[], T]) -> tuple[T, float]:
    """The result and the best wall time of ``runs`` runs (first-touch page faults are not the kernel)."""
    best = float("inf")
    result = work()
    for _ in range(runs):
        t0 = time.perf_counter()
        result = work()
        best = min(best, time.perf_counter() - t0)
    return result, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5, help="runs of each kernel; the best is kept")
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    epoch = np.sort(rng.uniform(1.7e9, 1.7e9 + 90 * 86400, args.samples))
    offset = np.where(epoch < 1.7e9 + 45 * 86400, -4 * HOUR, -5 * HOUR).astype(np.int64)
    value = np.clip(rng.normal(130, 45, args.samples), 40, 400).round()
    stats, numpy_s = best_of(args.repeat, lambda: fold(hour_keys(epoch, offset), value, EDGES))
    e_list, o_list, v_list = epoch.tolist(), offset.tolist(), value.tolist()
    loop, loop_s = best_of(args.repeat, lambda: python_loop(e_list, o_list, v_list))
    assert len(loop) == len(stats)
    for i, key in enumerate(stats.keys.tolist()):
        w = loop[key]
        assert w[0] == stats.count[i] and w[2] == stats.minimum[i] and w[3] == stats.maximum[i]
        assert w[4:] == stats.bands[i].tolist() and abs(w[1] - stats.total[i]) < 1e-6 * abs(w[1]) + 1e-6
    print("| kernel | samples | windows | seconds | samples/s |\n|---|---|---|---|---|")
    print(f"| numpy fold | {args.samples:,} | {len(stats):,} | {numpy_s:.3f} | {args.samples / numpy_s:,.0f} |")
    print(f"| Python loop | {args.samples:,} | {len(loop):,} | {loop_s:.3f} | {args.samples / loop_s:,.0f} |")
    print(f"\nnumpy / loop speed: {loop_s / numpy_s:.1f}x")


if __name__ == "__main__":
    main()
