"""The worker's input entry, version 1: one batch of canonical samples of one patient, columnar JSON, zlib.

An entry is a Redis stream entry whose fields are::

    v         b"1"                       the format version (an unknown one is dead-lettered, never guessed)
    patient   b"Patient/123"             the patient reference every sample belongs to
    tz        b"America/New_York" | b""  the patient's IANA zone (their local days); empty = none known
    origin    b"healthkit"               the source family (healthkit, google_fit, health_auto_export …)
    producer  b"enqueue:host:pid"        who added it (ids only; for tracing and dead letters)
    identity  b"value" | b"slot"         sample identity: value = exact duplicates only (exports); slot = a
                                         re-sent (type, source, start, end) replaces the earlier value
    n         b"1000"                    the number of samples
    data      zlib(orjson(columns))      the samples (below)

``data`` holds tables of distinct strings (metrics, units, vendor types, zones, sources) and one column per
sample field; times are integer microseconds since the epoch with the offsets written next to them, so a
decoded sample equals the one encoded, field for field (start/end as written, epochs bit for bit). Pure: no I/O.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, NamedTuple

import orjson

from mappers.sample import DeviceInfo, Sample, SampleBatch, SourceInfo

__all__ = ["ENTRY_VERSION", "DecodeError", "EntryBatch", "decode_entry", "encode_entry", "entry_batches",
           "split_samples"]

ENTRY_VERSION = 1
MAX_ENTRY_SAMPLES = 1_000  # producers cut batches at this size: entries stay small, one read is a few hundred KB
_MICRO = 1_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ZONES: dict[int, timezone] = {}
IDENTITIES = ("value", "slot")


class DecodeError(ValueError):
    """An entry that cannot be read; ``reason`` is a short machine-readable cause for the dead letters."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class EntryBatch(NamedTuple):
    """A decoded entry: its samples, grouped per metric in entry order, and the entry's envelope."""

    patient: str
    timezone: str | None
    origin: str
    producer: str
    identity: str
    batches: list[SampleBatch]
    samples: int


def _micros(moment: datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86400 + delta.seconds) * _MICRO + delta.microseconds


def _offset(moment: datetime) -> int:
    delta = moment.utcoffset()
    if delta is None:
        raise ValueError("a sample time must be timezone-aware")
    return delta.days * 86400 + delta.seconds


def _zone(offset: int) -> timezone:
    zone = _ZONES.get(offset)
    if zone is None:
        zone = _ZONES[offset] = timezone(timedelta(seconds=offset))
    return zone


def _moment(micros: int, offset: int) -> datetime:
    seconds, micro = divmod(micros, _MICRO)
    moment = datetime.fromtimestamp(seconds, _zone(offset))
    return moment.replace(microsecond=micro) if micro else moment


class _Table:
    """Distinct values → small integers, in first-seen order."""

    def __init__(self) -> None:
        self.index: dict[Any, int] = {}

    def __call__(self, value: Any) -> int:
        found = self.index.get(value)
        if found is None:
            found = self.index[value] = len(self.index)
        return found

    def values(self) -> list[Any]:
        return list(self.index)


def split_samples(samples: Sequence[Sample], size: int = MAX_ENTRY_SAMPLES) -> list[Sequence[Sample]]:
    """Samples cut into entry-sized runs."""
    return [samples[i:i + size] for i in range(0, len(samples), size)]


def encode_entry(patient: str, samples: Sequence[Sample], *, timezone: str | None, origin: str, producer: str,
                 identity: str = "value") -> dict[bytes, bytes]:
    """The stream fields of one entry holding ``samples`` (all of ``patient``)."""
    if identity not in IDENTITIES:
        raise ValueError(f"identity must be one of {IDENTITIES}, not {identity!r}")
    metrics, units, types, zones, sources = _Table(), _Table(), _Table(), _Table(), _Table()
    cols: dict[str, list[Any]] = {name: [] for name in ("m", "v", "c", "u", "t0", "o0", "t1", "o1", "lo", "s",
                                                         "vt", "z", "rid", "comp", "ue", "vc", "org")}
    for s in samples:
        if s.patient != patient:
            raise ValueError("an entry holds the samples of one patient")
        if not _finite(s.value) or s.components and not all(_finite(x) for _, x in s.components):
            raise ValueError("a sample value must be a finite number (JSON has no NaN or infinity)")
        cols["m"].append(metrics(s.metric))
        cols["v"].append(s.value)
        cols["c"].append(s.code)
        cols["u"].append(units(s.unit))
        cols["o0"].append(_offset(s.start))  # first: it refuses a naive time that _micros could not subtract
        cols["t0"].append(_micros(s.start))
        same = s.end is s.start or s.end == s.start and _offset(s.end) == _offset(s.start)
        cols["o1"].append(None if same else _offset(s.end))
        cols["t1"].append(None if same else _micros(s.end))
        cols["lo"].append(s.utc_offset)
        src = s.source
        device = list(src.device) if src.device is not None else None
        cols["s"].append(sources((src.name, src.version, tuple(device) if device is not None else None)))
        cols["vt"].append(types(s.vendor_type))
        cols["z"].append(zones(s.timezone))
        cols["rid"].append(s.record_id)
        cols["comp"].append([list(c) for c in s.components] if s.components else None)
        cols["ue"].append(1 if s.user_entered else 0)
        cols["vc"].append(s.vendor_code)
        cols["org"].append(s.origin if s.origin != origin else None)
    # columns that say nothing (all null, all zero) are left out
    for name in ("c", "t1", "o1", "rid", "comp", "vc", "org"):
        if all(v is None for v in cols[name]):
            del cols[name]
    if not any(cols["ue"]):
        del cols["ue"]
    body = {
        "metrics": metrics.values(), "units": units.values(), "types": types.values(), "zones": zones.values(),
        "sources": [[n, ver, list(dev) if dev is not None else None] for n, ver, dev in sources.values()],
        **cols,
    }
    return {
        b"v": str(ENTRY_VERSION).encode(),
        b"patient": patient.encode(),
        b"tz": (timezone or "").encode(),
        b"origin": origin.encode(),
        b"producer": producer.encode(),
        b"identity": identity.encode(),
        b"n": str(len(samples)).encode(),
        b"data": zlib.compress(orjson.dumps(body), 1),
    }


