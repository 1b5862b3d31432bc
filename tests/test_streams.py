"""The worker's input contract: entry codec v1, entry → work items / dead letters, the producer on a real Redis."""

from __future__ import annotations

import hashlib
import re
import zlib
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis as redis_lib
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.healthkit.source import read_export
from connectors.streams.codec import (
    MAX_ENTRY_SAMPLES,
    DecodeError,
    decode_entry,
    encode_entry,
    split_samples,
)
from connectors.streams.consumer import WorkItem, entry_items
from connectors.streams.deadletter import InputDeadLetter, write_input_dead_letters
from connectors.streams.producer import (
    CONFIG_KEY,
    INPUT_DEAD_LETTERS,
    StreamProducer,
    configured_shards,
    shard_of,
    stream_key,
)
from connectors.streams.source import StreamEntry
from mappers.sample import DeviceInfo, Sample, SampleBatch, SourceInfo, epoch_times, local_times
from mappers.tables import metrics
from tests.servers import RedisServer

SAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "samples" / "apple-health"
NOT_EXPORTS = {"rgosdin-v8-ios12-export_cda.xml"}  # a CDA document, not an export (read_export refuses it)
EXPORTS = sorted(p.name for p in SAMPLES.glob("*.xml") if p.name not in NOT_EXPORTS) if SAMPLES.is_dir() else []

PATIENT = "Patient/p1"
WATCH = SourceInfo("Zoë’s Apple Watch", "10.1", DeviceInfo("Apple Watch", "Apple Inc.", "Watch", "Watch6,1", "10.1"))
NY = timezone(timedelta(hours=-5))
SECRET = 123.456  # a distinctive value that no error message may repeat


def sample(start: datetime, end: datetime | None = None, *, metric: str = "heart_rate", value: float | None = 72.0,
           unit: str | None = "/min", patient: str = PATIENT, origin: str = "healthkit", **extra: Any) -> Sample:
    """A canonical sample with its epochs computed the way sources compute them."""
    end = start if end is None else end
    start_epoch, end_epoch, offset = epoch_times(start, end)
    return Sample(patient, metric, value, extra.pop("code", None), unit, start, end, extra.pop("source", WATCH),
                  origin, extra.pop("vendor_type", "HKQuantityTypeIdentifierHeartRate"), start_epoch, end_epoch,
                  extra.pop("utc_offset", offset), **extra)


def fields_of(samples: list[Sample], **kwargs: Any) -> dict[bytes, bytes]:
    args: dict[str, Any] = {"timezone": "America/New_York", "origin": "healthkit", "producer": "test:host:1"}
    args.update(kwargs)
    return encode_entry(PATIENT, samples, **args)


def decoded_samples(fields: dict[bytes, bytes]) -> list[Sample]:
    return [s for batch in decode_entry(fields).batches for s in batch.samples]


def grouped(samples: list[Sample]) -> list[Sample]:
    """The samples in the order an entry hands them out: per metric, metrics in first-seen order."""
    groups: dict[str, list[Sample]] = {}
    for s in samples:
        groups.setdefault(s.metric, []).append(s)
    return [s for group in groups.values() for s in group]


def assert_same(got: list[Sample], want: list[Sample]) -> None:
    """Field for field, plus what tuple equality does not see: offsets as written, epoch bits, number types."""
    assert len(got) == len(want)
    for i, (a, b) in enumerate(zip(got, want, strict=True)):
        assert tuple(a) == tuple(b), f"sample {i}"
        assert a.start.utcoffset() == b.start.utcoffset(), f"sample {i}: start offset"
        assert a.end.utcoffset() == b.end.utcoffset(), f"sample {i}: end offset"
        assert a.start.replace(tzinfo=None) == b.start.replace(tzinfo=None), f"sample {i}: start wall clock"
        assert a.end.replace(tzinfo=None) == b.end.replace(tzinfo=None), f"sample {i}: end wall clock"
        assert a.start_epoch.hex() == b.start_epoch.hex(), f"sample {i}: start_epoch"
        assert a.end_epoch.hex() == b.end_epoch.hex(), f"sample {i}: end_epoch"
        assert repr(a.value) == repr(b.value), f"sample {i}: value (type, sign of zero)"
        assert repr(a.components) == repr(b.components), f"sample {i}: components"
        assert a.timezone == b.timezone, f"sample {i}: timezone"
        got_local, want_local = local_times(a), local_times(b)
        assert got_local == want_local, f"sample {i}: local times"
        assert [t.utcoffset() for t in got_local] == [t.utcoffset() for t in want_local], f"sample {i}: local offsets"


