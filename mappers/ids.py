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
    "value_text",
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


_MINUTE_CACHE_SIZE = 16_384  # ~2 MB of texts at most
_MINUTE_TEXT: dict[int, str] = {}  # UTC minute number → "2024-03-10T13:15:"
_DAY_TEXT: dict[int, str] = {}  # UTC day number → "2024-03-10T"


def utc_text(epoch: float, moment: datetime) -> str:
    """An instant as compact UTC text (``2024-03-10T13:15:00Z``) for identifier values.

    ``epoch`` is ``moment.timestamp()`` (a sample's ``start_epoch``/``end_epoch``). Hot path: whole seconds
    are formatted from the epoch with the texts of recent UTC minutes and days cached (bounded); fractions
    go through ``moment``.
    """
    whole = int(epoch)
    if whole != epoch:
        return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
    minute, second = divmod(whole, 60)
    prefix = _MINUTE_TEXT.get(minute)
    if prefix is None:
        if len(_MINUTE_TEXT) >= _MINUTE_CACHE_SIZE:  # exports are grouped by type: recent minutes recur
            _MINUTE_TEXT.clear()
        day, minute_of_day = divmod(minute, 1440)
        date = _DAY_TEXT.get(day)
        if date is None:
            if len(_DAY_TEXT) >= _MINUTE_CACHE_SIZE:
                _DAY_TEXT.clear()
            date = _DAY_TEXT[day] = datetime.fromtimestamp(day * 86400, UTC).strftime("%Y-%m-%dT")
        hour, minute_of_hour = divmod(minute_of_day, 60)
        prefix = _MINUTE_TEXT[minute] = f"{date}{hour:02d}:{minute_of_hour:02d}:"
    return f"{prefix}{second:02d}Z"


def identity_head(sample: Sample) -> tuple[str, str, str, str, str]:
    """What makes a sample unique besides its interval and value: origin, patient, metric, vendor type, source.

    With the start and end this names a *time slot* of one source; with :func:`value_text` as well it is the
    sample's identity (DESIGN §2): two records are the same sample only when they agree in every attribute that
    matters, value included. Two records of one slot with other values (a distance of 8 then 9, an ``InBed`` and
    an ``Asleep`` of the same interval) are distinct samples with distinct ids.
    """
    return (sample.origin, sample.patient, sample.metric, sample.vendor_type, sample.source.name)


def value_text(sample: Sample) -> str:
    """The sample's value as canonical text: the number (``repr``, exact), the category code, the components.

    Part of the identity: ``8`` and ``9`` metres in the same slot are two samples.
    """
    value, code, components = sample.value, sample.code, sample.components
    if code is None and not components:  # a plain quantity: the hot path
        return "" if value is None else repr(value)
    parts = [] if value is None else [repr(value)]
    if code is not None:
        parts.append(code)
    if components:
        parts.append(",".join(f"{key}={number!r}" for key, number in components))
    return ";".join(parts)


def sample_identifier_value(sample: Sample, with_value: bool = True) -> str:
    """The canonical identifier value of a raw sample Observation: slot, interval (UTC) and value.

    ``with_value=False`` names the slot alone: for sources whose slot holds one value that a re-send replaces
    (slot identity, see connectors.streams.codec), so the newer value overwrites the same resource.
    """
    start = utc_text(sample.start_epoch, sample.start)
    end = start if sample.end_epoch == sample.start_epoch else utc_text(sample.end_epoch, sample.end)
    if not with_value:
        return "|".join((*identity_head(sample), start, end))
    return "|".join((*identity_head(sample), start, end, value_text(sample)))


def device_identity(patient: str, device: DeviceInfo) -> str:
    """The canonical identifier value of a source device: stable across software updates."""
    return "|".join((patient, device.manufacturer or "", device.model or "", device.hardware or "",
                     device.name or ""))
