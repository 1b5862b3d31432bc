"""Test helpers: small HealthKit exports written from record lines, and a recording handler."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

from connectors.healthkit.normalize import HealthKitNormalizer
from connectors.healthkit.xml_stream import HealthDataStream
from mappers.sample import Rejection, Sample
from mappers.tables import healthkit_table, metrics

HEADER = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE HealthData [
<!-- HealthKit Export Version: 12 -->
<!ELEMENT HealthData (ExportDate,Me,(Record|Correlation|Workout)*)>
<!ATTLIST VisionPrescription
  type             CDATA #REQUIRED
  brand            CDATA #IMPLIED

<!ELEMENT RightEye EMPTY>
]>
<HealthData locale="en_US">
 <ExportDate value="2025-01-15 09:00:00 -0500"/>
 <Me HKCharacteristicTypeIdentifierDateOfBirth="1971-04-12" \
HKCharacteristicTypeIdentifierBiologicalSex="HKBiologicalSexFemale"/>
"""
FOOTER = "</HealthData>\n"
WATCH = ("&lt;&lt;HKDevice: 0x283a4b5c0&gt;, name:Apple Watch, manufacturer:Apple Inc., model:Watch, "
         "hardware:Watch6,1, software:10.1&gt;")


def record(rtype: str, value: str | None, unit: str | None = None, start: str = "2024-03-10 08:15:00 -0400",
           end: str | None = None, source: str = "Apple Watch", device: str | None = WATCH,
           children: str = "") -> str:
    """One ``<Record>`` line as Apple writes it (``rtype`` without the HK prefix is a quantity type)."""
    if not rtype.startswith("HK"):
        rtype = f"HKQuantityTypeIdentifier{rtype}"
    attrs = [f'type="{rtype}"', f'sourceName="{source}"', 'sourceVersion="10.1"']
    if device:
        attrs.append(f'device="{device}"')
    if unit is not None:
        attrs.append(f'unit="{unit}"')
    attrs.append(f'startDate="{start}" endDate="{end or start}"')
    if value is not None:
        attrs.append(f'value="{value}"')
    if children:
        return f" <Record {' '.join(attrs)}>\n{children} </Record>\n"
    return f" <Record {' '.join(attrs)}/>\n"


def export_xml(*elements: str, header: str = HEADER, footer: str = FOOTER) -> bytes:
    """A complete export.xml document around the given element lines."""
    return (header + "".join(elements) + footer).encode("utf-8")


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    """Write a zip archive with the given members."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def normalize(xml: bytes, patient: str = "Patient/p1", chunk: int = 1 << 16) -> tuple[list[Sample], list[Rejection],
                                                                                     HealthKitNormalizer]:
    """Parse and normalise a whole document; returns (samples, rejections, normaliser)."""
    norm = HealthKitNormalizer(patient, healthkit_table(), metrics())
    stream = HealthDataStream(norm)
    for i in range(0, len(xml), chunk):
        stream.feed(xml[i:i + chunk])
    stream.close()
    norm.finish()
    batches, rejections = norm.drain()
    return [s for b in batches for s in b.samples], rejections, norm


class Recorder:
    """A HealthDataHandler that records what it is given."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def export_date(self, value: str) -> None:
        self.events.append(("export_date", value))

    def me(self, attrs: dict[str, str]) -> None:
        self.events.append(("me", dict(attrs)))

    def record(self, attrs: dict[str, str], metadata: dict[str, str], line: int) -> None:
        self.events.append(("record", attrs.get("value"), dict(metadata), line))

    def correlation(self, attrs: dict[str, str], metadata: dict[str, str], records: list[Any], line: int) -> None:
        self.events.append(("correlation", attrs.get("type"), len(records), line))

    def workout(self, attrs: dict[str, str], metadata: dict[str, str], statistics: list[Any], line: int) -> None:
        self.events.append(("workout", attrs.get("workoutActivityType"), len(statistics), line))

    def other(self, name: str) -> None:
        self.events.append(("other", name))

    def malformed(self, message: str, line: int) -> None:
        self.events.append(("malformed", message, line))

    def kinds(self) -> list[str]:
        return [e[0] for e in self.events]