@pytest.fixture
def client(redis: RedisServer) -> Iterator[redis_lib.Redis]:
    """A client of the session's Redis, emptied first (the stream keys are fixed names)."""
    with redis_lib.Redis.from_url(redis.url) as c:
        c.flushdb()
        yield c


# --- 1. real exports ------------------------------------------------------------------------------------------

@pytest.mark.skipif(not EXPORTS, reason=f"real Apple Health exports not found in {SAMPLES}")
@pytest.mark.parametrize("name", EXPORTS)
def test_real_export_round_trip(name: str) -> None:
    batches = [b for b in read_export(SAMPLES / name, PATIENT) if isinstance(b, SampleBatch)]
    assert batches, "every export here holds samples"
    total = data_bytes = 0
    for batch in batches:
        for part in split_samples(batch.samples):
            assert 0 < len(part) <= MAX_ENTRY_SAMPLES
            fields = encode_entry(PATIENT, part, timezone=batch.timezone, origin="healthkit", producer="test:host:1")
            assert fields[b"n"] == str(len(part)).encode()
            decoded = decode_entry(fields)
            assert (decoded.patient, decoded.timezone, decoded.origin, decoded.samples) == (
                PATIENT, batch.timezone, "healthkit", len(part))
            assert [(b.metric, b.timezone) for b in decoded.batches] == [(batch.metric, batch.timezone)]
            assert_same(decoded.batches[0].samples, list(part))
            total += len(part)
            data_bytes += len(fields[b"data"])
    assert total == sum(len(b.samples) for b in batches)
    if total >= 1_000:
        # measured on the five big files: 8.6 to 14.8 bytes a sample (zlib level 1 over the columns)
        assert data_bytes / total < 25, f"{data_bytes / total:.1f} bytes a sample"


# --- 2. arbitrary samples -------------------------------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROS = st.integers(int(-10 * 365.25 * 86400e6), int(130 * 365.25 * 86400e6))  # 1960 .. 2100, microseconds
OFFSETS = st.one_of(st.sampled_from([-12 * 60, -(9 * 60 + 30), -(3 * 60 + 30), 0, 5 * 60 + 30, 5 * 60 + 45,
                                     8 * 60 + 45, 12 * 60 + 45, 14 * 60]),
                    st.integers(-12 * 60, 14 * 60)).map(lambda minutes: timezone(timedelta(minutes=minutes)))
TEXT = st.text(max_size=12)
NAMES = st.text(min_size=1, max_size=12)
OPTIONAL = st.none() | TEXT
NUMBERS = st.one_of(st.integers(-(2 ** 63), 2 ** 63 - 1), st.floats(allow_nan=False, allow_infinity=False),
                    st.sampled_from([0, -0.0, -1, -72.5, 1e-300, 5e-324, 1.7976931348623157e308]))
ZONES = st.none() | st.sampled_from(["America/New_York", "Asia/Kathmandu", "Pacific/Kiritimati", "Pacific/Pago_Pago",
                                     "Australia/Lord_Howe", "Europe/London", "America/St_Johns"])
ORIGINS = st.sampled_from(["healthkit", "google_fit", "health_auto_export"]) | NAMES
DEVICES = st.none() | st.builds(DeviceInfo, OPTIONAL, OPTIONAL, OPTIONAL, OPTIONAL, OPTIONAL)
SOURCES = st.builds(SourceInfo, NAMES, OPTIONAL, DEVICES)


