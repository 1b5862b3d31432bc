"""Window state of one (patient, metric): add sample columns as they arrive, flush the windows that changed.

Incoming batches are gathered until ``ABSORB_SAMPLES`` samples are waiting (or a flush), then handled as
one array: numpy's per-call cost is paid once per ~16k samples, not once per batch. Sampled metrics
(heart rate) are folded into mergeable per-window statistics, so their state is a few numbers per
window. Cumulative metrics (steps, energy), sleep and CGM keep their sample columns (compacted), because
source de-duplication, sleep stage unions and CGM periods need the samples themselves.

A cumulative sample that crosses window boundaries is split across the hours and days it overlaps, its
value prorated by time (``aggregates.prorate``); source de-duplication then runs on those pieces, so each
piece keeps the share of *its own* time that no higher-priority source covers (the same totals as
de-duplicating whole samples, put in the hours where the uncovered time lies). The window count of a
cumulative summary counts a sample once in every window it contributes to. Day windows follow
``AccumulatorSpec.zone`` (local midnight by its rules) when it is known.

``flush`` returns each window that received samples since the previous flush, with status ``final`` the
first time and ``amended`` when late data changed a window that was already emitted (same window, same
id downstream: never a second resource).
"""

from __future__ import annotations

from collections.abc import Sized
from dataclasses import dataclass, field, replace
from typing import TypeVar

import numpy as np

from aggregates.cgm import CgmStats, cgm_stats, period_keys
from aggregates.cgm_profile import CgmProfile, cgm_profile
from aggregates.columns import SampleColumns
from aggregates.overlap import deduplicate_sources
from aggregates.prorate import Grid, Pieces, prorated, split_intervals, touched_keys
from aggregates.sleep import SleepNights, night_grid, night_keys, sleep_nights
from aggregates.stats import WindowStats, fold, is_sorted, merge_all, run_starts
from aggregates.windows import day_grid, day_keys, day_window_bounds, hour_grid, hour_keys, hour_window_bounds
from mappers.zones import zone_offsets

__all__ = ["AccumulatorSpec", "Flushed", "SummaryAccumulator", "WINDOWS"]

WINDOWS = ("hour", "day", "night", "cgm")
FOLD_CHUNK = 65_536  # cumulative samples de-duplicated and folded at once at a flush (bounds its temporaries)
ABSORB_SAMPLES = 16_384  # samples gathered (unfolded, as they came) before they are keyed and folded at once
T = TypeVar("T", WindowStats, SleepNights, CgmStats)


@dataclass(frozen=True)
class AccumulatorSpec:
    """What to summarise for one metric."""

    windows: frozenset[str]  # a subset of WINDOWS
    cumulative: bool = False  # sum over the window after source de-duplication (steps, energy)
    edges: tuple[float, ...] = ()  # band edges for time in range
    stages: tuple[str, ...] = ()  # categorical codes, for sleep nights
    cgm_days: int = 14
    zone: str | None = None  # the patient's IANA zone: its rules define local days; None = the samples' offsets


@dataclass
class Flushed:
    """The windows one flush emits; each part holds only changed windows, with a status per window."""

    hour: WindowStats | None = None
    hour_status: np.ndarray | None = None
    day: WindowStats | None = None
    day_status: np.ndarray | None = None
    night: SleepNights | None = None
    night_status: np.ndarray | None = None
    cgm: CgmStats | None = None
    cgm_status: np.ndarray | None = None
    zone: str | None = None  # the zone whose rules define the day windows (``AccumulatorSpec.zone``)
    cgm_profiles: list[CgmProfile] | None = None  # per CGM period (aligned with ``cgm``): readings by time of day
    cgm_last: np.ndarray | None = None  # per CGM period: epoch seconds of its last reading (the report's issue time)

    def counts(self) -> dict[str, int]:
        """How many windows of each kind this flush holds (kinds with none are left out)."""
        parts: dict[str, Sized | None] = {"hour": self.hour, "day": self.day, "night": self.night, "cgm": self.cgm}
        return {window: len(part) for window, part in parts.items() if part is not None and len(part)}

    def __len__(self) -> int:
        return sum(self.counts().values())

    def chunks(self, max_windows: int) -> list[Flushed]:
        """The same windows cut into parts of at most ``max_windows`` windows of one kind each, in order.

        Consumers turn a part into FHIR and let it go before the next, so memory follows the part size,
        not the number of windows in a flush.
        """
        parts: list[Flushed] = []
        for window in WINDOWS:
            stats = getattr(self, window)
            status = getattr(self, f"{window}_status")
            if stats is None or status is None:
                continue
            for first in range(0, len(stats), max_windows):
                rows = np.arange(first, min(first + max_windows, len(stats)))
                part = Flushed(zone=self.zone)
                setattr(part, window, _take(stats, rows))
                setattr(part, f"{window}_status", status[rows])
                if window == "cgm" and self.cgm_profiles is not None and self.cgm_last is not None:
                    part.cgm_profiles = [self.cgm_profiles[row] for row in rows.tolist()]
                    part.cgm_last = self.cgm_last[rows]
                parts.append(part)
        return parts


