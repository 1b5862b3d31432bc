"""A minimal one-page PDF 1.4 writer: Helvetica text, lines, rectangles, polygons and polylines; pure, deterministic.

Enough for a report drawn with vector shapes and text and nothing more: one page, the standard Type 1 fonts
Helvetica and Helvetica-Bold (not embedded: every PDF reader has them or a metric-compatible substitute) with
``WinAnsiEncoding``, so text stays extractable and searchable (``pdftotext``, copy-paste, EHR full-text search).
Text that ``WinAnsiEncoding`` cannot encode (e.g. ``≥``) raises ``ValueError`` instead of printing a wrong glyph.

Coordinates are PDF points (1/72 inch) from the bottom-left corner of the page. Colours are ``"#rrggbb"``.
The output depends only on the drawing calls: no dates, no ids, no dict or set order, numbers written with two
decimals; the content stream is deflated with zlib at a fixed level (the same bytes for the same zlib build).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from math import isfinite

__all__ = ["A4", "Page", "text_width"]

A4 = (595.28, 841.89)  # width, height in points
_ENCODING = "cp1252"  # WinAnsiEncoding is Windows-1252 (PDF 32000-1 D.2) for every character it defines
# Advance widths (1/1000 em) of the codes 32-255 in WinAnsiEncoding, from Adobe's Helvetica and Helvetica-Bold AFM
# metrics (the Core 14 AFM files phvr8a.afm and phvb8a.afm); 0 where the code is undefined.
_WIDTHS = {
    False: tuple(int(w) for w in """
278 278 355 556 556 889 667 191 333 333 389 584 278 333 278 278 556 556 556 556 556 556 556 556 556 556
278 278 584 584 584 556 1015 667 667 722 722 667 611 778 722 278 500 667 556 833 722 778 667 778 722 667
611 722 667 944 667 667 611 278 278 278 469 556 333 556 556 500 556 556 278 556 556 222 222 500 222 833
556 556 556 556 333 500 278 556 500 722 500 500 500 334 260 334 584 0 556 0 222 556 333 1000 556 556 333
1000 667 333 1000 0 611 0 0 222 222 333 333 350 556 1000 333 1000 500 333 944 0 500 667 278 333 556 556
556 556 260 556 333 737 370 556 584 333 737 333 400 584 333 333 333 556 537 278 333 333 365 556 834 834
834 611 667 667 667 667 667 667 1000 722 667 667 667 667 278 278 278 278 722 722 778 778 778 778 778 584
778 722 722 722 722 667 667 611 556 556 556 556 556 556 889 500 556 556 556 556 278 278 278 278 556 556
556 556 556 556 556 584 611 556 556 556 556 500 556 500""".split()),
    True: tuple(int(w) for w in """
278 333 474 556 556 889 722 238 333 333 389 584 278 333 278 278 556 556 556 556 556 556 556 556 556 556
333 333 584 584 584 611 975 722 722 722 722 667 611 778 722 278 556 722 611 833 722 778 667 778 722 667
611 722 667 944 667 667 611 333 278 333 584 556 333 556 611 556 611 556 333 611 611 278 278 556 278 889
611 611 611 611 389 556 333 611 556 778 556 556 500 389 280 389 584 0 556 0 278 556 500 1000 556 556 333
1000 667 333 1000 0 611 0 0 278 278 500 500 350 556 1000 333 1000 556 333 944 0 500 667 278 333 556 556
556 556 280 556 333 737 370 556 584 333 737 333 400 584 333 333 333 611 556 278 333 333 365 556 834 834
834 611 722 722 722 722 722 722 1000 722 667 667 667 667 278 278 278 278 722 722 778 778 778 778 778 584
778 722 722 722 722 667 667 611 556 556 556 556 556 556 889 556 556 556 556 556 278 278 278 278 611 611
611 611 611 611 611 584 611 611 611 611 611 556 611 556""".split()),
}
_FONTS = {False: ("F1", "Helvetica"), True: ("F2", "Helvetica-Bold")}
# where the baseline goes for a vertical alignment, as a fraction of the font size below (or above) the anchor
_BASELINE = {"baseline": 0.0, "top": 0.75, "center": 0.36, "bottom": -0.22}
_ESCAPES = {0x5C: b"\\\\", 0x28: b"\\(", 0x29: b"\\)"}


def _encode(text: str) -> bytes:
    """``text`` in WinAnsiEncoding; ``ValueError`` for a character it does not have (or a control character)."""
    try:
        data = text.encode(_ENCODING)
    except UnicodeEncodeError as exc:
        raise ValueError(f"{exc.object[exc.start:exc.end]!r} is not in WinAnsiEncoding") from None
    if any(b < 32 or b == 127 for b in data):
        raise ValueError("control characters cannot be shown")
    return data


def _literal(data: bytes) -> bytes:
    """A PDF literal string: ``\\ ( )`` escaped, bytes outside printable ASCII as octal escapes."""
    out = bytearray(b"(")
    for b in data:
        if b in _ESCAPES:
            out += _ESCAPES[b]
        elif 32 <= b < 127:
            out.append(b)
        else:
            out += b"\\%03o" % b
    out += b")"
    return bytes(out)


def text_width(text: str, size: float, bold: bool = False) -> float:
    """The advance width of ``text`` in points, in Helvetica (or Helvetica-Bold) at ``size``."""
    widths = _WIDTHS[bold]
    return sum(widths[b - 32] for b in _encode(text)) * size / 1000.0


def _num(value: float) -> str:
    """A number as the content stream writes it: at most two decimals, no exponent, no ``-0``."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _rgb(colour: str) -> str:
    if len(colour) != 7 or colour[0] != "#":
        raise ValueError(f"colour {colour!r} is not #rrggbb")
    return " ".join(_num(int(colour[i:i + 2], 16) / 255.0) for i in (1, 3, 5))


