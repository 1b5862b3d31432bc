"""Incremental, hardened parser of HealthKit ``export.xml``: bytes in, top-level elements out.

Built on expat (the fastest streaming parser here, no tree is built) with four guards:

* the DOCTYPE is cut out before parsing (iOS 16 exports ship a broken DTD, and a DTD is where external
  entities and entity-expansion bombs live); line numbers are kept by leaving its newlines in place;
* stray control characters (U+000B and friends, illegal in XML 1.0) are removed and counted;
* a syntax error does not end the run: the error is reported with its line, the parser skips to the next
  top-level element (or to ``</HealthData>``) and carries on with a fresh expat parser, so the rest of the
  file still lands. Resync is a loop, never recursion, and keeps only a bounded tail of the input however
  many malformed records follow each other (iOS 8.3 wrote whole runs of them);
* an input that ends before ``</HealthData>`` is reported as truncated, with the line it stopped at; a
  malformed last record followed by ``</HealthData>`` is a complete document, not a truncated one.

Only direct children of a ``<Workout>`` are its statistics and metadata: iOS 16+ nests
``<WorkoutActivity>`` elements with their own ``<WorkoutStatistics>``, which would count twice.
"""

from __future__ import annotations

import re
from collections import deque
from typing import Any, Protocol
from xml.parsers import expat

from wearfhir.errors import TruncatedInputError, UnsupportedInputError

__all__ = ["HealthDataHandler", "HealthDataStream"]

Attrs = dict[str, str]
_EMPTY: Attrs = {}

# XML 1.0 forbids C0 controls other than TAB, LF and CR; in UTF-8 these bytes never occur inside a
# multi-byte sequence, so deleting them byte-wise is safe.
_CONTROL_BYTES = bytes([*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20)])
_MAX_HEADER = 4 * 1024 * 1024
_DOCTYPE_END = re.compile(rb"\]\s*>")
# Where parsing can start again after a syntax error: a top-level element at the start of a line, or the
# end of the document.
_RESUME = re.compile(
    rb"\n[ \t]*<(?:Record|Correlation|Workout|ActivitySummary|ClinicalRecord|Audiogram|VisionPrescription|Me"
    rb"|ExportDate)[\s/>]|</HealthData\s*>"
)
_SYNTHETIC_ROOT = b"<HealthData>"
_SKIP_TAIL = 256  # bytes kept while skipping, so a resume point split across chunks is still found
# expat copies every buffer it is given: after a resume, a small piece first, so that each error of a long
# run costs O(record), not O(chunk); the rest of the chunk follows in one piece once a record parses.
_RESYNC_WINDOW = 8 * 1024
_HISTORY = 64 * 1024  # bytes of already-fed input kept (by reference) to locate an error in an earlier chunk


class HealthDataHandler(Protocol):
    """Receives the top-level elements of a HealthData document, in file order."""

    def export_date(self, value: str) -> None:
        """The raw ``value`` text of the first ``<ExportDate>``: called once, or never when there is none."""

    def me(self, attrs: Attrs) -> None: ...
    def record(self, attrs: Attrs, metadata: Attrs, line: int) -> None: ...
    def correlation(self, attrs: Attrs, metadata: Attrs, records: list[tuple[Attrs, Attrs]], line: int
                    ) -> None: ...
    def workout(self, attrs: Attrs, metadata: Attrs, statistics: list[Attrs], line: int) -> None: ...
    def other(self, name: str) -> None: ...
    def malformed(self, message: str, line: int) -> None: ...


