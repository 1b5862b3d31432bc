"""Deterministic identifiers and logical ids: the same input always names the same FHIR resource."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from mappers.sample import DeviceInfo, Sample

__all__ = [
    "DEFAULT_IDENTIFIER_BASE",
    "device_identity",
    "identifier_system",
    "resource_id",
    "identity_head",
    "sample_identifier_value",
    "utc_text",
]

DEFAULT_IDENTIFIER_BASE = "https://wearfhir.dev/fhir/identifier"

# One letter per kind: HAPI rejects purely numeric client ids, and the letter tells a reader what it is.
_PREFIX = {"sample": "s", "summary": "m", "device": "d", "patient": "p"}


def identifier_system(base: str, kind: str) -> str:
    """The identifier system of a resource kind, e.g. ``https://wearfhir.dev/fhir/identifier/sample``."""
    return f"{base.rstrip('/')}/{kind}"


def resource_id(kind: str, system: str, value: str) -> str:
    """The logical id derived from an identifier: a kind letter and 32 hex digits of BLAKE2b.

    It matches ``[A-Za-z0-9\\-.]{1,64}``, is never purely numeric, and reveals nothing of the value.
    """
    digest = hashlib.blake2b(f"{system}|{value}".encode(), digest_size=16).hexdigest()
    return _PREFIX[kind] + digest


_MINUTE_TEXT: dict[int, str] = {}


def utc_text(moment: datetime) -> str:
    """An aware datetime as compact UTC text (``2024-03-10T13:15:00Z``) for identifier values.

    Hot path: the text of each UTC minute is cached, so most calls cost one ``timestamp()``.
    """
    if moment.microsecond:
        return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
    epoch = int(moment.timestamp())
    minute, second = divmod(epoch, 60)
    prefix = _MINUTE_TEXT.get(minute)
    if prefix is None:
        if len(_MINUTE_TEXT) > 100_000:
            _MINUTE_TEXT.clear()
        prefix = _MINUTE_TEXT[minute] = datetime.fromtimestamp(minute * 60, UTC).strftime("%Y-%m-%dT%H:%M:")
    return f"{prefix}{second:02d}Z"


def identity_head(sample: Sample) -> tuple[str, str, str, str, str]:
    """What makes a sample unique, besides its interval: origin, patient, metric, vendor type, source.

    With the start and end this is the sample's identity: two samples sharing it are the same measurement
    (an exact or re-synced duplicate). The value is deliberately not part of it, so a corrected re-export
    updates in place. Both the identifier value and the duplicate filter's key are built from it.
    """
    return (sample.origin, sample.patient, sample.metric, sample.vendor_type, sample.source.name)


def sample_identifier_value(sample: Sample) -> str:
    """The canonical identifier value of a raw sample Observation."""
    start = utc_text(sample.start)
    end = start if sample.end == sample.start else utc_text(sample.end)
    return "|".join((*identity_head(sample), start, end))


def device_identity(patient: str, device: DeviceInfo) -> str:
    """The canonical identifier value of a source device: stable across software updates."""
    return "|".join((patient, device.manufacturer or "", device.model or "", device.hardware or "",
                     device.name or ""))