def _runs(points: Iterable[tuple[float, float]]) -> Iterator[list[tuple[float, float]]]:
    """The runs of consecutive finite points (a NaN or infinite coordinate breaks the line)."""
    run: list[tuple[float, float]] = []
    for x, y in points:
        if isfinite(x) and isfinite(y):
            run.append((x, y))
        elif run:
            yield run
            run = []
    if run:
        yield run


class Page:
    """One page being drawn; :meth:`pdf` gives the file. Shapes are painted in call order (later on top)."""

    def __init__(self, width: float = A4[0], height: float = A4[1]) -> None:
        self.width, self.height = width, height
        self._ops: list[str] = []

    # -- graphics state ------------------------------------------------------------------------------------
    @contextmanager
    def saved(self) -> Iterator[None]:
        """``q`` … ``Q``: colours, line settings and clipping set inside are undone on exit."""
        self._ops.append("q")
        try:
            yield
        finally:
            self._ops.append("Q")

    @contextmanager
    def clipped(self, x: float, y: float, width: float, height: float) -> Iterator[None]:
        """Draw only inside the rectangle until the block ends."""
        with self.saved():
            self._ops.append(f"{_num(x)} {_num(y)} {_num(width)} {_num(height)} re W n")
            yield

    # -- shapes ------------------------------------------------------------------------------------------
    def line(self, x1: float, y1: float, x2: float, y2: float, colour: str = "#000000", width: float = 1.0,
             dash: Sequence[float] = ()) -> None:
        """A straight line (``dash``: on/off lengths in points, e.g. ``(4, 3)``)."""
        self.polyline(((x1, y1), (x2, y2)), colour, width, dash)

    def polyline(self, points: Iterable[tuple[float, float]], colour: str = "#000000", width: float = 1.0,
                 dash: Sequence[float] = ()) -> None:
        """A stroked line through ``points``; a NaN coordinate breaks it (a gap), so one call draws many lines."""
        path = []
        for run in _runs(points):
            if len(run) < 2:
                continue
            path.append(f"{_num(run[0][0])} {_num(run[0][1])} m")
            path.extend(f"{_num(x)} {_num(y)} l" for x, y in run[1:])
        if not path:
            return
        self._ops.append(f"{_rgb(colour)} RG {_num(width)} w 1 J 1 j [{' '.join(_num(d) for d in dash)}] 0 d")
        self._ops.extend(path)
        self._ops.append("S")

    def rect(self, x: float, y: float, width: float, height: float, fill: str | None = None,
             stroke: str | None = None, line_width: float = 1.0) -> None:
        """A rectangle from its bottom-left corner, filled and/or stroked."""
        self._paint(f"{_num(x)} {_num(y)} {_num(width)} {_num(height)} re", fill, stroke, line_width)

    def polygon(self, points: Iterable[tuple[float, float]], fill: str | None = None, stroke: str | None = None,
                line_width: float = 1.0) -> None:
        """A closed polygon, filled (non-zero rule) and/or stroked; NaN points are skipped."""
        run = [p for r in _runs(points) for p in r]
        if len(run) < 3:
            return
        path = [f"{_num(run[0][0])} {_num(run[0][1])} m"]
        path.extend(f"{_num(x)} {_num(y)} l" for x, y in run[1:])
        path.append("h")
        self._paint("\n".join(path), fill, stroke, line_width)

    def _paint(self, path: str, fill: str | None, stroke: str | None, line_width: float) -> None:
        if fill is None and stroke is None:
            return
        settings = []
        if fill is not None:
            settings.append(f"{_rgb(fill)} rg")
        if stroke is not None:
            settings.append(f"{_rgb(stroke)} RG {_num(line_width)} w [] 0 d")
        operator = "B" if fill is not None and stroke is not None else "f" if fill is not None else "S"
        self._ops.append(" ".join(settings))
        self._ops.append(path)
        self._ops.append(operator)

    # -- text --------------------------------------------------------------------------------------------
    def text(self, x: float, y: float, text: str, size: float, *, bold: bool = False, colour: str = "#000000",
             align: str = "left", valign: str = "baseline", angle: int = 0) -> None:
        """One line of text anchored at (x, y): ``align`` left/center/right, ``valign`` baseline/top/center/
        bottom, ``angle`` 0 or 90 (reads bottom to top). Each call is its own text object (``BT`` … ``ET``)."""
        if align not in ("left", "center", "right") or valign not in _BASELINE or angle not in (0, 90):
            raise ValueError(f"bad alignment {align!r}/{valign!r}/{angle!r}")
        data = _encode(text)
        along = -text_width(text, size, bold) * {"left": 0.0, "center": 0.5, "right": 1.0}[align]
        across = -_BASELINE[valign] * size
        if angle == 0:
            matrix = f"1 0 0 1 {_num(x + along)} {_num(y + across)}"
        else:
            matrix = f"0 1 -1 0 {_num(x - across)} {_num(y + along)}"
        name = _FONTS[bold][0]
        self._ops.append(f"BT /{name} {_num(size)} Tf {_rgb(colour)} rg {matrix} Tm "
                         f"{_literal(data).decode('latin-1')} Tj ET")

    # -- the file ----------------------------------------------------------------------------------------
    def content(self) -> bytes:
        """The page's content stream, uncompressed."""
        return ("\n".join(self._ops) + "\n").encode("latin-1")

    def pdf(self, *, title: str = "", producer: str = "", compress: bool = True) -> bytes:
        """The whole one-page PDF 1.4 file (no dates and no ``/ID``, so the same drawing gives the same bytes)."""
        content = self.content()
        stream_dict = f"<< /Length {len(content)} >>"
        if compress:
            content = zlib.compress(content, 6)
            stream_dict = f"<< /Length {len(content)} /Filter /FlateDecode >>"
        info = []
        if title:
            info.append(f"/Title {_info_string(title)}")
        if producer:
            info.append(f"/Creator {_info_string(producer)} /Producer {_info_string(producer)}")
        fonts = " ".join(f"/{name} {5 + int(bold)} 0 R" for bold, (name, _) in sorted(_FONTS.items()))
        objects: list[bytes] = [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {_num(self.width)} {_num(self.height)}] "
            f"/Resources << /Font << {fonts} >> /ProcSet [/PDF /Text] >> /Contents 4 0 R >>".encode("ascii"),
            stream_dict.encode("ascii") + b"\nstream\n" + content + b"\nendstream",
            *(f"<< /Type /Font /Subtype /Type1 /BaseFont /{base} /Encoding /WinAnsiEncoding >>".encode("ascii")
              for _, (_, base) in sorted(_FONTS.items())),
            f"<< {' '.join(info)} >>".encode("latin-1"),
        ]
        out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
        offsets = []
        for number, body in enumerate(objects, start=1):
            offsets.append(len(out))
            out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
        xref = len(out)
        out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
        out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
        out += (b"trailer\n<< /Size %d /Root 1 0 R /Info %d 0 R >>\nstartxref\n%d\n%%%%EOF\n"
                % (len(objects) + 1, len(objects), xref))
        return bytes(out)


def _info_string(text: str) -> str:
    """A document-information string: a literal for ASCII, else UTF-16BE with a byte-order mark (hex)."""
    if text.isascii() and text.isprintable():
        return _literal(text.encode("ascii")).decode("ascii")
    return "<FEFF" + text.encode("utf-16-be").hex().upper() + ">"
