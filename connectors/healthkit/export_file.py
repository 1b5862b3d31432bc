"""Open an Apple Health export safely: a bare ``export.xml`` or the ``export.zip`` an iPhone writes.

The HealthData XML inside a zip is found by sniffing for its doctype/root (file names are localised:
``export.xml``, ``Exportieren.xml``, ``exportar.xml``), never by trusting the name. Zip members are
checked before anything is read: unsafe names (path traversal, absolute paths) and compression ratios no
real export has are refused. ``count_time_zones`` pre-scans the bytes for the IANA zones records name.
"""

from __future__ import annotations

import re
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from wearfhir.errors import DataError, TruncatedInputError, UnsafeInputError, UnsupportedInputError

__all__ = ["ExportLimits", "ExportLocation", "count_time_zones", "locate_export", "open_export_stream"]

SNIFF_BYTES = 64 * 1024
ZONE_SCAN_CHUNK_BYTES = 1024 * 1024
MAX_ZONE_NAME = 64
# ``<MetadataEntry key="HKTimeZone" value="Asia/Jerusalem"/>``, and iOS 8's metadata-as-attribute form
# ``HKTimeZone="Europe/Berlin"``. The literal prefix keeps the regex on its fast path; a name is at most
# MAX_ZONE_NAME characters of the IANA alphabet and must be closed by its quote (so a name cut by a chunk
# boundary never matches).
_ZONE_IN_METADATA = re.compile(rb'HKTimeZone(?:" value)?="([A-Za-z0-9_+\-/]{1,%d})"' % MAX_ZONE_NAME)
_ZONE_MATCH_MAX = len(b'HKTimeZone" value="') + MAX_ZONE_NAME + 1


@dataclass(frozen=True, slots=True)
class ExportLimits:
    """Safety limits for untrusted exports (DESIGN §6)."""

    max_ratio: float = 200.0  # uncompressed / compressed; real exports are 10-40x
    max_uncompressed: int = 64 * 1024**3  # 64 GiB; the largest real exports are a few GB


@dataclass(frozen=True, slots=True)
class ExportLocation:
    """Where the HealthData XML is: a plain file, or a member of a zip archive."""

    path: Path
    member: str | None
    size: int  # uncompressed bytes of the XML

    def describe(self) -> str:
        """A human description for messages (no contents)."""
        return f"{self.path.name}:{self.member}" if self.member else self.path.name


def _is_health_data(head: bytes) -> bool:
    return b"<!DOCTYPE HealthData" in head or b"<HealthData" in head


def _unsafe_name(name: str) -> bool:
    if "\\" in name or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return True
    return ".." in PurePosixPath(name).parts


def locate_export(path: Path, limits: ExportLimits = ExportLimits()) -> ExportLocation:  # noqa: B008
    """Find the HealthData XML of an export, checking the archive first.

    Raises UnsupportedInputError (not an export), UnsafeInputError (refused archive) or DataError
    (unreadable file), each with a message that says what to do.
    """
    if not path.exists():
        raise DataError(f"{path}: no such file. Pass the export.zip (or export.xml) your iPhone wrote.")
    if path.is_dir():
        raise UnsupportedInputError(f"{path} is a directory; pass the export.zip or export.xml inside it.")
    if zipfile.is_zipfile(path):
        return _locate_in_zip(path, limits)
    with path.open("rb") as fh:
        head = fh.read(SNIFF_BYTES)
    if not _is_health_data(head):
        raise UnsupportedInputError(
            f"{path.name} is neither a zip archive nor Apple Health XML (no HealthData root). "
            "Export it from the Health app: profile picture > Export All Health Data."
        )
    return ExportLocation(path, None, path.stat().st_size)


def _locate_in_zip(path: Path, limits: ExportLimits) -> ExportLocation:
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            for info in infos:
                if _unsafe_name(info.filename):
                    raise UnsafeInputError(
                        f"{path.name}: member {info.filename!r} has an unsafe path (absolute or '..'); "
                        "refusing this archive. Re-export from the Health app."
                    )
            found: list[zipfile.ZipInfo] = []
            for info in infos:
                if info.is_dir() or info.file_size == 0:
                    continue
                with archive.open(info) as member:
                    head = member.read(SNIFF_BYTES)
                if _is_health_data(head) and b"<ClinicalDocument" not in head:
                    found.append(info)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise DataError(f"{path.name}: the zip archive is damaged ({exc}); re-export or re-download it.") from None
    if not found:
        raise UnsupportedInputError(
            f"{path.name} holds no Apple Health XML (no member with a HealthData root). "
            "Is this the export.zip from Health > Export All Health Data?"
        )
    best = max(found, key=lambda i: i.file_size)
    ratio = best.file_size / max(best.compress_size, 1)
    if ratio > limits.max_ratio:
        raise UnsafeInputError(
            f"{path.name}: member {best.filename!r} expands {ratio:.0f}x (limit {limits.max_ratio:.0f}x); "
            "refusing a probable compression bomb."
        )
    if best.file_size > limits.max_uncompressed:
        raise UnsafeInputError(
            f"{path.name}: member {best.filename!r} declares {best.file_size} bytes, over the "
            f"{limits.max_uncompressed}-byte limit."
        )
    return ExportLocation(path, best.filename, best.file_size)


@contextmanager
def open_export_stream(location: ExportLocation) -> Iterator[BinaryIO]:
    """Open the HealthData XML as a binary stream (decompressing a zip member on the fly)."""
    if location.member is None:
        with location.path.open("rb") as fh:
            yield fh
        return
    with zipfile.ZipFile(location.path) as archive, archive.open(location.member) as member:
        yield _GuardedMember(member, location)  # type: ignore[arg-type,misc]


class _GuardedMember:
    """A zip member stream that turns zlib/CRC failures into TruncatedInputError."""

    def __init__(self, member: BinaryIO, location: ExportLocation) -> None:
        self._member = member
        self._location = location
        self._read = 0

    def read(self, size: int = -1) -> bytes:
        try:
            data = self._member.read(size)
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise TruncatedInputError(
                f"{self._location.describe()}: the archive is damaged after {self._read} bytes ({exc})"
            ) from None
        self._read += len(data)
        if self._read > self._location.size:
            raise UnsafeInputError(f"{self._location.describe()}: member is larger than it declares")
        return data


def count_time_zones(location: ExportLocation, chunk_bytes: int = ZONE_SCAN_CHUNK_BYTES) -> Counter[str]:
    """Count the IANA zone names the export's records name in ``HKTimeZone`` metadata (one pass over the bytes).

    Used to choose the patient's default zone: the one the records name most often. Names are counted as
    written (syntactically checked, not looked up: validate with ``zoneinfo`` before use). A record nested
    in a Correlation or a WorkoutActivity counts like any other, since this scan sees bytes, not elements.
    """
    zones: Counter[bytes] = Counter()
    tail = b""
    with open_export_stream(location) as stream:
        while chunk := stream.read(chunk_bytes):
            buffer = tail + chunk if tail else chunk
            counted_to = 0
            for match in _ZONE_IN_METADATA.finditer(buffer):
                zones[match[1]] += 1
                counted_to = match.end()
            # keep enough to complete a match cut by the chunk boundary, never a match already counted
            tail = buffer[max(counted_to, len(buffer) - _ZONE_MATCH_MAX):]
    return Counter({name.decode("ascii"): count for name, count in zones.items()})