class HealthDataStream:
    """Feed it the bytes of an export.xml in chunks; it calls the handler for each top-level element."""

    def __init__(self, handler: HealthDataHandler) -> None:
        self._handler = handler
        self.control_chars_removed = 0
        self.syntax_errors = 0
        self.lines_skipped = 0
        self._header: bytearray | None = bytearray()
        self._skipping: bytes | None = None  # tail kept while looking for a resume point
        self._line_base = 0
        self._root_closed = False
        self._export_date_seen = False
        self._parser = self._new_parser()

    # ---- expat plumbing -------------------------------------------------------------------------------
    def _new_parser(self) -> Any:
        parser = expat.ParserCreate()
        parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        parser.StartElementHandler = self._start
        parser.EndElementHandler = self._end
        parser.buffer_text = False
        self._depth = 0
        self._top: str | None = None
        self._attrs: Attrs = _EMPTY
        self._meta: Attrs | None = None
        self._children: list[Any] = []
        self._child_meta: Attrs | None = None
        self._fed = 0  # bytes given to this parser before the current Parse call
        self._history: deque[bytes | memoryview] = deque()  # the last pieces given to this parser
        self._history_bytes = 0
        return parser

    def _line(self) -> int:
        return self._line_base + self._parser.CurrentLineNumber

    def _start(self, name: str, attrs: Attrs) -> None:
        depth = self._depth = self._depth + 1
        if depth == 2:
            self._top = name
            if name == "Record" or name == "Correlation" or name == "Workout":
                self._attrs = attrs
                self._meta = None
                if name != "Record":
                    self._children = []
            elif name == "Me":
                self._handler.me(attrs)
            elif name == "ExportDate":
                value = attrs.get("value")
                if value is not None and not self._export_date_seen:
                    self._export_date_seen = True
                    self._handler.export_date(value)
            else:
                self._handler.other(name)
        elif depth == 3:
            top = self._top
            if name == "MetadataEntry":
                if top in ("Record", "Correlation", "Workout"):
                    if self._meta is None:
                        self._meta = {}
                    self._meta[attrs.get("key", "")] = attrs.get("value", "")
            elif top == "Correlation" and name == "Record":
                self._child_meta = {}
                self._children.append((attrs, self._child_meta))
            elif top == "Workout" and name == "WorkoutStatistics":
                self._children.append(attrs)
        elif depth == 4 and name == "MetadataEntry" and self._top == "Correlation":
            if self._child_meta is not None:
                self._child_meta[attrs.get("key", "")] = attrs.get("value", "")
        elif depth == 1 and name != "HealthData":
            raise UnsupportedInputError(f"the XML root is <{name}>, not <HealthData>: not an Apple Health export")

    def _end(self, name: str) -> None:
        depth = self._depth
        self._depth = depth - 1
        if depth == 2:
            if name == "Record":
                self._handler.record(self._attrs, self._meta or _EMPTY, self._line())
            elif name == "Correlation":
                self._handler.correlation(self._attrs, self._meta or _EMPTY, self._children, self._line())
            elif name == "Workout":
                self._handler.workout(self._attrs, self._meta or _EMPTY, self._children, self._line())
            self._top = None
        elif depth == 1:
            self._root_closed = True

    # ---- feeding --------------------------------------------------------------------------------------
    def feed(self, chunk: bytes) -> None:
        """Parse the next chunk of the document."""
        clean = chunk.translate(None, _CONTROL_BYTES)
        self.control_chars_removed += len(chunk) - len(clean)
        if self._header is not None:
            self._header += clean
            clean = self._strip_doctype(final=False)
            if not clean:
                return
        self._consume(clean)

    def close(self) -> None:
        """Finish the document; raise TruncatedInputError if it ended before ``</HealthData>``."""
        if self._header is not None:
            rest = self._strip_doctype(final=True)
            if rest:
                self._consume(rest)
        if self._skipping is not None:
            # no resume point after the last error: the input ended while skipping
            lines = self._skipping.count(b"\n")
            self._line_base += lines
            self.lines_skipped += lines
            self._skipping = None
        else:
            try:
                self._parser.Parse(b"", True)
            except expat.ExpatError:
                pass
        if not self._root_closed:
            inside = f" inside <{self._top}>" if self._top else ""
            raise TruncatedInputError(
                f"the export ends at line {self._line()}{inside} before </HealthData>: the file is "
                "truncated (an interrupted download or copy?). Everything before that point was imported."
            )

    def _strip_doctype(self, final: bool) -> bytes:
        assert self._header is not None
        head = bytes(self._header)
        start = head.find(b"<!DOCTYPE")
        root = head.find(b"<HealthData")
        if start == -1 or (root != -1 and root < start):
            if root == -1 and not final and len(head) < _MAX_HEADER:
                return b""
            self._header = None
            return head
        bracket = head.find(b"[", start)
        close = head.find(b">", start)
        if close != -1 and (bracket == -1 or close < bracket):
            end = close + 1
        else:
            match = _DOCTYPE_END.search(head, bracket) if bracket != -1 else None
            if match is None:
                if not final and len(head) < _MAX_HEADER:
                    return b""
                raise UnsupportedInputError(
                    "the export's DOCTYPE never ends: this is not a readable Apple Health export"
                )
            end = match.end()
        self._header = None
        return head[:start] + b"\n" * head.count(b"\n", start, end) + head[end:]

    # ---- parsing with resync (iterative: a run of a million bad records is a million loop turns) -------
    def _consume(self, data: bytes) -> None:
        start = 0
        window = len(data)
        if self._skipping is not None:
            data = self._skipping + data
            self._skipping = None
            start = self._resume_at(data, 0)
            window = _RESYNC_WINDOW
        while 0 <= start < len(data):
            end = min(len(data), start + window)
            piece: bytes | memoryview = data if end - start == len(data) else memoryview(data)[start:end]
            try:
                self._parser.Parse(piece, False)
            except expat.ExpatError as exc:
                data, start = self._restart_after(exc, data, start)
                start = self._resume_at(data, start)
                window = _RESYNC_WINDOW
                continue
            self._remember(piece)
            start = end
            window = len(data)

    def _remember(self, piece: bytes | memoryview) -> None:
        self._fed += len(piece)
        self._history.append(piece)
        self._history_bytes += len(piece)
        while self._history_bytes - len(self._history[0]) >= _HISTORY:
            self._history_bytes -= len(self._history.popleft())

    def _restart_after(self, exc: expat.ExpatError, data: bytes, start: int) -> tuple[bytes, int]:
        """Report the error, start a fresh parser; return the input from the error position on."""
        self.syntax_errors += 1
        line = self._line_base + (exc.lineno or 1)
        self._handler.malformed(
            f"malformed XML at line {line}, column {exc.offset}: {expat.ErrorString(exc.code)}", line
        )
        into_piece = self._parser.ErrorByteIndex - self._fed
        if into_piece >= 0:
            restart: tuple[bytes, int] = (data, min(start + into_piece, len(data)))
        else:  # the error lies in input given to the parser by an earlier feed
            earlier = b"".join(self._history)
            back = min(-into_piece, len(earlier))
            restart = (earlier[len(earlier) - back:] + data[start:], 0)
        # lines from the error to the resume point are counted into the new base
        self._line_base = line - 1
        self._parser = self._new_parser()
        return restart

    def _resume_at(self, data: bytes, start: int) -> int:
        """Position in ``data`` of the next top-level element (the fresh parser is primed), or -1 if none yet."""
        match = _RESUME.search(data, start)
        if match is None:
            keep = max(start, len(data) - _SKIP_TAIL)
            skipped = data.count(b"\n", start, keep)
            self._line_base += skipped
            self.lines_skipped += skipped
            self._skipping = data[keep:]
            return -1
        skipped = data.count(b"\n", start, match.start())
        self._line_base += skipped
        self.lines_skipped += skipped
        # a newline at match.start() ends the synthetic root's line, so line numbers stay true
        self._parser.Parse(_SYNTHETIC_ROOT, False)
        self._fed = len(_SYNTHETIC_ROOT)
        return match.start()