@st.composite
def any_sample(draw: st.DrawFn, entry_origin: str) -> Sample:
    start = (_EPOCH + timedelta(microseconds=draw(MICROS))).astimezone(draw(OFFSETS))
    shape = draw(st.sampled_from(["same", "equal", "equal_other_offset", "later"]))
    if shape == "same":
        end = start
    elif shape == "equal":
        end = start + timedelta(0)  # an equal instant, another object
    elif shape == "equal_other_offset":
        end = start.astimezone(draw(OFFSETS))
    else:
        end = (start + timedelta(microseconds=draw(st.integers(1, 40 * 86400 * 10 ** 6)))).astimezone(draw(OFFSETS))
    start_epoch, end_epoch, offset = epoch_times(start, end)
    return Sample(
        PATIENT, draw(st.sampled_from(["heart_rate", "steps", "blood_pressure", "sleep"]) | NAMES),
        draw(st.none() | NUMBERS), draw(OPTIONAL), draw(OPTIONAL), start, end, draw(SOURCES),
        draw(st.just(entry_origin) | ORIGINS), draw(TEXT), start_epoch, end_epoch,
        draw(st.just(offset) | st.integers(-12 * 3600, 14 * 3600)), draw(OPTIONAL),
        tuple(draw(st.lists(st.tuples(NAMES, NUMBERS), max_size=3))), draw(ZONES), draw(st.booleans()),
        draw(OPTIONAL))


@st.composite
def any_entry(draw: st.DrawFn) -> tuple[str, list[Sample]]:
    origin = draw(ORIGINS)
    return origin, draw(st.lists(any_sample(origin), min_size=1, max_size=25))


@settings(max_examples=250, deadline=None)
@given(any_entry(), ZONES, st.sampled_from(["value", "slot"]), st.text(max_size=20))
def test_arbitrary_samples_round_trip(entry: tuple[str, list[Sample]], zone: str | None, identity: str,
                                      producer: str) -> None:
    origin, samples = entry
    fields = encode_entry(PATIENT, samples, timezone=zone, origin=origin, producer=producer, identity=identity)
    decoded = decode_entry(fields)
    assert (decoded.patient, decoded.timezone, decoded.origin, decoded.producer, decoded.identity) == (
        PATIENT, zone, origin, producer, identity)
    assert decoded.samples == len(samples)
    assert all(b.timezone == zone and {s.metric for s in b.samples} == {b.metric} for b in decoded.batches)
    assert [b.metric for b in decoded.batches] == list(dict.fromkeys(s.metric for s in samples))
    assert_same([s for b in decoded.batches for s in b.samples], grouped(samples))


def test_negative_epoch_with_microseconds_and_sub_hour_offset() -> None:
    """One case by hand: 1965-07-04 06:07:08.000009 +05:45 is 00:22:08.000009 UTC, 1642 days before 1970."""
    nepal = timezone(timedelta(hours=5, minutes=45))
    start = datetime(1965, 7, 4, 6, 7, 8, 9, tzinfo=nepal)
    end = datetime(1965, 7, 4, 20, 22, 9, 500_000, tzinfo=timezone(timedelta(hours=-4)))  # a day later, -04:00
    s = sample(start, end, value=-3)
    [got] = decoded_samples(fields_of([s]))
    assert got.start_epoch == pytest.approx(-1642 * 86400 + 1328 + 9e-6, abs=1e-7)
    assert got.start_epoch.hex() == start.timestamp().hex() == s.start_epoch.hex()
    assert got.end_epoch == -1642 * 86400 + 86400 + 1329.5 == end.timestamp()
    assert got.start.utcoffset() == timedelta(hours=5, minutes=45) and got.start.microsecond == 9
    assert (got.start.hour, got.start.minute) == (6, 7)
    assert got.end.utcoffset() == timedelta(hours=-4) and got.end.microsecond == 500_000
    assert got.value == -3 and type(got.value) is int


def test_columns_that_say_nothing_are_left_out() -> None:
    s = sample(datetime(2024, 3, 10, 8, 15, tzinfo=NY))
    body = orjson.loads(zlib.decompress(fields_of([s, s._replace(value=None, code="asleep")])[b"data"]))
    assert not {"t1", "o1", "rid", "comp", "ue", "vc", "org"} & set(body)
    assert body["c"] == [None, "asleep"]
    assert body["metrics"] == ["heart_rate"] and body["m"] == [0, 0]


def test_encode_refuses_what_it_cannot_carry() -> None:
    good = sample(datetime(2024, 3, 10, 8, 15, tzinfo=NY))
    with pytest.raises(ValueError, match="one patient"):
        fields_of([good, good._replace(patient="Patient/other")])
    with pytest.raises(ValueError, match="identity"):
        fields_of([good], identity="latest")
    with pytest.raises(ValueError, match="timezone-aware"):
        fields_of([good._replace(start=datetime(2024, 3, 10, 8, 15))])


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_encode_refuses_non_finite_values(value: float) -> None:
    """JSON has no infinity: orjson writes null, which would decode as a sample without a value."""
    good = sample(datetime(2024, 3, 10, 8, 15, tzinfo=NY))
    with pytest.raises(ValueError, match="finite"):
        fields_of([good._replace(value=value)])
    with pytest.raises(ValueError, match="finite"):
        fields_of([good._replace(value=None, components=(("systolic", 120.0), ("diastolic", value)))])