def _field(fields: Mapping[bytes, bytes], name: bytes) -> str:
    value = fields.get(name)
    if value is None:
        raise DecodeError("undecodable", f"the entry has no {name.decode()!r} field")
    try:
        return value.decode()
    except UnicodeDecodeError as exc:
        raise DecodeError("undecodable", f"the {name.decode()!r} field is not UTF-8") from exc


def decode_entry(fields: Mapping[bytes, bytes]) -> EntryBatch:
    """The samples of one entry; raises :class:`DecodeError` (reason ``unknown_version`` or ``undecodable``)."""
    version = _field(fields, b"v")
    if version != str(ENTRY_VERSION):
        raise DecodeError("unknown_version", f"entry format version {version!r} is not known to this worker "
                          f"(it reads version {ENTRY_VERSION}); upgrade the worker, then replay the dead letter")
    patient, origin = _field(fields, b"patient"), _field(fields, b"origin")
    zone = _field(fields, b"tz") or None
    producer = fields.get(b"producer", b"").decode(errors="replace")
    identity = fields.get(b"identity", b"value").decode(errors="replace")
    if identity not in IDENTITIES:
        raise DecodeError("undecodable", f"unknown sample identity {identity!r}")
    if not patient.startswith("Patient/") or len(patient) <= len("Patient/"):
        raise DecodeError("undecodable", "the patient must be a reference such as Patient/123")
    try:
        body = orjson.loads(zlib.decompress(fields[b"data"]))
        samples = _samples(body, patient, origin)
    except DecodeError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, OverflowError, zlib.error) as exc:
        raise DecodeError("undecodable", f"the samples could not be decoded ({type(exc).__name__})") from None
    expected = fields.get(b"n")
    if expected is not None and expected != str(len(samples)).encode():
        raise DecodeError("undecodable", f"the entry says {expected.decode(errors='replace')} samples but holds "
                          f"{len(samples)}")
    return EntryBatch(patient, zone, origin, producer, identity, entry_batches(patient, samples, zone), len(samples))


def entry_batches(patient: str, samples: list[Sample], zone: str | None) -> list[SampleBatch]:
    """Samples grouped per metric (first-seen order; each group keeps the samples' order)."""
    groups: dict[str, list[Sample]] = {}
    for s in samples:
        groups.setdefault(s.metric, []).append(s)
    return [SampleBatch(patient, metric, group, zone) for metric, group in groups.items()]


def _finite(value: float | None) -> bool:
    return not isinstance(value, float) or math.isfinite(value)


_NUMBER_TYPES = (int, float)  # exact types: a JSON boolean decodes to bool, which must not pass as a number


def _samples(body: dict[str, Any], patient: str, origin: str) -> list[Sample]:
    metrics, units, types, zones = body["metrics"], body["units"], body["types"], body["zones"]
    sources = [SourceInfo(name, version, DeviceInfo(*device) if device is not None else None)
               for name, version, device in body["sources"]]
    m, v, u, t0, o0, lo, s, vt, z = (body[k] for k in ("m", "v", "u", "t0", "o0", "lo", "s", "vt", "z"))
    n = len(m)
    absent = [None] * n
    c, t1, o1, rid, comp, vc, org = (body.get(k, absent) for k in ("c", "t1", "o1", "rid", "comp", "vc", "org"))
    ue = body.get("ue", [0] * n)
    columns = (m, v, c, u, t0, o0, t1, o1, lo, s, vt, z, rid, comp, ue, vc, org)
    if any(len(col) != n for col in columns):
        raise DecodeError("undecodable", "the sample columns differ in length")
    if any(type(x) not in _NUMBER_TYPES for x in v if x is not None) or any(
            type(x) not in _NUMBER_TYPES for parts in comp if parts for _, x in parts):
        raise DecodeError("undecodable", "a sample value is not a number")
    zone_of = {offset: timezone(timedelta(seconds=offset)) for offset in {*o0, *o1} if offset is not None}
    fromtimestamp = datetime.fromtimestamp
    out = []
    for (mi, value, code, ui, start_us, start_off, end_us, end_off, local, si, vti, zi, record, parts, entered,
         vcode, own_origin) in zip(*columns, strict=True):
        # epochs as the sources compute them (mappers.sample.epoch_times): microseconds over 10**6, one rounding
        seconds, micro = divmod(start_us, _MICRO)
        start = fromtimestamp(seconds, zone_of[start_off])
        if micro:
            start = start.replace(microsecond=micro)
        start_epoch = start_us / _MICRO
        if end_us is None:
            end, end_epoch = start, start_epoch
        else:
            seconds, micro = divmod(end_us, _MICRO)
            end = fromtimestamp(seconds, zone_of[end_off])
            if micro:
                end = end.replace(microsecond=micro)
            end_epoch = end_us / _MICRO
        out.append(Sample(patient, metrics[mi], value, code, units[ui], start, end, sources[si],
                          origin if own_origin is None else own_origin, types[vti], start_epoch, end_epoch, local,
                          record, tuple((k, x) for k, x in parts) if parts else (), zones[zi], bool(entered), vcode))
    return out
