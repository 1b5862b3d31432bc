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

Live mode (the stream worker) passes the wall clock to ``flush(now)``: a window whose end plus its grace
(``AccumulatorSpec.grace``) has not passed yet is emitted ``preliminary`` and emitted again, ``final``, by the
first flush after that time (``next_close`` says when), even if no sample arrived; later data re-emits it
``amended``. ``AccumulatorSpec.keep_all`` keeps the samples of sampled metrics too (their windows are folded
again at a flush), so that ``remove`` can take a replaced sample back out, and ``evict`` drops every window
that ended before a time, with the samples only those windows needed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sized
from dataclasses import dataclass, field, replace
from typing import TypeVar

import numpy as np

from aggregates.cgm import CgmStats, cgm_stats, period_first_day, period_keys
from aggregates.cgm_profile import CgmProfile, cgm_profile
from aggregates.columns import SampleColumns
from aggregates.overlap import deduplicate_sources
from aggregates.prorate import Grid, Pieces, prorated, split_intervals, touched_keys
from aggregates.sleep import SleepNights, night_grid, night_keys, sleep_nights
from aggregates.stats import WindowStats, fold, is_sorted, merge_all, run_starts
from aggregates.windows import (
    HOUR,
    day_grid,
    day_keys,
    day_window_bounds,
    hour_grid,
    hour_keys,
    hour_window_bounds,
    local_starts,
)
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
    keep_all: bool = False  # live mode: keep sampled metrics' samples too (replacement, eviction)
    grace: Mapping[str, float] = field(default_factory=dict)  # live mode: seconds after a window's end before final


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
    _open: dict[str, np.ndarray] = field(default_factory=dict)  # live: windows emitted preliminary, not final yet
    _open_close: dict[str, np.ndarray] = field(default_factory=dict)  # live: when each open window may be final
    _now: float | None = None  # live: the wall clock of the flush in progress
    _last_offset: int = 0  # the latest sample's UTC offset (window ends without a zone)

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
            _open=dict(self._open),
            _open_close=dict(self._open_close),
        )

    @property
    def keeps_samples(self) -> bool:
        """Whether sample columns are kept (cumulative, sleep and CGM need them)."""
        s = self.spec
        return s.keep_all or s.cumulative or "night" in s.windows or "cgm" in s.windows

    @property
    def unflushed(self) -> bool:
        """Whether samples were added since the last flush."""
        return bool(self._incoming) or bool(self._dirty)

    def next_close(self) -> float | None:
        """Live mode: the earliest time a preliminary window may become final (None: no window is open)."""
        times = [float(t.min()) for t in self._open_close.values() if len(t)]
        return min(times) if times else None

    @property
    def kept_samples(self) -> int:
        """How many sample rows are held (kept columns and those not yet absorbed)."""
        return sum(len(c) for c in self._columns) + self._incoming_samples

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
        self._last_offset = int(cols.offset[-1])
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
            if self.spec.keep_all:  # folded again from the kept samples at the flush
                continue
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

    def _status(self, window: str, keys: np.ndarray, computed: WindowStats | SleepNights | CgmStats
                ) -> np.ndarray:
        before = self._emitted.get(window, np.zeros(0, dtype=np.int64))
        emitted = np.isin(keys, before)
        if self._now is None:
            self._emitted[window] = np.union1d(before, keys)
            return np.where(emitted, "amended", "final")
        closes = self._closes(window, computed) + float(self.spec.grace.get(window, 0.0))
        early = closes > self._now
        status = np.where(early, "preliminary", np.where(emitted, "amended", "final"))
        done = keys[~early]
        self._emitted[window] = np.union1d(before, done)
        open_keys = self._open.get(window, np.zeros(0, dtype=np.int64))
        open_close = self._open_close.get(window, np.zeros(0))
        still = ~np.isin(open_keys, keys)
        merged_keys = np.r_[open_keys[still], keys[early]]
        order = np.argsort(merged_keys, kind="stable")
        self._open[window] = merged_keys[order]
        self._open_close[window] = np.r_[open_close[still], closes[early]][order]
        return status

    def _closes(self, window: str, stats: WindowStats | SleepNights | CgmStats) -> np.ndarray:
        """Epoch seconds at which each window of ``stats`` ends (local time, by the zone's rules if known)."""
        zone = self.spec.zone
        if isinstance(stats, WindowStats):
            return window_bounds(window, stats, zone)[2]
        if isinstance(stats, CgmStats):
            return stats.end.astype(np.float64)
        offsets = np.full(len(stats.keys), self._last_offset, dtype=np.int32)  # nights: the next local noon
        return local_starts(zone, stats.keys + 1, offsets, 12 * HOUR)

    def _mark_due(self) -> None:
        """Live mode: put the open windows whose close time has passed back among the changed ones."""
        assert self._now is not None
        for window, closes in self._open_close.items():
            due = closes <= self._now
            if due.any():
                self._dirty.setdefault(window, []).append(self._open[window][due])

    def flush(self, now: float | None = None) -> Flushed:
        """Statistics of every window changed since the last flush (then forget which ones changed).

        ``now`` (epoch seconds; live mode) decides preliminary windows and finalises the due ones.
        """
        self._absorb()
        self._now = now
        if now is not None:
            self._mark_due()
        try:
            return self._flush()
        finally:
            self._now = None

    def _flush(self) -> Flushed:
        out = Flushed(zone=self.spec.zone)
        samples = self._kept_samples() if self.keeps_samples else None
        spec = self.spec
        if spec.cumulative and samples is not None and ("hour" in self._dirty or "day" in self._dirty):
            self._fold_cumulative(samples)
        elif spec.keep_all and samples is not None and ("hour" in self._dirty or "day" in self._dirty):
            self._fold_sampled(samples)
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
        setattr(out, f"{window}_status", self._status(window, chosen.keys, chosen))

    def _fold_sampled(self, samples: SampleColumns) -> None:
        """Live mode: fold a sampled metric's hour and day windows again from its kept samples."""
        valued = samples.valued()
        edges = np.asarray(self.spec.edges) if self.spec.edges else None
        for window in ("hour", "day"):
            if window in self.spec.windows:
                keys = self._keys(window, valued.start, valued.offset)
                order = np.argsort(keys, kind="stable")
                self._folds[window] = fold(keys[order], valued.value[order], edges, tag=valued.offset[order])

    def remove(self, start: np.ndarray, end: np.ndarray, source: np.ndarray) -> int:
        """Live mode: take out the kept samples of these slots (start, end, source id), e.g. before the slot's
        newer value is added; their windows count as changed. Returns how many rows went."""
        if not len(start) or not self.keeps_samples:
            return 0
        self._absorb()
        samples = self._kept_samples()
        if not len(samples):
            return 0
        wanted = set(zip(start.tolist(), end.tolist(), source.tolist(), strict=True))
        gone = np.isin(samples.start, start)  # candidates by start, then the whole slot
        rows = np.flatnonzero(gone)
        gone[rows] = [slot in wanted for slot in zip(samples.start[rows].tolist(), samples.end[rows].tolist(),
                                                     samples.source[rows].tolist(), strict=True)]
        if not gone.any():
            return 0
        removed = samples.take(gone)
        self._columns = [samples.take(~gone)]
        self._mark_windows(removed)
        return int(gone.sum())

    def _mark_windows(self, cols: SampleColumns) -> None:
        """Count the windows these samples lie in as changed."""
        windows = self.spec.windows
        for window in ("hour", "day"):
            if window in windows:
                self._mark(window, touched_keys(cols.start, cols.end, self._keys(window, cols.start, cols.offset),
                                                self._grid(window, cols.offset)))
        if "night" in windows:
            self._mark("night", touched_keys(cols.start, cols.end, night_keys(cols.start, cols.offset),
                                             night_grid(cols.offset, self.spec.zone)))
        if "cgm" in windows:
            valued = cols.valued()
            self._mark("cgm", period_keys(valued.start, valued.offset, self.spec.cgm_days))

    def evict(self, before: float) -> float:
        """Live mode: forget every window that ends at or before the window boundary at or before ``before``,
        and the samples only they needed; returns that boundary (samples starting earlier are late from now on).

        The boundary is the start of the coarsest window holding ``before`` (a local midnight for days, the
        period start for CGM, local noon for nights): every window kind has a boundary there, so no window is
        cut in two. Call it right after a flush.
        """
        self._absorb()
        spec = self.spec
        at = np.array([before])
        offset = np.array([self._last_offset], dtype=np.int32)
        if spec.zone is not None:  # the zone's offset at ``before``: the latest sample's may differ (DST), and a day
            offset = zone_offsets(spec.zone, at).astype(np.int32)  # keyed in it may start after ``before``
        bounds = [before]
        if "hour" in spec.windows:
            bounds.append(float(hour_window_bounds(hour_keys(at, offset), offset)[0][0]))
        if "day" in spec.windows or "cgm" in spec.windows:
            day = day_keys(at, offset)
            if "cgm" in spec.windows:
                first = period_first_day(int(period_keys(at, offset, spec.cgm_days)[0]), spec.cgm_days)
                day = np.array([first])
            bounds.append(float(local_starts(spec.zone, day, offset)[0]))
        if "night" in spec.windows:
            bounds.append(float(local_starts(spec.zone, night_keys(at, offset), offset, 12 * HOUR)[0]))
        boundary = min(bounds)
        for window, stats in list(self._folds.items()):
            ends = window_bounds(window, stats, spec.zone)[2]
            self._folds[window] = _take(stats, np.flatnonzero(ends > boundary))
        if self._columns:
            samples = self._kept_samples()
            alive = np.maximum(samples.end, samples.start) > boundary
            if not alive.all():
                self._columns = [samples.take(alive)] if alive.any() else []
        for window in list(self._emitted):
            self._emitted[window] = self._emitted[window][self._emitted[window] >= self._first_key(window, boundary)]
        for window in list(self._open):
            keep = self._open[window] >= self._first_key(window, boundary)
            self._open[window], self._open_close[window] = self._open[window][keep], self._open_close[window][keep]
        return boundary

    def _first_key(self, window: str, boundary: float) -> int:
        """The key of the window that starts at ``boundary`` (a boundary of every kind the metric has)."""
        at, offset = np.array([boundary + 1.0]), np.array([self._last_offset], dtype=np.int32)
        if self.spec.zone is not None:
            offset = zone_offsets(self.spec.zone, at).astype(np.int32)
        if window == "hour":
            return int(hour_keys(at, offset)[0])
        if window == "day":
            return int(day_keys(at, offset)[0])
        if window == "night":
            return int(night_keys(at, offset)[0])
        return int(period_keys(at, offset, self.spec.cgm_days)[0])

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