def _take(obj: T, idx: np.ndarray) -> T:
    """The rows ``idx`` of a dataclass of per-window arrays (other fields, and None, are kept as they are)."""
    values = {}
    for name in obj.__dataclass_fields__:
        v = getattr(obj, name)
        values[name] = v[idx] if isinstance(v, np.ndarray) else v
    return type(obj)(**values)


@dataclass
class SummaryAccumulator:
    """Incremental window statistics of one (patient, metric); pure (no I/O), picklable for snapshots."""

    spec: AccumulatorSpec
    _folds: dict[str, WindowStats] = field(default_factory=dict)
    _pending: dict[str, list[WindowStats]] = field(default_factory=dict)  # folds of absorbed chunks, not yet merged
    _columns: list[SampleColumns] = field(default_factory=list)
    _incoming: list[SampleColumns] = field(default_factory=list)  # added, not yet folded or marked
    _incoming_samples: int = 0
    _dirty: dict[str, list[np.ndarray]] = field(default_factory=dict)
    _emitted: dict[str, np.ndarray] = field(default_factory=dict)

    def snapshot(self) -> SummaryAccumulator:
        """An independent copy for a recovery snapshot, in time and memory proportional to the number of
        arrays, not samples: containers are copied and arrays shared, since no update writes into an
        existing array (each one builds new arrays). A deep copy would duplicate every kept sample column."""
        return replace(
            self,
            _folds=dict(self._folds),
            _pending={window: list(parts) for window, parts in self._pending.items()},
            _columns=list(self._columns),
            _incoming=list(self._incoming),
            _dirty={window: list(parts) for window, parts in self._dirty.items()},
            _emitted=dict(self._emitted),
        )

    @property
    def keeps_samples(self) -> bool:
        """Whether sample columns are kept (cumulative, sleep and CGM need them)."""
        s = self.spec
        return s.cumulative or "night" in s.windows or "cgm" in s.windows

    def add(self, cols: SampleColumns) -> None:
        """Take a batch of samples (any order; late data welcome)."""
        if len(cols) == 0:
            return
        self._incoming.append(cols)
        self._incoming_samples += len(cols)
        if self._incoming_samples >= ABSORB_SAMPLES:
            self._absorb()

    def _absorb(self) -> None:
        """Fold and mark the gathered batches as one set of columns."""
        if not self._incoming:
            return
        cols = SampleColumns.concat(self._incoming)
        self._incoming, self._incoming_samples = [], 0
        windows = self.spec.windows
        valued = cols.valued()
        if "hour" in windows or "day" in windows:
            self._add_windows(valued)
        if "night" in windows:  # a segment across local noon touches two nights
            self._mark("night", touched_keys(cols.start, cols.end, night_keys(cols.start, cols.offset),
                                             night_grid(cols.offset, self.spec.zone)))
        if "cgm" in windows:
            self._mark("cgm", period_keys(valued.start, valued.offset, self.spec.cgm_days))
        if self.keeps_samples:
            self._columns.append(cols.compact())

    def _add_windows(self, cols: SampleColumns) -> None:
        for window in ("hour", "day"):
            if window not in self.spec.windows:
                continue
            if self.spec.cumulative:  # folded at flush, after de-duplication; a long sample touches many windows
                self._mark(window, touched_keys(cols.start, cols.end, self._keys(window, cols.start, cols.offset),
                                                self._grid(window, cols.offset)))
                continue
            keys = self._keys(window, cols.start, cols.offset)
            self._mark(window, keys)
            edges = np.asarray(self.spec.edges) if self.spec.edges else None
            self._pending.setdefault(window, []).append(fold(keys, cols.value, edges, tag=cols.offset))

    @staticmethod
    def _keys(window: str, start: np.ndarray, offset: np.ndarray) -> np.ndarray:
        return hour_keys(start, offset) if window == "hour" else day_keys(start, offset)

    def _grid(self, window: str, offset: np.ndarray) -> Grid:
        return hour_grid(offset) if window == "hour" else day_grid(offset, self.spec.zone)

    def _pieces(self, window: str, cols: SampleColumns) -> Pieces:
        """The samples cut at the boundaries of the hour or day windows they cross."""
        return split_intervals(cols.start, cols.end, self._keys(window, cols.start, cols.offset),
                               self._grid(window, cols.offset))

    def _piece_offsets(self, pieces: Pieces, offset: np.ndarray) -> np.ndarray:
        """The UTC offset at each piece's start: its sample's, or the zone's where a piece starts later."""
        at = pieces.of(offset)
        if self.spec.zone is not None and len(pieces.moved):  # pieces moved only when rows exist: ``at`` is a copy
            at[pieces.moved] = zone_offsets(self.spec.zone, pieces.start[pieces.moved])
        return at

    def _mark(self, window: str, keys: np.ndarray) -> None:
        """Remember the windows ``keys`` touched (one key per run of equal keys: time-ordered data has few)."""
        if len(keys) > 1:
            keys = keys[run_starts(keys)]
        self._dirty.setdefault(window, []).append(keys)

    def _take_dirty(self, window: str) -> np.ndarray:
        parts = self._dirty.pop(window, [])
        return np.unique(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)

    def _status(self, window: str, keys: np.ndarray) -> np.ndarray:
        before = self._emitted.get(window, np.zeros(0, dtype=np.int64))
        status = np.where(np.isin(keys, before), "amended", "final")
        self._emitted[window] = np.union1d(before, keys)
        return status

    def flush(self) -> Flushed:
        """Statistics of every window changed since the last flush (then forget which ones changed)."""
        self._absorb()
        out = Flushed(zone=self.spec.zone)
        samples = self._kept_samples() if self.keeps_samples else None
        spec = self.spec
        if spec.cumulative and samples is not None and ("hour" in self._dirty or "day" in self._dirty):
            self._fold_cumulative(samples)
        for window in ("hour", "day"):
            pending = self._pending.pop(window, [])
            if pending:
                old = self._folds.get(window)
                self._folds[window] = merge_all(([old] if old is not None else []) + pending)
            stats = self._folds.get(window)
            if stats is not None:
                self._changed(out, window, stats)
        if samples is not None and "night" in spec.windows and "night" in self._dirty:
            nights = sleep_nights(samples.start, samples.end, samples.offset, samples.code, samples.priority,
                                  samples.source, spec.stages, spec.zone)
            self._changed(out, "night", nights)
        if samples is not None and "cgm" in spec.windows and "cgm" in self._dirty:
            valued = samples.valued()
            periods = cgm_stats(valued.start, valued.offset, valued.value, np.asarray(spec.edges), spec.cgm_days,
                                spec.zone)
            self._changed(out, "cgm", periods)
            if out.cgm is not None:
                out.cgm_profiles, out.cgm_last = _period_profiles(valued, out.cgm.keys, spec.cgm_days)
        return out

    def _kept_samples(self) -> SampleColumns:
        """The kept sample columns as one set (and kept that way: the chunks are released)."""
        if len(self._columns) <= 1:
            return self._columns[0] if self._columns else SampleColumns.empty()
        samples = SampleColumns.concat(self._columns)
        self._columns = [samples]
        return samples

    def _changed(self, out: Flushed, window: str, computed: T) -> None:
        """Put the windows of ``computed`` (sorted, unique keys) that changed since the last flush into ``out``."""
        dirty = self._take_dirty(window)
        dirty = dirty[np.isin(dirty, computed.keys)]
        if not len(dirty):
            return
        chosen = _take(computed, np.searchsorted(computed.keys, dirty))
        setattr(out, window, chosen)
        setattr(out, f"{window}_status", self._status(window, chosen.keys))

    def _fold_cumulative(self, samples: SampleColumns) -> None:
        """Re-fold all cumulative windows: de-duplication depends on every overlapping source's samples.

        The samples (in time order) are handled ``FOLD_CHUNK`` at a time, each chunk with the earlier and later
        samples that overlap it as context for de-duplication, and the chunk folds merged: the flush's
        temporaries stay bounded however many samples a metric keeps (~75 bytes a sample at once, before).
        """
        valued = samples.valued()
        if not is_sorted(valued.start):
            valued = valued.take(np.argsort(valued.start, kind="stable"))
        windows = self.spec.windows
        finest = "hour" if "hour" in windows else "day"
        parts: dict[str, list[WindowStats]] = {w: [] for w in ("hour", "day") if w in windows}
        n = len(valued)
        reach = np.maximum.accumulate(valued.end) if n else valued.end  # the latest end so far
        for first in range(0, n, FOLD_CHUNK):
            stop = min(first + FOLD_CHUNK, n)
            # context: earlier samples still open when the chunk starts, later ones that start before it ends (or
            # when it ends: an instant there lies in them)
            low = min(int(np.searchsorted(reach, valued.start[first], side="right")), first)
            high = max(int(np.searchsorted(valued.start, reach[stop - 1], side="right")), stop)
            folded = self._fold_part(valued.take(slice(low, high)), first - low, stop - low, finest)  # type: ignore[arg-type]
            for window, stats in folded.items():
                parts[window].append(stats)
        for window, found in parts.items():
            self._folds[window] = merge_all(found)

    def _fold_part(self, cols: SampleColumns, first: int, stop: int, finest: str) -> dict[str, WindowStats]:
        """Fold the samples ``first:stop`` of ``cols`` (the others are context for de-duplication only).

        Cut the samples at the boundaries of the finest window wanted (hours, else days) and prorate their
        values by time, de-duplicate the pieces (each keeps the share of its own time that no higher priority
        covers), then fold them per hour, and per day by the local day each hour piece lies in (local
        midnight is an hour boundary: one split and one de-duplication serve both). A window's count is the
        number of samples contributing to it: a piece counts when it still contributes (or its sample's value
        is 0), and a sample counts once in a day however many of its hours the day holds.
        """
        pieces = self._pieces(finest, cols)
        shares = prorated(pieces, cols.start, cols.end, cols.value)
        values = deduplicate_sources(pieces.start, pieces.end, shares, pieces.of(cols.priority))
        rows = pieces.rows if pieces.rows is not None else np.arange(len(cols))
        counted = ((values > 0) | (pieces.of(cols.value) == 0)) & (rows >= first) & (rows < stop)
        offsets = self._piece_offsets(pieces, cols.offset)
        keys, starts, values, offsets, rows = (pieces.keys[counted], pieces.start[counted], values[counted],
                                               offsets[counted], rows[counted])
        out = {finest: fold(keys, values, tag=offsets)}
        if finest == "hour" and "day" in self.spec.windows:
            days = day_keys(starts, offsets)  # the zone's offset at each piece's start: its local day
            stats = fold(days, values, tag=offsets)
            if len(rows):  # count each sample once per day, not once per hour piece
                first_in_day = np.r_[True, (rows[1:] != rows[:-1]) | (days[1:] != days[:-1])]
                counts = np.bincount(np.searchsorted(stats.keys, days[first_in_day]), minlength=len(stats))
                stats = replace(stats, count=counts.astype(np.int64))
            out["day"] = stats
        return out


