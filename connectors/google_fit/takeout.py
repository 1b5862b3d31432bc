"""Read a Google Takeout "Fit" export (zip or folder) into sample batches, rejections and a final report.

What is read, recognised by content and structure, never by the (localized, truncated) names:
- ``All Data/*.json``: one file per data stream; the ``Data Source`` inside names the stream (file names are cut
  at 46 characters and suffixed ``(1)``). One designated stream per feed (:func:`~.points.choose_streams`), parsed
  point by point without loading the file.
- ``All Sessions/*.json`` (a ``fitnessActivity`` body): one workout per exercise session.
- Daily activity metrics (``YYYY-MM-DD.csv`` files of 15-minute rows and the daily summary CSV; 2018's
  ``Daily Aggregations/Daily Summaries.csv`` too): only for feeds whose data type has no All Data file in the
  export, and per day either the 15-minute rows (when that day's file exists) or the summary row, never both.
- ``Activities/*.tcx`` are counted, not read (the sessions carry the workouts).

Delivery: at-least-once, like the HealthKit import: a rerun reads everything again and gives identical samples.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import logging
import re
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

import numpy as np

from connectors.google_fit.points import (
    ORIGIN,
    Feed,
    FitPointParser,
    GoogleFitTable,
    StreamChoice,
    choose_streams,
    google_fit_table,
    stream_data_type,
)
from connectors.healthkit.export_file import ExportLimits
from mappers.sample import Rejection, Sample, SampleBatch, SourceInfo, SourceReport, epoch_times
from mappers.tables import metrics
from mappers.zones import local_day_start
from wearfhir.errors import DataError, TruncatedInputError, UnsafeInputError, UnsupportedInputError

__all__ = ["CSV_SOURCE", "SESSION_SOURCE", "TakeoutFiles", "looks_like_takeout", "read_takeout", "scan_takeout"]

log = logging.getLogger(__name__)
SNIFF_BYTES = 4096
CHUNK_BYTES = 1 << 20
BATCH_SAMPLES = 5000
MAX_JSON_BYTES = 4 * 1024**3  # one stream file; real ones are kB to tens of MB
SESSION_SOURCE = "Google Fit sessions"
CSV_SOURCE = "Google Fit daily activity metrics"
_DATE_NAME = re.compile(r"(\d{4}-\d{2}-\d{2})\.csv\Z")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}\Z")
_CLOCK = re.compile(r"\d{2}:\d{2}:\d{2}(?:\.\d+)?[+-]\d{2}:\d{2}\Z")
_DATA_SOURCE = re.compile(rb'"Data Source"\s*:\s*"((?:[^"\\]|\\.)*)"')
_NAME_OFFSET = re.compile(r"T\d{2}_\d{2}_\d{2}(?:\.\d+)?([+-])(\d{2})_(\d{2})_")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)s\Z")


@dataclass
class TakeoutFiles:
    """The Fit files found in a Takeout, by role (paths inside the zip or folder, sorted)."""

    streams: dict[str, list[str]]  # stream id -> All Data files holding it
    sizes: dict[str, int]  # stream id -> bytes
    sessions: list[str]
    day_files: dict[str, list[tuple[date, str]]]  # daily-metrics folder -> its YYYY-MM-DD.csv files
    summaries: dict[str, str]  # daily-metrics folder -> its summary CSV
    tcx: int
    unreadable: list[str]

    def empty(self) -> bool:
        """No Fit content at all."""
        return not (self.streams or self.sessions or self.day_files)


class _Tree:
    """A Takeout as a folder or a zip: safe listing and bounded reads of its members."""

    def __init__(self, path: Path, limits: ExportLimits) -> None:
        self.path = path
        self.limits = limits
        self._zip: zipfile.ZipFile | None = None
        self.sizes: dict[str, int] = {}
        if path.is_dir():
            for file in path.rglob("*"):
                if file.is_file() and not file.is_symlink():
                    self.sizes[file.relative_to(path).as_posix()] = file.stat().st_size
        elif zipfile.is_zipfile(path):
            try:
                self._zip = zipfile.ZipFile(path)
            except (zipfile.BadZipFile, OSError) as exc:
                raise DataError(f"{path.name}: the zip archive is damaged ({exc}); download it again.") from None
            for info in self._zip.infolist():
                if _unsafe_name(info.filename):
                    self._zip.close()
                    raise UnsafeInputError(f"{path.name}: member {info.filename!r} has an unsafe path (absolute or "
                                           "'..'); refusing this archive. Download the Takeout again.")
                if not info.is_dir():
                    self.sizes[info.filename] = info.file_size
        elif path.exists():
            raise UnsupportedInputError(f"{path.name} is neither a folder nor a zip archive: pass the Google Takeout "
                                        "zip (or the folder it unpacks to).")
        else:
            raise DataError(f"{path}: no such file or folder. Pass the Google Takeout zip or its folder.")

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()

    def check(self, name: str) -> None:
        """Refuse a member whose declared size or compression ratio no real export has."""
        if self._zip is None:
            return
        info = self._zip.getinfo(name)
        ratio = info.file_size / max(info.compress_size, 1)
        if ratio > self.limits.max_ratio:
            raise UnsafeInputError(f"{self.path.name}: member {name!r} expands {ratio:.0f}x (limit "
                                   f"{self.limits.max_ratio:.0f}x); refusing a probable compression bomb.")
        if info.file_size > self.limits.max_uncompressed:
            raise UnsafeInputError(f"{self.path.name}: member {name!r} declares {info.file_size} bytes, over the "
                                   f"{self.limits.max_uncompressed}-byte limit.")

    @contextmanager
    def open(self, name: str) -> Iterator[BinaryIO]:
        self.check(name)
        if self._zip is None:
            with (self.path / name).open("rb") as fh:
                yield fh
            return
        with self._zip.open(name) as member:
            yield _Guarded(member, name, self.sizes[name])  # type: ignore[arg-type,misc]

    def head(self, name: str, size: int = SNIFF_BYTES) -> bytes:
        with self.open(name) as fh:
            return fh.read(size)


class _Guarded:
    """A zip member stream: zlib/CRC failures become TruncatedInputError, and it never yields more than declared."""

    def __init__(self, member: BinaryIO, name: str, size: int) -> None:
        self._member, self._name, self._size, self._read = member, name, size, 0

    def read(self, size: int = -1) -> bytes:
        try:
            data = self._member.read(size)
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise TruncatedInputError(
                f"{self._name}: the archive is damaged after {self._read} bytes ({exc})") from None
        self._read += len(data)
        if self._read > self._size:
            raise UnsafeInputError(f"{self._name}: member is larger than it declares")
        return data


def _unsafe_name(name: str) -> bool:
    if "\\" in name or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return True
    return ".." in PurePosixPath(name).parts


def scan_takeout(tree: _Tree) -> TakeoutFiles:
    """Classify every member by its content: stream files, sessions, daily-metrics CSVs (any UI language)."""
    found = TakeoutFiles({}, {}, [], {}, {}, 0, [])
    other_csv: dict[str, list[str]] = {}
    for name in sorted(tree.sizes):
        lower = name.lower()
        folder = name.rpartition("/")[0]
        if lower.endswith(".tcx"):
            found.tcx += 1
        elif lower.endswith(".json"):
            head = tree.head(name)
            match = _DATA_SOURCE.search(head)
            if match is not None:
                try:
                    stream = json.loads(b'"' + match[1] + b'"')
                except ValueError:
                    found.unreadable.append(name)
                    continue
                found.streams.setdefault(stream, []).append(name)
                found.sizes[stream] = found.sizes.get(stream, 0) + tree.sizes[name]
            elif b'"Data Points"' in head:
                found.unreadable.append(name)  # a stream file whose Data Source is not at its start
            elif b'"fitnessActivity"' in head:
                found.sessions.append(name)
        elif lower.endswith(".csv"):
            day = _DATE_NAME.search(name.rpartition("/")[2])
            if day is not None and _is_quarter_hour_csv(tree.head(name)):
                found.day_files.setdefault(folder, []).append((date.fromisoformat(day[1]), name))
            else:
                other_csv.setdefault(folder, []).append(name)
    for folder in found.day_files:
        for name in other_csv.get(folder, []):
            if _is_daily_summary_csv(tree.head(name)):
                found.summaries[folder] = name
                break
    # a Takeout with only the summary CSV (the user exported a subset): a date-rowed CSV beside nothing else
    for folder, names in other_csv.items():
        if folder not in found.day_files and "fit" in folder.lower().split("/"):
            for name in names:
                if _is_daily_summary_csv(tree.head(name)):
                    found.summaries[folder] = name
                    break
    return found


def _csv_rows(head: bytes, limit: int = 3) -> list[list[str]]:
    text = head.decode("utf-8-sig", errors="replace")
    lines = text.splitlines()[:limit]
    return list(csv.reader(lines))


def _is_quarter_hour_csv(head: bytes) -> bool:
    rows = _csv_rows(head)
    return len(rows) >= 2 and len(rows[1]) >= 2 and all(_CLOCK.match(c) for c in rows[1][:2])


def _is_daily_summary_csv(head: bytes) -> bool:
    rows = _csv_rows(head)
    return len(rows) >= 2 and bool(rows[1]) and _DATE.match(rows[1][0]) is not None


def looks_like_takeout(path: Path) -> bool:
    """Whether ``path`` (a zip or folder) holds Google Fit Takeout content; never raises for a bad file."""
    try:
        tree = _Tree(path, ExportLimits())
    except (DataError, OSError):
        return False
    try:
        return not scan_takeout(tree).empty()
    except (DataError, OSError):
        return False
    finally:
        tree.close()


def _iter_points(stream: BinaryIO, chunk_bytes: int = CHUNK_BYTES) -> Iterator[dict[str, Any]]:
    """The objects of the ``"Data Points"`` array of a Takeout stream file, one at a time (memory stays flat)."""
    decoder = json.JSONDecoder()
    utf8 = codecs.getincrementaldecoder("utf-8-sig")()
    buf, pos, eof, in_array = "", 0, False, False

    def more() -> bool:
        nonlocal buf, pos, eof
        data = stream.read(chunk_bytes)
        eof = not data
        buf = buf[pos:] + utf8.decode(data, final=eof)
        pos = 0
        return not eof

    while not in_array:
        at = buf.find('"Data Points"', pos)
        if at != -1:
            bracket = re.compile(r'\s*:\s*\[').match(buf, at + len('"Data Points"'))
            if bracket is not None:
                pos, in_array = bracket.end(), True
                continue
            pos = at
        elif len(buf) > 64:
            pos = len(buf) - 64
        if not more():
            if in_array:
                break
            raise TruncatedInputError("no \"Data Points\" array")
    while True:
        while pos < len(buf) and buf[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(buf):
            if not more():
                raise TruncatedInputError("the Data Points array is not closed")
            continue
        if buf[pos] == "]":
            return
        try:
            item, end = decoder.raw_decode(buf, pos)
        except json.JSONDecodeError:
            if not more():
                raise TruncatedInputError("a data point is cut short or malformed") from None
            continue
        pos = end
        if isinstance(item, dict):
            yield item


class _Reader:
    """One Takeout of one patient: yields batches per feed stream, sessions and CSV fallbacks, then the report."""

    def __init__(self, path: Path, patient: str, zone: str | None, limits: ExportLimits) -> None:
        self.path = path
        self.patient = patient
        self.table: GoogleFitTable = google_fit_table()
        self.metrics = metrics()
        self.tree = _Tree(path, limits)
        self.files = scan_takeout(self.tree)
        if self.files.empty():
            self.tree.close()
            raise UnsupportedInputError(f"{path.name} holds no Google Fit data (no All Data, All Sessions or daily "
                                        "activity metrics files). Export 'Fit' from takeout.google.com.")
        self.written_offset = self._written_offset()
        self.parser = FitPointParser(patient, self.table, self.metrics, zone, self.written_offset or 0)
        self.bytes_read = 0
        self.unmapped: Counter[str] = Counter()
        self.unknown: Counter[str] = Counter()
        self.other: Counter[str] = Counter()
        self.choices: dict[str, StreamChoice] = {}

    def _written_offset(self) -> int | None:
        """The UTC offset the export wrote most (daily CSV rows, session file names): the clock when no zone is
        given. None when the export writes no offset."""
        seen: Counter[int] = Counter()
        for files in self.files.day_files.values():
            for _, name in files[:5]:
                rows = _csv_rows(self.tree.head(name), 2)
                if len(rows) == 2 and rows[1]:
                    seen[_offset_seconds(rows[1][0][-6:])] += 1
        for name in self.files.sessions:
            match = _NAME_OFFSET.search(name.rpartition("/")[2])
            if match is not None:
                seen[_offset_seconds(f"{match[1]}{match[2]}:{match[3]}")] += 1
        return seen.most_common(1)[0][0] if seen else None

    def run(self) -> Iterator[SampleBatch | Rejection | SourceReport]:
        try:
            yield from self._streams()
            yield from self._sessions()
            yield from self._daily_csv()
        finally:
            self.tree.close()
        yield self._report()

    # ---- All Data ---------------------------------------------------------------------------------------------
    def _streams(self) -> Iterator[SampleBatch | Rejection]:
        files = self.files
        self.choices = choose_streams(files.streams, self.table, files.sizes)
        chosen: dict[str, list[Feed]] = {}
        for c in self.choices.values():
            chosen.setdefault(c.stream, []).append(self.table.feeds[c.feed])
        for choice in self.choices.values():
            log.info("google fit takeout: feed %s reads stream %s (%s)", choice.feed, choice.stream, choice.rule)
        for stream, names in sorted(files.streams.items()):
            data_type = stream_data_type(stream)
            feeds = chosen.get(stream, [])
            if not feeds:
                if self.table.feeds_of(data_type):
                    self.other["streams not designated"] += len(names)
                elif data_type in self.table.known_unmapped:
                    self.unmapped[data_type] += len(names)
                else:
                    self.unknown[data_type] += len(names)
                continue
            for name in names:
                yield from self._stream_file(name, stream, feeds)

    def _stream_file(self, name: str, stream: str, feeds: list[Feed]) -> Iterator[SampleBatch | Rejection]:
        pending: dict[str, list[Sample]] = {}
        rejections: list[Rejection] = []
        short = name.rpartition("/")[2]
        try:
            with self.tree.open(name) as fh:
                for i, point in enumerate(_iter_points(fh)):
                    for feed in feeds:
                        item = self.parser.parse(point, feed, stream, f"{short} point {i}")
                        if isinstance(item, Sample):
                            pending.setdefault(item.metric, []).append(item)
                        elif item is not None:
                            rejections.append(item)
                    if sum(len(v) for v in pending.values()) >= BATCH_SAMPLES:
                        yield from self._flush(pending)
                        yield from rejections
                        pending, rejections = {}, []
        except (TruncatedInputError, UnicodeDecodeError, OSError) as exc:
            rejections.append(Rejection(ORIGIN, "unreadable stream file", short, stream_data_type(stream),
                                        type(exc).__name__ if not isinstance(exc, DataError) else str(exc)))
        self.bytes_read += self.tree.sizes[name]
        yield from self._flush(pending)
        yield from rejections

    def _flush(self, pending: dict[str, list[Sample]]) -> Iterator[SampleBatch]:
        for metric, samples in pending.items():
            if samples:
                yield SampleBatch(self.patient, metric, samples, self.parser.zone)

    # ---- All Sessions -----------------------------------------------------------------------------------------
    def _sessions(self) -> Iterator[SampleBatch | Rejection]:
        workouts: list[Sample] = []
        for name in self.files.sessions:
            self.other["session files"] += 1
            short = name.rpartition("/")[2]
            try:
                with self.tree.open(name) as fh:
                    body = json.loads(fh.read())
                self.bytes_read += self.tree.sizes[name]
            except (ValueError, DataError, OSError):
                yield Rejection(ORIGIN, "unreadable session file", short, "session")
                continue
            item = self._session(body, short)
            if isinstance(item, Rejection):
                yield item
            elif item is not None:
                workouts.append(item)
        yield from self._flush({self.table.workout_metric: workouts})

    def _session(self, body: Any, where: str) -> Sample | Rejection | None:
        activity = str(body.get("fitnessActivity") or "unknown") if isinstance(body, dict) else ""
        if not activity:
            return Rejection(ORIGIN, "not a session", where, "session")
        if activity in self.table.not_workouts:
            self.other[f"sessions not workouts ({activity})"] += 1
            return None
        try:
            start = datetime.fromisoformat(body["startTime"])
            end = datetime.fromisoformat(body["endTime"])
            first, last, _ = epoch_times(start, end)
        except (KeyError, TypeError, ValueError):
            return Rejection(ORIGIN, "unparsable session time", where, "session", "startTime/endTime must be RFC 3339")
        if last < first:
            return Rejection(ORIGIN, "end before start", where, "session")
        found: dict[str, float] = {}
        duration = _DURATION.match(str(body.get("duration") or ""))
        seconds = float(duration[1]) if duration else last - first
        found["workout_duration"] = float(f"{seconds / 60:.12g}")
        for stat in body.get("aggregate") or []:
            key = self.table.workout_statistics.get(str(stat.get("metricName")))
            number = stat.get("floatValue", stat.get("intValue"))
            if key is None or not isinstance(number, int | float) or isinstance(number, bool) or number <= 0:
                continue
            if key == "distance":
                key = self.table.workout_distance_metric(activity)
            found[key] = number
        order = self.metrics[self.table.workout_metric].components
        components = tuple((k, found[k]) for k in order if k in found)
        return Sample(
            self.patient, self.table.workout_metric, None, activity.replace(".", "_").lower(), None, start, end,
            SourceInfo(SESSION_SOURCE, None, None), ORIGIN, "session", first, last, self.parser.offset_at(first),
            None, components, self.parser.zone, False, activity,
        )

    # ---- Daily activity metrics CSV ---------------------------------------------------------------------------
    def _daily_csv(self) -> Iterator[SampleBatch | Rejection]:
        present = {stream_data_type(s) for s in self.files.streams}
        folders = sorted(set(self.files.day_files) | set(self.files.summaries))
        for folder in folders:
            days = dict(self.files.day_files.get(folder, []))
            self.other["daily CSV files"] += len(days) + (folder in self.files.summaries)
            day_samples: dict[str, list[Sample]] = {}
            for day, name in sorted(days.items()):
                yield from self._csv_file(name, day, present, day_samples, days)
            summary = self.files.summaries.get(folder)
            if summary is not None:
                yield from self._csv_file(summary, None, present, day_samples, days)
            yield from self._flush(day_samples)

    def _csv_file(self, name: str, day: date | None, present: set[str], out: dict[str, list[Sample]],
                  days_with_rows: dict[date, str]) -> Iterator[Rejection]:
        short = name.rpartition("/")[2]
        try:
            with self.tree.open(name) as fh:
                text = fh.read().decode("utf-8-sig")  # a day or a summary: kB, at most a few MB for decades
            rows = list(csv.reader(io.StringIO(text, newline="")))
        except (UnicodeDecodeError, DataError, OSError, csv.Error):
            yield Rejection(ORIGIN, "unreadable daily CSV", short, None)
            return
        self.bytes_read += self.tree.sizes[name]
        if not rows:
            return
        columns: dict[int, Feed] = {}
        for index, header in enumerate(rows[0]):
            key = self.table.csv_columns.get(header.strip().casefold())
            feed = self.table.feeds.get(self.table.csv_fallback.get(key or "", ""))
            if key is None or index < (1 if day is None else 2):
                continue
            if feed is None:
                self.unmapped[f"csv:{key}"] += 1
            elif feed.data_type in present:
                self.other[f"CSV column {key} skipped: stream files exist"] += 1
            else:
                columns[index] = feed
        for line, row in enumerate(rows[1:], start=2):
            for index, feed in columns.items():
                cell = row[index].strip() if index < len(row) else ""
                if not cell:
                    continue
                item = self._csv_sample(row, cell, feed, day, days_with_rows, f"{short} line {line}")
                if isinstance(item, Rejection):
                    yield item
                elif item is not None:
                    out.setdefault(item.metric, []).append(item)

    def _csv_sample(self, row: list[str], cell: str, feed: Feed, day: date | None, days_with_rows: dict[date, str],
                    where: str) -> Sample | Rejection | None:
        try:
            if day is not None:  # a 15-minute row: times with their offset, the date from the file name
                start = datetime.fromisoformat(f"{day.isoformat()}T{row[0].strip()}")
                end = datetime.fromisoformat(f"{day.isoformat()}T{row[1].strip()}")
                if end <= start:
                    end = datetime.fromisoformat(f"{(day + timedelta(days=1)).isoformat()}T{row[1].strip()}")
            else:  # a day row: only for days without their own 15-minute file
                row_day = date.fromisoformat(row[0].strip())
                if row_day in days_with_rows:
                    return None
                start, end = self._local_day(row_day)
            number = float(cell)
        except (ValueError, IndexError):
            return Rejection(ORIGIN, "unparsable daily CSV row", where, feed.data_type)
        first, last, _ = epoch_times(start, end)
        value: float = int(number) if number.is_integer() and "." not in cell else number
        metric = self.metrics[feed.metric]
        if not metric.plausible(value):
            return Rejection(ORIGIN, "value out of plausible range", where, feed.data_type, metric.display)
        self.parser.records_by_type[f"{feed.data_type} (daily CSV)"] += 1
        return Sample(
            self.patient, feed.metric, value, None, metric.unit, start, end, SourceInfo(CSV_SOURCE, None, None),
            ORIGIN, feed.data_type, first, last, self.parser.offset_at(first), None, (), self.parser.zone, False,
            None,
        )

    def _local_day(self, day: date) -> tuple[datetime, datetime]:
        number = day.toordinal() - date(1970, 1, 1).toordinal()
        offset = np.asarray(self.written_offset or 0)
        starts = local_day_start(self.parser.zone, np.asarray([number, number + 1]), offset)
        return datetime.fromtimestamp(float(starts[0]), UTC), datetime.fromtimestamp(float(starts[1]), UTC)

    def _report(self) -> SourceReport:
        if self.files.tcx:
            self.other["TCX activity files (not read)"] += self.files.tcx
        if self.files.unreadable:
            self.other["unrecognised stream files"] += len(self.files.unreadable)
        for data_type, count in self.parser.blob_points.items():
            self.other[f"points with blob fields skipped ({data_type})"] += count
        for data_type, count in self.parser.skipped_values.items():
            self.other[f"points with unmapped codes ({data_type})"] += count
        offset = self.written_offset
        return SourceReport(
            origin=ORIGIN, description=f"{self.path.name} (Google Takeout, Fit)", patient=self.patient,
            bytes_read=self.bytes_read, records_by_type=dict(self.parser.records_by_type),
            unknown_types=dict(self.unknown), unmapped_types=dict(self.unmapped), other_elements=dict(self.other),
            control_chars_removed=0, merged_members=0, stopped=None, timezone=self.parser.zone,
            timezone_origin="option" if self.parser.zone else "offset",
            written_offset=None if offset is None else _offset_text(offset),
        )


def _offset_seconds(text: str) -> int:
    sign = -1 if text.startswith("-") else 1
    hours, _, minutes = text.lstrip("+-").partition(":")
    return sign * (int(hours) * 3600 + int(minutes or 0) * 60)


def _offset_text(seconds: int) -> str:
    sign = "-" if seconds < 0 else "+"
    seconds = abs(seconds)
    return f"{sign}{seconds // 3600:02d}{seconds % 3600 // 60:02d}"


def read_takeout(path: Path, patient: str, timezone: str | None = None,
                 limits: ExportLimits = ExportLimits()) -> Iterator[SampleBatch | Rejection | SourceReport]:  # noqa: B008
    """Read a Google Takeout Fit export (the zip, or the folder it unpacks to) for one patient.

    Yields :class:`~mappers.sample.SampleBatch` items (per feed stream, sessions, CSV fallback),
    :class:`~mappers.sample.Rejection` items, and one final :class:`~mappers.sample.SourceReport`. ``timezone`` is the
    patient's IANA zone (the local clock of every sample; Fit points carry no offset); without it the offset the
    export writes most (daily CSV rows, session file names) is used and the report says so. Raises
    UnsupportedInputError for a zip or folder without Fit data, UnsafeInputError for a refused archive.
    """
    reader = _Reader(path, patient, timezone, limits)
    yield from reader.run()