# --- 3. decode errors -----------------------------------------------------------------------------------------

def good_entry() -> dict[bytes, bytes]:
    t = datetime(2024, 3, 10, 8, 15, tzinfo=NY)
    return fields_of([sample(t, value=SECRET), sample(t + timedelta(minutes=1), value=SECRET, metric="steps")])


def with_body(change: Any) -> dict[bytes, bytes]:
    fields = good_entry()
    body = orjson.loads(zlib.decompress(fields[b"data"]))
    change(body)
    fields[b"data"] = zlib.compress(orjson.dumps(body))
    return fields


def _drop(*names: bytes) -> dict[bytes, bytes]:
    fields = good_entry()
    for name in names:
        del fields[name]
    return fields


def _set(**changes: bytes) -> dict[bytes, bytes]:
    fields = good_entry()
    fields.update({k.encode(): v for k, v in changes.items()})
    return fields


BAD_ENTRIES: dict[str, tuple[str, Any]] = {
    "version 2": ("unknown_version", lambda: _set(v=b"2")),
    "version empty": ("unknown_version", lambda: _set(v=b"")),
    "no version": ("undecodable", lambda: _drop(b"v")),
    "no patient": ("undecodable", lambda: _drop(b"patient")),
    "no origin": ("undecodable", lambda: _drop(b"origin")),
    "no tz": ("undecodable", lambda: _drop(b"tz")),
    "no data": ("undecodable", lambda: _drop(b"data")),
    "patient not UTF-8": ("undecodable", lambda: _set(patient=b"Patient/\xff")),
    "patient without prefix": ("undecodable", lambda: _set(patient=b"123")),
    "patient prefix only": ("undecodable", lambda: _set(patient=b"Patient/")),
    "practitioner": ("undecodable", lambda: _set(patient=b"Practitioner/1")),
    "unknown identity": ("undecodable", lambda: _set(identity=b"latest")),
    "data not zlib": ("undecodable", lambda: _set(data=b"123.456 not zlib")),
    "data truncated": ("undecodable", lambda: _set(data=good_entry()[b"data"][:-8])),
    "data not JSON": ("undecodable", lambda: _set(data=zlib.compress(b"{123.456"))),
    "JSON a list": ("undecodable", lambda: _set(data=zlib.compress(b"[123.456]"))),
    "JSON a string": ("undecodable", lambda: _set(data=zlib.compress(b'"123.456"'))),
    "JSON other object": ("undecodable", lambda: _set(data=zlib.compress(b'{"v": [123.456]}'))),
    "a column missing": ("undecodable", lambda: with_body(lambda b: b.pop("t0"))),
    "value column longer": ("undecodable", lambda: with_body(lambda b: b["v"].append(SECRET))),
    "metric column shorter": ("undecodable", lambda: with_body(lambda b: b["m"].pop())),
    "optional column longer": ("undecodable", lambda: with_body(lambda b: b.update(rid=["a", "b", "c"]))),
    "metric index out of range": ("undecodable", lambda: with_body(lambda b: b["m"].__setitem__(1, 7))),
    "time not a number": ("undecodable", lambda: with_body(lambda b: b["t0"].__setitem__(0, "2024-03-10"))),
    "time out of range": ("undecodable", lambda: with_body(lambda b: b["t0"].__setitem__(0, 2 ** 62))),
    "offset out of range": ("undecodable", lambda: with_body(lambda b: b["o0"].__setitem__(0, 86400))),
    "n larger": ("undecodable", lambda: _set(n=b"3")),
    "n not a number": ("undecodable", lambda: _set(n=b"two")),
    "value a string": ("undecodable", lambda: with_body(lambda b: b["v"].__setitem__(0, "123.456"))),
    "value a list": ("undecodable", lambda: with_body(lambda b: b["v"].__setitem__(0, [SECRET]))),
    "value an object": ("undecodable", lambda: with_body(lambda b: b["v"].__setitem__(0, {"x": SECRET}))),
    "value a boolean": ("undecodable", lambda: with_body(lambda b: b["v"].__setitem__(0, True))),
    "component value a string": ("undecodable", lambda: with_body(
        lambda b: b.update(comp=[[["systolic", "123.456"]], None]))),
}