def _period_profiles(readings: SampleColumns, keys: np.ndarray, days: int) -> tuple[list[CgmProfile], np.ndarray]:
    """The time-of-day profile and the last reading's instant of each CGM reporting period in ``keys``."""
    period = period_keys(readings.start, readings.offset, days)
    order = np.argsort(period, kind="stable")
    sorted_period = period[order]
    profiles, last = [], np.zeros(len(keys))
    for i, key in enumerate(keys.tolist()):
        rows = order[np.searchsorted(sorted_period, key):np.searchsorted(sorted_period, key, side="right")]
        start = readings.start[rows]
        profiles.append(cgm_profile(start, readings.offset[rows], readings.value[rows]))
        last[i] = start.max() if len(start) else 0.0
    return profiles, last


def window_bounds(window: str, stats: WindowStats, zone: str | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(start, start offset, end, end offset) in epoch seconds of hour or day windows.

    An hour is a real hour in one offset. A day runs from local midnight to the next local midnight:
    by ``zone``'s rules when it is known, else in the offsets of its first and last samples; 23 or 25
    hours on DST days either way.
    """
    assert stats.tag is not None and stats.tag_last is not None
    if window == "hour":
        start, end = hour_window_bounds(stats.keys, stats.tag)
        return start, stats.tag, end, stats.tag
    return day_window_bounds(stats.keys, stats.tag, stats.keys, stats.tag_last, zone)