@pytest.mark.parametrize("case", BAD_ENTRIES)
def test_decode_errors(case: str) -> None:
    reason, make = BAD_ENTRIES[case]
    with pytest.raises(DecodeError) as caught:
        decode_entry(make())
    assert caught.value.reason == reason
    assert isinstance(caught.value, ValueError)
    assert "123.456" not in str(caught.value) and "123.456" not in repr(caught.value.args)
    assert PATIENT not in str(caught.value)


def test_good_entry_decodes() -> None:
    """The entry the error cases start from is itself good (so each case tests only its one change)."""
    assert [s.value for s in decoded_samples(good_entry())] == [SECRET, SECRET]
    assert [s.value for s in decoded_samples(_drop(b"n", b"producer", b"identity"))] == [SECRET, SECRET]


# --- 4. entries → work items ------------------------------------------------------------------------------------

def test_entry_items_one_work_item_per_metric_in_order() -> None:
    t = datetime(2024, 3, 10, 8, 15, tzinfo=NY)
    samples = [sample(t + timedelta(minutes=i), metric=m, value=float(i))
               for i, m in enumerate(["steps", "heart_rate", "steps", "heart_rate", "steps"])]
    fields = fields_of(samples, identity="slot", origin="google_fit", producer="poller:host:7")
    items = entry_items(StreamEntry(5, "wearfhir:in:5", "1700000000000-3", fields), metrics())
    assert all(isinstance(item, WorkItem) for item in items)
    assert [(i.batch.metric, [s.value for s in i.batch.samples]) for i in items] == [  # type: ignore[union-attr]
        ("steps", [0.0, 2.0, 4.0]), ("heart_rate", [1.0, 3.0])]
    for item in items:
        assert isinstance(item, WorkItem)
        assert (item.identity, item.origin, item.stream, item.entry_id, item.producer) == (
            "slot", "google_fit", "wearfhir:in:5", "1700000000000-3", "poller:host:7")
        assert (item.batch.patient, item.batch.timezone) == (PATIENT, "America/New_York")
        assert all(s.origin == "healthkit" for s in item.batch.samples)  # the samples' own origin is kept


def test_entry_items_unknown_metric_becomes_a_dead_letter() -> None:
    t = datetime(2024, 3, 10, 8, 15, tzinfo=NY)
    samples = [sample(t, metric="heart_rate"), sample(t, metric="not_a_metric"), sample(t, metric="not_a_metric")]
    fields = fields_of(samples)
    items = entry_items(StreamEntry(2, "wearfhir:in:2", "17-0", fields), {"heart_rate", "steps"})
    assert [type(i) for i in items] == [WorkItem, InputDeadLetter]
    work, letter = items
    assert isinstance(work, WorkItem) and isinstance(letter, InputDeadLetter)
    assert work.batch.metric == "heart_rate" and len(work.batch.samples) == 1
    assert (letter.reason, letter.stream, letter.entry_id, letter.producer, letter.patient, letter.metric,
            letter.samples) == ("unknown_metric", "wearfhir:in:2", "17-0", "test:host:1", PATIENT, "not_a_metric", 2)
    assert letter.fields == fields  # the whole entry, for a replay
    assert "not_a_metric" in letter.message and "72" not in letter.message


@pytest.mark.parametrize("case", ["version 2", "data not zlib", "value a string"])
def test_entry_items_undecodable_entry_is_one_dead_letter(case: str) -> None:
    reason, make = BAD_ENTRIES[case]
    fields = make()
    items = entry_items(StreamEntry(0, "wearfhir:in:0", "5-1", fields), metrics())
    assert len(items) == 1 and isinstance(items[0], InputDeadLetter)
    letter = items[0]
    assert (letter.reason, letter.stream, letter.entry_id, letter.producer) == (
        reason, "wearfhir:in:0", "5-1", "test:host:1")
    assert letter.fields == fields
    assert letter.message and "123.456" not in letter.message


# --- 5. the producer on Redis -----------------------------------------------------------------------------------

def test_shard_of_is_stable() -> None:
    # computed outside Python: printf '%s' Patient/123 | b2sum -l 64  → cd2134828168dab4 (mod 16 = 4, mod 7 = 3)
    assert hashlib.blake2b(b"Patient/123", digest_size=8).hexdigest() == "cd2134828168dab4"
    assert (shard_of("Patient/123", 16), shard_of("Patient/123", 7)) == (4, 3)
    assert (shard_of("Patient/example", 16), shard_of("Patient/example", 7)) == (7, 5)  # 29704030544c7ab7
    assert (shard_of("Patient/zoë", 16), shard_of("Patient/zoë", 7)) == (1, 1)  # UTF-8 bytes: ac1b51508f3e0181


def test_shard_of_spreads_patients() -> None:
    patients = [f"Patient/{i}" for i in range(1000)]
    shards = [shard_of(p, 16) for p in patients]
    assert shards == [int(hashlib.blake2b(p.encode(), digest_size=8).hexdigest(), 16) % 16 for p in patients]
    counts = Counter(shards)
    assert set(counts) == set(range(16))
    assert all(30 <= n <= 95 for n in counts.values()), counts  # 62.5 ± 4 standard deviations
    chi2 = sum((n - 62.5) ** 2 / 62.5 for n in counts.values())
    assert chi2 < 37.7  # χ² with 15 degrees of freedom, p = 0.001


def test_configured_shards_is_set_once(client: redis_lib.Redis) -> None:
    assert configured_shards(client, 8) == 8
    assert configured_shards(client) == 8
    assert configured_shards(client, 8) == 8
    with pytest.raises(ValueError, match="8 input shards, not 16"):
        configured_shards(client, 16)
    with pytest.raises(ValueError):
        StreamProducer(client, "test:host:1", shards=4)
    assert client.hget(CONFIG_KEY, "shards") == b"8"
    assert StreamProducer(client, "test:host:1").shards == 8


def test_configured_shards_default(client: redis_lib.Redis) -> None:
    assert configured_shards(client) == 16
    assert client.hget(CONFIG_KEY, "shards") == b"16"
    with pytest.raises(ValueError):
        configured_shards(client, 32)


@pytest.mark.parametrize("wanted", [0, -4])
def test_configured_shards_refuses_a_count_below_one(client: redis_lib.Redis, wanted: int) -> None:
    """`wearfhir worker --shards -4` on a fresh Redis must not store -4 (or the default) for good."""
    with pytest.raises(ValueError, match="at least 1"):
        configured_shards(client, wanted)
    assert client.hget(CONFIG_KEY, "shards") is None
    assert configured_shards(client, 5) == 5


def minute_samples(n: int, patient: str = PATIENT) -> list[Sample]:
    t = datetime(2024, 3, 10, 0, 0, tzinfo=NY)
    return [sample(t + timedelta(minutes=i), value=float(50 + i % 100), patient=patient) for i in range(n)]


def test_producer_cuts_entries_on_the_patients_stream(client: redis_lib.Redis) -> None:
    samples = minute_samples(2_500)
    producer = StreamProducer(client, "test:host:1", shards=16)
    producer.add(PATIENT, samples, timezone="America/New_York", origin="healthkit")
    assert client.keys("wearfhir:in:*") == []  # queued, not sent
    ids = producer.flush()
    assert producer.flush() == []
    key = stream_key(int(hashlib.blake2b(PATIENT.encode(), digest_size=8).hexdigest(), 16) % 16)
    assert client.keys("wearfhir:in:*") == [key.encode()]
    entries = client.xrange(key)
    assert [i.decode() for i, _ in entries] == ids and len(ids) == 3
    assert [f[b"n"] for _, f in entries] == [b"1000", b"1000", b"500"]
    assert all(f[b"producer"] == b"test:host:1" and f[b"v"] == b"1" for _, f in entries)
    assert_same([s for _, f in entries for s in decoded_samples(f)], samples)
    assert (producer.entries, producer.samples) == (3, 2_500)
    assert producer.bytes == sum(len(f[b"data"]) for _, f in entries) > 0


def test_producer_pipelines_and_keeps_ids(client: redis_lib.Redis) -> None:
    other = "Patient/example"  # shard 7 of 16 (see test_shard_of_is_stable); Patient/123 is shard 4
    producer = StreamProducer(client, "test:host:2", shards=16, pipeline_entries=2, keep_ids=True)
    producer.add("Patient/123", minute_samples(2_001, "Patient/123"), timezone=None, origin="healthkit",
                 identity="slot")
    assert client.xlen("wearfhir:in:4") == 2  # the pipeline was sent when it held two entries
    producer.add_all(other, [minute_samples(10, other), [], minute_samples(3, other)], timezone="Europe/Paris",
                     origin="google_fit")
    assert client.xlen("wearfhir:in:4") == 3 and client.xlen("wearfhir:in:7") == 1
    last = producer.flush()
    assert len(last) == 1 and client.xlen("wearfhir:in:7") == 2
    stored = [i.decode() for key in ("wearfhir:in:4", "wearfhir:in:7") for i, _ in client.xrange(key)]
    assert sorted(producer.ids) == sorted(stored) and producer.ids[-1] == last[0]
    assert (producer.entries, producer.samples) == (5, 2_014)
    first = client.xrange("wearfhir:in:4")[0][1]
    assert (first[b"identity"], first[b"tz"], first[b"origin"]) == (b"slot", b"", b"healthkit")
    paris = [decode_entry(f) for _, f in client.xrange("wearfhir:in:7")]
    assert [(d.patient, d.timezone, d.origin, d.samples) for d in paris] == [
        (other, "Europe/Paris", "google_fit", 10), (other, "Europe/Paris", "google_fit", 3)]


# --- 6. input dead letters --------------------------------------------------------------------------------------

def test_dead_letter_record() -> None:
    fields = good_entry()
    letter = InputDeadLetter("unknown_metric", "metric 'x' is unknown", "wearfhir:in:3", "9-0", "test:host:1",
                             PATIENT, "x", 2, fields=fields)
    record = letter.record()
    assert {k: record[k] for k in (b"reason", b"message", b"stream", b"entry", b"producer", b"patient", b"metric",
                                   b"samples")} == {
        b"reason": b"unknown_metric", b"message": b"metric 'x' is unknown", b"stream": b"wearfhir:in:3",
        b"entry": b"9-0", b"producer": b"test:host:1", b"patient": PATIENT.encode(), b"metric": b"x",
        b"samples": b"2"}
    assert re.fullmatch(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", record[b"at"])
    at = datetime.strptime(record[b"at"].decode(), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs(datetime.now(UTC) - at) < timedelta(minutes=1)
    assert {k[len(b"entry."):]: v for k, v in record.items() if k.startswith(b"entry.")} == fields


def test_dead_letters_on_redis_can_be_replayed(client: redis_lib.Redis) -> None:
    t = datetime(2024, 3, 10, 8, 15, tzinfo=NY)
    mixed = fields_of([sample(t, metric="heart_rate"), sample(t, metric="not_a_metric", value=SECRET)])
    client.xadd("wearfhir:in:1", mixed)  # type: ignore[arg-type]
    client.xadd("wearfhir:in:1", _set(v=b"2"))  # type: ignore[arg-type]
    read = [StreamEntry(1, "wearfhir:in:1", i.decode(), f) for i, f in client.xrange("wearfhir:in:1")]
    letters = [i for e in read for i in entry_items(e, metrics()) if isinstance(i, InputDeadLetter)]
    assert [dl.reason for dl in letters] == ["unknown_metric", "unknown_version"]
    assert write_input_dead_letters(client, letters) == 2
    assert write_input_dead_letters(client, []) == 0
    dead = client.xrange(INPUT_DEAD_LETTERS)
    assert len(dead) == 2
    for (_, record), entry in zip(dead, read, strict=True):
        assert record[b"entry"] == entry.entry_id.encode() and record[b"stream"] == b"wearfhir:in:1"
        assert record[b"message"] and b"123.456" not in record[b"message"]
        assert {k[len(b"entry."):]: v for k, v in record.items() if k.startswith(b"entry.")} == entry.fields
    assert dead[0][1][b"reason"] == b"unknown_metric" and dead[0][1][b"metric"] == b"not_a_metric"
    assert dead[1][1][b"reason"] == b"unknown_version"
    replay = {k[len(b"entry."):]: v for k, v in dead[0][1].items() if k.startswith(b"entry.")}
    assert [s.value for s in decoded_samples(replay)] == [72.0, SECRET]
