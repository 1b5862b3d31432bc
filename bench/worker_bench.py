"""Stream worker benchmark: throughput, latency, restart, memory and snapshot cost on a real Redis and FHIR server."""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import orjson
import psutil
import redis as redis_lib

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import bytewax.operators as op  # noqa: E402
from bytewax.dataflow import Dataflow  # noqa: E402
from bytewax.outputs import DynamicSink, StatelessSinkPartition  # noqa: E402
from bytewax.recovery import RecoveryConfig, init_db_dir  # noqa: E402
from bytewax.testing import run_main  # noqa: E402

from connectors.fhir.client import BundleResult  # noqa: E402
from connectors.fhir.deadletter import RedisDeadLetters  # noqa: E402
from connectors.fhir.target import FhirTarget, build_client  # noqa: E402
from connectors.fhir.worker_sink import LiveFhirWriter, _WorkerFhirPartition  # noqa: E402
from connectors.streams.codec import decode_entry, encode_entry  # noqa: E402
from connectors.streams.consumer import WorkItem, entry_items  # noqa: E402
from connectors.streams.producer import COMMITTED_KEY, CONFIG_KEY, shard_of, stream_key  # noqa: E402
from connectors.streams.source import RedisStreamSource, _StreamPartition  # noqa: E402
from flows.live_windows import LiveLogic  # noqa: E402
from flows.worker import get_flow  # noqa: E402
from mappers.batch import BatchMapper  # noqa: E402
from mappers.context import FhirContext  # noqa: E402
from mappers.ids import DEFAULT_IDENTIFIER_BASE  # noqa: E402
from mappers.sample import Sample, SourceInfo, epoch_times  # noqa: E402
from mappers.tables import metrics as metric_table  # noqa: E402
from tests.servers import fhir_server, free_port, redis_server  # noqa: E402
from wearfhir.settings import WorkerSettings  # noqa: E402
from wearfhir.worker_metrics import WorkerMetrics  # noqa: E402

USAGE = """\
python bench/worker_bench.py [--part throughput|snapshot|latency|restart|memory|all] [--samples 1000000]
    [--flush-every 2] [--latency-seconds 60] [--spot-configs 1000:500,250:500,1000:500:stub]
    [--dense-rate 50000] [--dense-bundle-sizes 500] [--restarts 5] [--restart-configs dense:10,dense:1]
    [--soak 600] [--memory-rate 20000]

throughput  in-process on a pre-filled backlog (16 shards, ~50 patients): a decode floor (source -> decode ->
            count), the worker writing to the test FHIR server, the worker with the FHIR writes stubbed
snapshot   the same backlog with and without recovery (in-process, epochs of --snapshot-epoch s)
latency    `bytewax.run flows.worker:flow -r DIR -s 10 -b 0` behind a recording proxy; a producer adds entries
            at a steady rate; XADD -> the transaction holding the entry's resources answered 200
restart    kill -9 under load -> the first new id in wearfhir:committed (per load:snapshot-seconds pair)
memory     RSS of the worker process vs the wearfhir_worker_samples_kept gauge over --soak seconds
all        every part but memory (~15 min); run memory on its own.
Results: bench/results/worker-DATE.json (worker-DATE-PART.json for one part) and a Markdown table on stdout.
"""

SHARDS = 16
RESULTS = HERE / "results"
ZONES = ("America/Phoenix", "Asia/Kolkata", "Asia/Tokyo", "UTC", "Asia/Kathmandu")  # no DST: shifts keep offsets
HR_SOURCE = SourceInfo("Apple Watch", "10.0", None)
STEP_SOURCE = SourceInfo("iPhone", "17.1", None)
METER = SourceInfo("Contour Next One", "3.2", None)
ACTIVE_HOURS = frozenset((7, 8, 9, 17, 18, 19))  # HR every 5 s (workouts, walks); every 5 min otherwise
SAMPLES_PER_DAY = 6 * 60 * 12 + 18 * 12 + 16 * 60  # HR active + HR at rest + steps 07:00-23:00: 5,496


# -- samples ----------------------------------------------------------------------------------------------------

def _sample(patient: str, metric: str, unit: str, vendor: str, source: SourceInfo, value: float, start: datetime,
            end: datetime, zone: str) -> Sample:
    first, last, offset = epoch_times(start, end)
    return Sample(patient, metric, value, None, unit, start, end, source, "healthkit", vendor, first, last, offset,
                  timezone=zone)


def heart_rate(patient: str, at: datetime, value: float, zone: str) -> Sample:
    return _sample(patient, "heart_rate", "/min", "HKQuantityTypeIdentifierHeartRate", HR_SOURCE, value, at, at, zone)


def steps(patient: str, start: datetime, seconds: float, value: float, zone: str) -> Sample:
    return _sample(patient, "steps", "{steps}", "HKQuantityTypeIdentifierStepCount", STEP_SOURCE, value, start,
                   start + timedelta(seconds=seconds), zone)


def glucose(patient: str, at: datetime, value: float, zone: str) -> Sample:
    return _sample(patient, "blood_glucose", "mg/dL", "HKQuantityTypeIdentifierBloodGlucose", METER, value, at, at,
                   zone)


def dense_days(patient: str, zone: str, end: datetime, count: int, rng: random.Random) -> list[Sample]:
    """``count`` samples of one patient ending before ``end``: HR every 5 s in 6 active hours a day and every 5 min
    otherwise, steps per minute 07:00-23:00 local, in time order (~5,500 samples a day)."""
    tz = ZoneInfo(zone)
    days = count / SAMPLES_PER_DAY
    t = (end - timedelta(days=days + 0.05)).astimezone(tz).replace(second=0, microsecond=0)
    out: list[Sample] = []
    minute = timedelta(minutes=1)
    while len(out) < count:
        hour = t.hour
        if hour in ACTIVE_HOURS:
            out.extend(heart_rate(patient, t + timedelta(seconds=s), float(rng.randint(90, 160)), zone)
                       for s in range(0, 60, 5))
        elif t.minute % 5 == 0:
            out.append(heart_rate(patient, t, float(rng.randint(52, 80)), zone))
        if 7 <= hour < 23:
            out.append(steps(patient, t, 60.0, float(rng.randint(0, 140)), zone))
        t += minute
    return out[:count]


def live_window(patient: str, zone: str, end: datetime, minutes: float, rng: random.Random) -> list[Sample]:
    """What a phone uploads after ``minutes`` offline: HR every 5 s and steps per minute up to ``end``."""
    tz = ZoneInfo(zone)
    start = (end - timedelta(minutes=minutes)).astimezone(tz).replace(microsecond=0)
    out: list[Sample] = []
    for k in range(int(minutes * 12)):
        at = start + timedelta(seconds=5 * k)
        out.append(heart_rate(patient, at, float(rng.randint(55, 150)), zone))
        if k % 12 == 0:
            out.append(steps(patient, at, 60.0, float(rng.randint(0, 140)), zone))
    return out


def dense_stream(patient: str, zone: str, end: datetime, seconds: float, n: int, rng: random.Random) -> list[Sample]:
    """``n`` samples spread over the ``seconds`` before ``end`` (90 % HR, 10 % steps): a synthetic dense stream
    far above one watch's rate, for memory per kept sample."""
    tz = ZoneInfo(zone)
    start = (end - timedelta(seconds=seconds)).astimezone(tz)
    step = seconds / n
    out: list[Sample] = []
    for k in range(n):
        at = start + timedelta(microseconds=round(k * step * 1e6))
        if k % 10 == 9:
            out.append(steps(patient, at, step, float(rng.randint(0, 3)), zone))
        else:
            out.append(heart_rate(patient, at, float(rng.randint(55, 150)), zone))
    return out


def spot_readings(patient: str, zone: str, end: datetime, seconds: float, n: int, rng: random.Random) -> list[Sample]:
    """``n`` blood-glucose readings (a spot metric: one raw Observation each) spread over ``seconds`` before ``end``."""
    tz = ZoneInfo(zone)
    start = (end - timedelta(seconds=seconds)).astimezone(tz)
    return [glucose(patient, start + timedelta(microseconds=round(k * seconds / n * 1e6)),
                    float(rng.randint(70, 220)), zone) for k in range(n)]


@dataclass
class Template:
    """An encoded entry whose times are moved by a whole number of microseconds (and its patient swapped): live
    entries at the rate a producer needs, checked against ``encode_entry`` of really moved samples once."""

    fields: dict[bytes, bytes]
    body: dict[str, Any]
    epochs: list[float]  # sample start epochs at shift 0
    ends: list[float]
    offsets: list[int]
    metrics: list[str]
    end: float  # the latest sample end (epoch seconds) at shift 0

    @classmethod
    def of(cls, samples: list[Sample], zone: str) -> Template:
        fields = encode_entry(samples[0].patient, samples, timezone=zone, origin="healthkit", producer="bench")
        body = orjson.loads(zlib.decompress(fields[b"data"]))
        return cls(fields, body, [s.start_epoch for s in samples], [s.end_epoch for s in samples],
                   [s.utc_offset for s in samples], [s.metric for s in samples], max(s.end_epoch for s in samples))

    def at(self, patient: str, shift_us: int) -> dict[bytes, bytes]:
        body = dict(self.body)
        body["t0"] = [t + shift_us for t in self.body["t0"]]
        if "t1" in body:
            body["t1"] = [None if t is None else t + shift_us for t in self.body["t1"]]
        return {**self.fields, b"patient": patient.encode(), b"data": zlib.compress(orjson.dumps(body), 1)}

    def ending_at(self, patient: str, when: float) -> tuple[dict[bytes, bytes], int]:
        shift = round((when - self.end) * 1e6)
        return self.at(patient, shift), shift

    def hour_windows(self, patient: str, shift_us: int) -> set[tuple[str, str, str]]:
        """(patient, metric, UTC start of the local hour) of every hour window the moved samples touch (an interval
        crossing an hour's end touches the next one too: its total is prorated)."""
        shift = shift_us / 1e6
        out = set()
        for first, last, o, m in zip(self.epochs, self.ends, self.offsets, self.metrics, strict=True):
            out.add((patient, m, (first + shift + o) // 3600 * 3600 - o))
            if last > first:
                out.add((patient, m, (last + shift + o - 1e-3) // 3600 * 3600 - o))
        return {(p, m, datetime.fromtimestamp(s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")) for p, m, s in out}


def check_template(template: Template, samples: list[Sample]) -> None:
    """The moved template decodes to the samples moved by the same amount (epochs within a microsecond)."""
    shift = 3_601_250_000  # 1 h 0.25 s: crosses a window edge, keeps microseconds
    moved = decode_entry(template.at("Patient/check", shift))
    got = [s for b in moved.batches for s in b.samples]
    want = [s for metric in dict.fromkeys(x.metric for x in samples) for s in samples if s.metric == metric]
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert abs(g.start_epoch - (w.start_epoch + shift / 1e6)) < 1e-6 and g.value == w.value, (g, w)
        assert abs(g.end_epoch - (w.end_epoch + shift / 1e6)) < 1e-6 and g.metric == w.metric, (g, w)
        assert g.utc_offset == w.utc_offset


# -- servers ----------------------------------------------------------------------------------------------------

@dataclass
class Env:
    tmp: Path
    redis_url: str
    fhir_url: str
    fhir_server: Any


@contextmanager
def servers() -> Iterator[Env]:
    with tempfile.TemporaryDirectory(prefix="worker-bench-") as tmp:
        base = Path(tmp)
        (base / "fhir").mkdir()
        with redis_server(base) as redis, fhir_server(base / "fhir") as fhir:
            yield Env(base, redis.url, fhir.base_url, fhir)


def reset_streams(url: str) -> None:
    client = redis_lib.Redis.from_url(url)
    client.flushdb()
    client.hset(CONFIG_KEY, "shards", str(SHARDS))
    client.close()


def put_patients(base: str, patients: list[str]) -> None:
    """Create the Patients (the server refuses references to missing ones, as HAPI does), 500 per transaction."""
    with httpx.Client(timeout=120) as client:
        for i in range(0, len(patients), 500):
            entries = [{"fullUrl": f"{base}/{p}", "resource": {"resourceType": "Patient", "id": p.split("/")[1]},
                        "request": {"method": "PUT", "url": p}} for p in patients[i:i + 500]]
            client.post(base, json={"resourceType": "Bundle", "type": "transaction", "entry": entries},
                        headers={"Prefer": "return=minimal"}).raise_for_status()


def entries_added(client: redis_lib.Redis) -> int:
    return sum(int(client.xlen(stream_key(k))) for k in range(SHARDS))


def counter(recorder: WorkerMetrics, name: str) -> float:
    return sum(s.value for m in recorder.registry.collect() for s in m.samples if s.name == name)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


# -- part 1: throughput (and 5: snapshot) -----------------------------------------------------------------------

def prefill(url: str, patients: int, total: int, seed: int = 7) -> dict[str, Any]:
    """``total`` dense samples of ``patients`` patients in entries of 1,000, patients interleaved as they would
    arrive live (each patient's entries in time order)."""
    rng = random.Random(seed)
    end = datetime.now(UTC) - timedelta(minutes=10)
    per = [total // patients + (1 if k < total % patients else 0) for k in range(patients)]
    names = [f"Patient/bench-{k:04d}" for k in range(patients)]
    queues: list[list[dict[bytes, bytes]]] = []
    started = time.perf_counter()
    for k, name in enumerate(names):
        zone = ZONES[k % len(ZONES)]
        samples = dense_days(name, zone, end, per[k], rng)
        queues.append([encode_entry(name, samples[i:i + 1000], timezone=zone, origin="healthkit", producer="bench")
                       for i in range(0, len(samples), 1000)])
    encode_s = time.perf_counter() - started
    client = redis_lib.Redis.from_url(url)
    pipe = client.pipeline(transaction=False)
    entries = 0
    for i in range(max(len(q) for q in queues)):
        for name, queue in zip(names, queues, strict=True):
            if i < len(queue):
                pipe.xadd(stream_key(shard_of(name, SHARDS)), queue[i])  # type: ignore[arg-type]
                entries += 1
        pipe.execute()
    client.close()
    return {"patients": names, "entries": entries, "samples": total, "encode_s": round(encode_s, 1),
            "days": round(per[0] / SAMPLES_PER_DAY, 2)}


class _CountPartition(StatelessSinkPartition[Any]):
    def __init__(self, state: dict[str, Any]) -> None:
        self._state = state

    def write_batch(self, items: list[Any]) -> None:
        state = self._state
        state["samples"] += sum(len(i.batch.samples) for i in items if isinstance(i, WorkItem))
        if state["samples"] >= state["expected"] and state["done"] is None:
            state["done"] = time.perf_counter()


class CountingSink(DynamicSink[Any]):
    """Counts decoded samples; notes when the last expected one arrived."""

    def __init__(self, state: dict[str, Any]) -> None:
        self._state = state

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _CountPartition:
        return _CountPartition(self._state)


def run_floor(env: Env, expected: int, epoch: float) -> dict[str, Any]:
    """Source → decode → count: the floor for reading and decoding everything, in this process."""
    table = metric_table()
    state: dict[str, Any] = {"samples": 0, "expected": expected, "done": None}
    flow = Dataflow("decode_floor")
    source = RedisStreamSource(env.redis_url, SHARDS, read_count=64, idle_backoff=0.05,
                               stop=lambda: state["done"] is not None)
    entries = op.input("read_streams", flow, source)
    items = op.flat_map("decode", entries, lambda entry: entry_items(entry, table))
    op.output("count", items, CountingSink(state))
    started = time.perf_counter()
    run_main(flow, epoch_interval=timedelta(seconds=epoch))
    if state["done"] is None:
        raise RuntimeError(f"the floor decoded {state['samples']} of {expected} samples")
    seconds = state["done"] - started
    return {"seconds": round(seconds, 2), "samples_per_s": round(expected / seconds)}


class TimedWriter(LiveFhirWriter):
    """The worker's writer, noting when each Bundle's transaction returned and each flush ended."""

    log: list[tuple[float, int]]
    handed: int
    sent: int
    last_sent: float
    last_write: float

    def _send(self, resources: list[dict[str, Any]]) -> None:
        super()._send(resources)
        with self._lock:
            self.sent += len(resources)
            self.last_sent = max(self.last_sent, time.perf_counter())

    def flush(self) -> None:
        super().flush()
        self.log.append((time.perf_counter(), self.sent))

    def write(self, resources: list[dict[str, Any]]) -> None:
        self.handed += len(resources)
        self.last_write = time.perf_counter()
        super().write(resources)


class NullWriter(TimedWriter):
    """The worker's writer without the FHIR server: Bundles are built and serialised (orjson), not sent."""

    def _transact(self, resources: list[dict[str, Any]]) -> BundleResult:
        orjson.dumps(self.client.bundle(resources))
        return BundleResult(created=len(resources), bundles=1)


def writer_factory(settings: WorkerSettings, kind: type[TimedWriter], writers: list[TimedWriter]
                   ) -> Callable[[], LiveFhirWriter]:
    def make() -> LiveFhirWriter:
        target = FhirTarget.model_validate(settings.fhir)
        writer = kind(build_client(target), RedisDeadLetters(settings.redis_url), target.bundle_size,
                      target.concurrency)
        writer.log, writer.handed, writer.sent, writer.last_write, writer.last_sent = [], 0, 0, 0.0, 0.0
        writers.append(writer)
        return writer

    return make


def run_worker_inprocess(env: Env, settings: WorkerSettings, kind: type[TimedWriter], epoch: float,
                         recovery: Path | None = None) -> dict[str, Any]:
    """The worker flow in this process on the pre-filled streams, until everything read has been flushed."""
    recorder = WorkerMetrics()
    writers: list[TimedWriter] = []
    client = redis_lib.Redis.from_url(env.redis_url)
    added = entries_added(client)
    client.close()
    marks: dict[str, float] = {"checked": 0.0}
    quiet = settings.flush_every + epoch + 1.5

    def stop() -> bool:  # called on every read of every partition: look at most every 20 ms
        now = time.perf_counter()
        if now - marks["checked"] < 0.02:
            return False
        marks["checked"] = now
        if "read" not in marks:
            read = sum(recorder.registry.get_sample_value("wearfhir_worker_entries_read_total", {"shard": str(k)})
                       or 0 for k in range(SHARDS))
            if read >= added:
                marks["read"] = now
            return False
        handed = sum(w.handed for w in writers)
        if handed != marks.get("handed"):
            marks["handed"], marks["changed"] = handed, now
        return now - marks["read"] > quiet and now - marks["changed"] > epoch + 1.0

    flow = get_flow(settings, recorder=recorder, make_writer=writer_factory(settings, kind, writers), stop=stop)
    started = time.perf_counter()
    config = None
    if recovery is not None:
        recovery.mkdir(parents=True)
        init_db_dir(recovery, 1)
        config = RecoveryConfig(str(recovery))
    run_main(flow, epoch_interval=timedelta(seconds=epoch), recovery_config=config)
    total = sum(w.sent for w in writers)
    end = max((w.last_sent for w in writers), default=started)  # the last Bundle's transaction returned
    samples = counter(recorder, "wearfhir_worker_samples_in_total")
    flushes = sum(len(w.log) for w in writers)
    return {"seconds": round(end - started, 2), "read_s": round(marks["read"] - started, 2),
            "last_output_s": round(max((w.last_write for w in writers), default=started) - started, 2),
            "samples": int(samples), "samples_per_s": round(samples / (end - started)), "resources": total,
            "windows": int(counter(recorder, "wearfhir_worker_windows_emitted_total")), "sink_flushes": flushes}


def bench_settings(env: Env, fhir_url: str | None = None, **overrides: Any) -> WorkerSettings:
    values: dict[str, Any] = {"redis_url": env.redis_url, "fhir": {"url": fhir_url or env.fhir_url},
                              "raw": "spot", "shards": SHARDS, "idle_backoff": 0.05, "horizon": 7 * 86400.0}
    values.update(overrides)
    return WorkerSettings.model_validate(values)


def part_throughput(env: Env, args: argparse.Namespace, results: dict[str, Any]) -> list[list[str]]:
    reset_streams(env.redis_url)
    info = prefill(env.redis_url, args.patients, args.samples)
    put_patients(env.fhir_url, info["patients"])
    print(f"prefilled {info['entries']:,} entries ({info['samples']:,} samples, {args.patients} patients, "
          f"{info['days']} days each; encoding {info['encode_s']} s)", flush=True)
    epoch = args.epoch
    floor = run_floor(env, args.samples, epoch)
    print("floor", floor, flush=True)
    settings = bench_settings(env, flush_every=args.flush_every)
    worker = run_worker_inprocess(env, settings, TimedWriter, epoch)
    print("worker + FHIR", worker, flush=True)
    null = run_worker_inprocess(env, settings, NullWriter, epoch)
    print("worker, no FHIR", null, flush=True)
    results["throughput"] = {"prefill": {k: v for k, v in info.items() if k != "patients"}, "epoch_s": epoch,
                             "flush_every_s": args.flush_every, "floor": floor, "worker_fhir": worker,
                             "worker_no_fhir": null}
    f = floor["samples_per_s"]

    def rate(run: dict[str, Any]) -> str:
        return (f"{run['samples_per_s']:,} samples/s to the last write ({run['seconds']} s); everything read at "
                f"{run['read_s']} s ({args.samples / run['read_s']:,.0f}/s)")

    return [
        ["throughput: decode floor (source → decode → count)", f"{f:,} samples/s ({floor['seconds']} s)", "—", "—"],
        [f"throughput: worker → FHIR server (b), flush_every {args.flush_every:g} s, {worker['resources']:,} "
         "summaries written", rate(worker), "≥ 250k samples/s", f"{worker['samples_per_s'] / f:.2f}× floor"],
        ["throughput: worker, FHIR writes stubbed (c)", rate(null), "≥ 250k samples/s",
         f"{null['samples_per_s'] / f:.2f}× floor"],
    ]


class SnapshotTimer:
    """Wall time spent in the Python side of snapshots (keys, input partitions, sink), by monkeypatching; keeps
    each key's last snapshot so that pickling them (what recovery adds per epoch) can be timed afterwards."""

    def __init__(self) -> None:
        self.seconds = {"keys": 0.0, "input": 0.0, "sink": 0.0}
        self.calls = {"keys": 0, "input": 0, "sink": 0}
        self.states: dict[int, Any] = {}
        self._saved: list[tuple[Any, Callable[..., Any]]] = []

    def pickling(self) -> tuple[float, int]:
        """(best of 3 seconds, bytes) to pickle every key's last snapshot, one ``pickle.dumps`` per key."""
        import pickle

        best, size = float("inf"), 0
        for _ in range(3):
            t = time.perf_counter()
            size = sum(len(pickle.dumps(state)) for state in self.states.values())
            best = min(best, time.perf_counter() - t)
        return best, size

    def __enter__(self) -> SnapshotTimer:
        for kind, cls in (("keys", LiveLogic), ("input", _StreamPartition), ("sink", _WorkerFhirPartition)):
            original = cls.snapshot
            self._saved.append((cls, original))

            def timed(obj: Any, _original: Callable[..., Any] = original, _kind: str = kind) -> Any:
                t = time.perf_counter()
                try:
                    state = _original(obj)
                finally:
                    self.seconds[_kind] += time.perf_counter() - t
                    self.calls[_kind] += 1
                if _kind == "keys":
                    self.states[id(obj)] = state
                return state

            setattr(cls, "snapshot", timed)  # noqa: B010  # a class attribute swapped for the run
        return self

    def __exit__(self, *exc: object) -> None:
        for cls, original in self._saved:
            setattr(cls, "snapshot", original)  # noqa: B010


def snapshot_sizes(recovery: Path) -> dict[str, Any]:
    """Bytes of the stored snapshots per step (what is left after garbage collection: the last epochs)."""
    import sqlite3

    out: dict[str, Any] = {}
    for db in recovery.glob("part-*.sqlite3"):
        with sqlite3.connect(db) as conn:
            rows = conn.execute("SELECT step_id, snap_epoch, COUNT(*), SUM(LENGTH(ser_change)) FROM snaps "
                                "GROUP BY step_id, snap_epoch").fetchall()
        for step, epoch, count, size in rows:
            out.setdefault(step.rsplit(".", 1)[-1], []).append({"epoch": epoch, "keys": count, "bytes": size or 0})
    return out


def part_snapshot(env: Env, args: argparse.Namespace, results: dict[str, Any]) -> list[list[str]]:
    """The throughput part's backlog read by the worker without FHIR writes, with and without recovery, alternated
    (twice each). Without recovery Bytewax still snapshots at each epoch (the sink flushes, keys copy their state);
    recovery adds pickling each touched key's state and writing it to SQLite. The cost per snapshot is the extra
    time to read the backlog over the snapshots taken meanwhile; its share of an epoch at -s 10 follows."""
    if "throughput" not in results:  # else the streams still hold its samples (the flows only read them)
        reset_streams(env.redis_url)
        prefill(env.redis_url, args.patients, args.samples)
    settings = bench_settings(env, flush_every=args.flush_every)
    epoch = args.snapshot_epoch
    runs: dict[str, list[dict[str, Any]]] = {"no recovery": [], "recovery": []}
    for _ in range(2):
        for name in ("no recovery", "recovery"):
            recovery = env.tmp / f"recovery-{time.time_ns()}" if name == "recovery" else None
            with SnapshotTimer() as timer:
                run = run_worker_inprocess(env, settings, NullWriter, epoch, recovery)
            run["python_snapshot_s"] = {k: round(v, 3) for k, v in timer.seconds.items()}
            if recovery is not None:
                run["stored"] = snapshot_sizes(recovery)
            seconds, size = timer.pickling()
            run["pickle_all_keys"] = {"keys": len(timer.states), "seconds": round(seconds, 3), "bytes": size}
            runs[name].append(run)
            print(f"epoch {epoch:g} s, {name}", run, flush=True)
    base = statistics.mean(r["read_s"] for r in runs["no recovery"])
    rec = statistics.mean(r["read_s"] for r in runs["recovery"])
    snapshots = rec // epoch  # epoch ends while the backlog was being read
    per = (rec - base) / max(1.0, snapshots)
    pickled = min((r["pickle_all_keys"] for r in runs["recovery"] + runs["no recovery"]), key=lambda p: p["seconds"])
    mb = pickled["bytes"] / 2 ** 20
    results["snapshot"] = {"epoch_s": epoch, "runs": runs, "read_s_no_recovery": round(base, 2),
                           "read_s_recovery": round(rec, 2), "snapshots_while_reading": snapshots,
                           "extra_s_per_snapshot": round(per, 3), "pickle_final_state": pickled,
                           "pickle_ms_per_mb": round(pickled["seconds"] * 1000 / mb, 2),
                           "pickle_share_of_10s_epoch": round(pickled["seconds"] / 10, 4)}
    return [
        [f"snapshot: reading the {args.samples:,}-sample backlog (no FHIR writes), epoch {epoch:g} s, mean of 2",
         f"{base:.2f} s without recovery, {rec:.2f} s with ({per:+.3f} s per snapshot, {snapshots:.0f} snapshots)",
         "—", f"{base / rec:.2f}× the speed"],
        [f"snapshot cost at the end of the backlog: pickling every key's state ({pickled['keys']} keys, all touched "
         "in an epoch under this load)", f"{pickled['seconds']:.3f} s for {mb:,.1f} MB "
         f"({pickled['seconds'] * 1000 / mb:.1f} ms per MB)", "≤ 10 % of an epoch",
         f"{pickled['seconds'] / 10:.1%} of a 10-s epoch"],
    ]


# -- recording proxy and worker processes -----------------------------------------------------------------------

class RecordingProxy:
    """A minimal HTTP proxy in front of the FHIR server that notes, for each transaction answered 200, when the
    answer came back and the request Bundle (parsed after the run). ``stub``: transactions are answered at once
    (every entry 201) and not forwarded: the worker's own latency, without the test server's."""

    def __init__(self, upstream: str, stub: bool = False) -> None:
        self.upstream = upstream.rstrip("/")
        self.commits: list[tuple[float, bytes]] = []
        self._parsed = 0
        self._ids: dict[str, float] = {}
        self._hours: dict[tuple[str, str, str], float] = {}
        self._local = threading.local()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = self.path.split("/fhir", 1)[1] if self.path.startswith("/fhir") else self.path
                transaction = self.command == "POST" and path in ("", "/")
                if stub and transaction:
                    entries = len(orjson.loads(body).get("entry", []))
                    content = orjson.dumps({"resourceType": "Bundle", "type": "transaction-response",
                                            "entry": [{"response": {"status": "201 Created"}}] * entries})
                    proxy.commits.append((time.time(), body))
                    status, out_headers = 200, [("Content-Type", "application/fhir+json")]
                else:
                    headers = {k: v for k, v in self.headers.items()
                               if k.lower() not in ("host", "content-length", "connection", "accept-encoding")}
                    response = proxy.client().request(self.command, proxy.upstream + path, content=body,
                                                      headers=headers)
                    if transaction and response.status_code == 200:
                        proxy.commits.append((time.time(), body))
                    status, content = response.status_code, response.content
                    out_headers = [(k, v) for k, v in response.headers.items() if k.lower() not in
                                   ("content-length", "transfer-encoding", "connection", "content-encoding")]
                self.send_response(status)
                for k, v in out_headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_PUT = _forward

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/fhir"

    def client(self) -> httpx.Client:
        found = getattr(self._local, "client", None)
        if found is None:
            found = self._local.client = httpx.Client(timeout=300)
        return found

    def first_commits(self) -> tuple[dict[str, float], dict[tuple[str, str, str], float]]:
        """Resource id → first commit time; (patient, metric, hour label) → first commit of that hour summary."""
        end = len(self.commits)
        for at, body in self.commits[self._parsed:end]:
            for entry in orjson.loads(body).get("entry", []):
                resource = entry["resource"]
                rid = resource["id"]
                if at < self._ids.get(rid, float("inf")):
                    self._ids[rid] = at
                for ident in resource.get("identifier", []):
                    parts = str(ident.get("value", "")).split("|")
                    if len(parts) == 5 and parts[2] == "hour":
                        key = (parts[0], parts[1], parts[3])
                        if at < self._hours.get(key, float("inf")):
                            self._hours[key] = at
        self._parsed = end
        return self._ids, self._hours

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class WorkerProcess:
    """``python -m bytewax.run flows.worker:flow -r DIR -s S -b 0`` with the settings as JSON in the environment."""

    def __init__(self, settings: WorkerSettings, recovery: Path, snapshot_s: int, log: Path) -> None:
        data = settings.model_dump(mode="json")
        self.env = dict(os.environ, PYTHONPATH=str(ROOT), WEARFHIR_WORKER_SETTINGS=json.dumps(data),
                        WEARFHIR_LOG_LEVEL="WARNING")
        self.recovery = recovery
        recovery.mkdir(parents=True, exist_ok=True)
        init_db_dir(recovery, 1)
        self.command = [sys.executable, "-m", "bytewax.run", "flows.worker:flow", "-r", str(recovery), "-s",
                        str(snapshot_s), "-b", "0"]
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        with self.log.open("ab") as out:
            started = time.perf_counter()
            self.proc = subprocess.Popen(self.command, env=self.env, cwd=self.recovery.parent, stdout=out,
                                         stderr=subprocess.STDOUT)
        return started

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def drain(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill()


class PacedProducer(threading.Thread):
    """XADDs entries at a fixed rate (entries/s) until ``seconds`` pass or ``stop`` is set; notes each XADD time.

    ``make(k, now)`` returns (patient, fields, info) for the k-th entry, its samples ending at ``now``."""

    def __init__(self, url: str, make: Callable[[int, float], tuple[str, dict[bytes, bytes], Any]], rate: float,
                 seconds: float) -> None:
        super().__init__(daemon=True)
        self.url, self.make, self.rate, self.seconds = url, make, rate, seconds
        self.sent: list[tuple[float, Any]] = []
        self.stop_event = threading.Event()
        self.behind = 0.0  # the most the producer fell behind its schedule (s)
        self.elapsed = 0.0

    def run(self) -> None:
        client = redis_lib.Redis.from_url(self.url)
        started = time.time()
        k = 0
        while not self.stop_event.is_set():
            planned = started + k / self.rate
            if planned - started >= self.seconds:
                break
            now = time.time()
            if planned > now:
                time.sleep(planned - now)
            else:
                self.behind = max(self.behind, now - planned)
            patient, fields, info = self.make(k, time.time())
            at = time.time()
            client.xadd(stream_key(shard_of(patient, SHARDS)), fields)  # type: ignore[arg-type]
            self.sent.append((at, info))
            k += 1
        self.elapsed = time.time() - started
        client.close()


class CpuMeter:
    """CPU seconds of the worker, the FHIR server, Redis and this process over a stretch of wall time."""

    def __init__(self, worker_pid: int) -> None:
        me = psutil.Process()
        self.procs = {"worker": psutil.Process(worker_pid), "bench (producer, proxy)": me}
        for child in me.children(recursive=True):
            try:
                line = " ".join(child.cmdline())
            except psutil.Error:
                continue
            if "uvicorn" in line:
                self.procs["FHIR server"] = child
            elif "redis-server" in line:
                self.procs["redis"] = child
        self.started = time.monotonic()
        self.before = {name: self._cpu(p) for name, p in self.procs.items()}

    @staticmethod
    def _cpu(proc: psutil.Process) -> float:
        try:
            t = proc.cpu_times()
            return t.user + t.system
        except psutil.Error:
            return 0.0

    def shares(self) -> dict[str, float]:
        """Share of one core used by each process since the meter started."""
        wall = time.monotonic() - self.started
        return {name: round((self._cpu(p) - self.before[name]) / wall, 2) for name, p in self.procs.items()}


def wait_for(check: Callable[[], Any], what: str, timeout: float, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(every)
    raise TimeoutError(f"timed out waiting for {what}")


def committed(url: str) -> dict[bytes, bytes]:
    client = redis_lib.Redis.from_url(url)
    try:
        return dict(client.hgetall(COMMITTED_KEY))  # type: ignore[arg-type]
    finally:
        client.close()


# -- part 2: latency --------------------------------------------------------------------------------------------

def stream_maker(patients: list[str], build: Callable[[str], list[Sample]]
                 ) -> Callable[[int, float], tuple[str, dict[bytes, bytes], Any]]:
    """Entry k goes to patient k mod P and holds ``build(zone)``'s samples moved to end now: with entries at a
    steady rate, each covers its patient's time since that patient's previous entry (live, never repeated)."""
    templates = {}
    for zone in ZONES:
        samples = build(zone)
        templates[zone] = Template.of(samples, zone)
        check_template(templates[zone], samples)

    def make(k: int, now: float) -> tuple[str, dict[bytes, bytes], Any]:
        i = k % len(patients)
        fields, _ = templates[ZONES[i % len(ZONES)]].ending_at(patients[i], now - 0.001)
        return patients[i], fields, fields

    return make


def spot_maker(patients: list[str], per_entry: int, rate_samples: float, rng: random.Random
               ) -> Callable[[int, float], tuple[str, dict[bytes, bytes], Any]]:
    """Entries of ``per_entry`` glucose readings (raw Observations), ``rate_samples`` readings/s in all."""
    interval = len(patients) * per_entry / rate_samples
    return stream_maker(patients, lambda zone: spot_readings("Patient/t", zone, datetime.now(UTC), interval,
                                                             per_entry, rng))


def dense_maker(patients: list[str], rate_samples: float, rng: random.Random
                ) -> Callable[[int, float], tuple[str, dict[bytes, bytes], Any]]:
    """Entries of 1,000 dense samples (HR and steps: summaries only), ``rate_samples`` samples/s in all."""
    interval = len(patients) * 1000 / rate_samples
    return stream_maker(patients, lambda zone: dense_stream("Patient/t", zone, datetime.now(UTC), interval, 1000,
                                                            rng))


def latency_spot(env: Env, args: argparse.Namespace, rate: float, bundle_size: int, stub: bool = False
                 ) -> dict[str, Any]:
    reset_streams(env.redis_url)
    rng = random.Random(3)
    patients = [f"Patient/spot-{k:03d}" for k in range(args.spot_patients)]
    put_patients(env.fhir_url, patients)
    proxy = RecordingProxy(env.fhir_url, stub=stub)
    settings = bench_settings(env, fhir={"url": proxy.base_url, "bundle_size": bundle_size})
    worker = WorkerProcess(settings, env.tmp / f"rec-spot-{rate:g}-{bundle_size}-{stub}", 10,
                           env.tmp / "worker-spot.log")
    try:
        worker.start()
        time.sleep(args.warmup)  # imports and the first epoch
        per_entry = 50
        producer = PacedProducer(env.redis_url, spot_maker(patients, per_entry, rate, rng), rate / per_entry,
                                 args.latency_seconds)
        assert worker.proc is not None
        cpu = CpuMeter(worker.proc.pid)
        producer.start()
        producer.join()
        shares = cpu.shares()
        mapper = BatchMapper(metric_table(), FhirContext(identifier_base=DEFAULT_IDENTIFIER_BASE), "spot")
        wanted = []
        for at, fields in producer.sent:
            ids = [r["id"] for b in decode_entry(fields).batches for r in mapper(b).resources
                   if r["resourceType"] == "Observation"]
            wanted.append((at, ids))
        every = {i for _, ids in wanted for i in ids}

        def landed() -> bool:
            return every <= proxy.first_commits()[0].keys()

        try:
            wait_for(landed, "every raw Observation to land", 60 + args.latency_seconds, every=1.0)
        except TimeoutError:
            pass
    finally:
        worker.drain()
        proxy.close()
    first, _ = proxy.first_commits()
    timeline = [(at, max(first[i] for i in ids) - at) for at, ids in wanted if all(i in first for i in ids)]
    missing = sum(1 for _, ids in wanted if not all(i in first for i in ids))
    achieved = round(len(producer.sent) * per_entry / producer.elapsed)
    return {"cpu_share": shares, **latency_stats(timeline, producer), "rate_samples_per_s": rate,
            "achieved_per_s": achieved,
            "producer_behind_s": round(producer.behind, 3), "entries": len(wanted), "samples_per_entry": per_entry,
            "patients": len(patients), "bundle_size": bundle_size, "stub_server": stub, "missing_entries": missing}


def latency_stats(timeline: list[tuple[float, float]], producer: PacedProducer) -> dict[str, Any]:
    """Percentiles over every entry, and over the entries added before the last 10 s of load (those after it wait
    for the next snapshot to send a partial Bundle: no later entries fill it); the timeline, 1 s buckets."""
    end = max((at for at, _ in producer.sent), default=0.0)
    start = min((at for at, _ in producer.sent), default=0.0)
    every = [lat for _, lat in timeline]
    steady = [lat for at, lat in timeline if at < end - 10.0]
    buckets: dict[int, list[float]] = {}
    for at, lat in timeline:
        buckets.setdefault(int(at - start), []).append(lat)
    out: dict[str, Any] = {}
    for name, values in (("", every), ("steady_", steady)):
        for q in (50, 95, 99):
            out[f"{name}p{q}_ms"] = round(pct(values, q) * 1000) if values else None
        out[f"{name}max_ms"] = round(max(values) * 1000) if values else None
    out["per_second_max_ms"] = [round(max(v) * 1000) for _, v in sorted(buckets.items())]
    return out


def latency_dense(env: Env, args: argparse.Namespace, bundle_size: int) -> dict[str, Any]:
    """Each entry: a phone's last 77 minutes (HR every 5 s, steps per minute; 1,000 samples) of a patient seen for
    the first time, so the first committed version of each hour summary it touches includes its samples."""
    reset_streams(env.redis_url)
    rng = random.Random(4)
    rate_entries = args.dense_rate / 1000
    count = int(rate_entries * args.latency_seconds) + 10
    patients = [f"Patient/dense{bundle_size}-{k:05d}" for k in range(count)]
    put_patients(env.fhir_url, patients)
    templates = {}
    for zone in ZONES:
        samples = live_window("Patient/t", zone, datetime.now(UTC), 1000 / 13, rng)[:1000]
        templates[zone] = Template.of(samples, zone)
        check_template(templates[zone], samples)

    def make(k: int, now: float) -> tuple[str, dict[bytes, bytes], Any]:
        patient = patients[k]
        template = templates[ZONES[k % len(ZONES)]]
        fields, shift = template.ending_at(patient, now - 1.0)
        return patient, fields, (template, patient, shift)

    proxy = RecordingProxy(env.fhir_url)
    settings = bench_settings(env, fhir={"url": proxy.base_url, "bundle_size": bundle_size}, flush_every=1.0)
    worker = WorkerProcess(settings, env.tmp / f"rec-dense-{bundle_size}", 10, env.tmp / "worker-dense.log")
    try:
        worker.start()
        time.sleep(args.warmup)
        producer = PacedProducer(env.redis_url, make, rate_entries, args.latency_seconds)
        assert worker.proc is not None
        cpu = CpuMeter(worker.proc.pid)
        producer.start()
        producer.join()
        shares = cpu.shares()
        wanted = [(at, template.hour_windows(patient, shift)) for at, (template, patient, shift) in producer.sent]
        every = {w for _, ws in wanted for w in ws}
        try:
            wait_for(lambda: every <= proxy.first_commits()[1].keys(), "every hour summary", 60 + args.latency_seconds,
                     every=1.0)
        except TimeoutError:
            pass
    finally:
        worker.drain()
        proxy.close()
    _, hours = proxy.first_commits()
    timeline = [(at, max(hours[w] for w in ws) - at) for at, ws in wanted if all(w in hours for w in ws)]
    missing = sum(1 for _, ws in wanted if not all(w in hours for w in ws))
    achieved = round(len(producer.sent) * 1000 / producer.elapsed)
    return {"cpu_share": shares, **latency_stats(timeline, producer), "rate_samples_per_s": args.dense_rate,
            "achieved_per_s": achieved,
            "producer_behind_s": round(producer.behind, 3), "entries": len(wanted), "flush_every_s": 1.0,
            "missing_entries": missing}


def part_latency(env: Env, args: argparse.Namespace, results: dict[str, Any]) -> list[list[str]]:
    rows = []
    spot, dense = {}, {}
    for config in args.spot_configs:
        rate, size, *mode = config.split(":")
        stub = mode == ["stub"]
        spot[config] = run = latency_spot(env, args, float(rate), int(size), stub)
        print("latency spot", run, flush=True)
        server = "a stub answering every transaction at once" if stub else "the test FHIR server"
        rows.append([f"latency XADD → committed, spot, {float(rate):,.0f} samples/s, -s 10, Bundles of {size}, to "
                     f"{server} (p50 / p95 / p99; steady: without the last 10 s)",
                     f"{run['p50_ms']:,} / {run['p95_ms']:,} / {run['p99_ms']:,} ms; steady p99 "
                     f"{run['steady_p99_ms']:,} ms; worker {run['cpu_share']['worker']:.0%}, FHIR server "
                     f"{run['cpu_share'].get('FHIR server', 0):.0%} of a core",
                     "p99 ≤ 500 ms", f"{run['p99_ms'] / 500:.1f}× target"])
    for size in args.dense_bundle_sizes:
        dense[size] = run = latency_dense(env, args, size)
        print("latency dense", run, flush=True)
        rows.append([f"latency XADD → hour summary committed, dense, {args.dense_rate:,.0f} samples/s, flush_every "
                     f"1 s, -s 10, Bundles of {size}", f"{run['p50_ms']:,} / {run['p95_ms']:,} / {run['p99_ms']:,} ms;"
                     f" steady p99 {run['steady_p99_ms']:,} ms; worker {run['cpu_share']['worker']:.0%} of a core",
                     "p99 ≤ 2 s", f"{run['p99_ms'] / 2000:.1f}× target"])
    results["latency"] = {"spot": spot, "dense": dense, "snapshot_s": 10}
    return rows


# -- part 3: restart --------------------------------------------------------------------------------------------

def part_restart(env: Env, args: argparse.Namespace, results: dict[str, Any]) -> list[list[str]]:
    rows = []
    results["restart"] = {}
    for config in args.restart_configs:
        load, snap = config.split(":")[0], int(config.split(":")[1])
        reset_streams(env.redis_url)
        rng = random.Random(5)
        patients = [f"Patient/restart-{load}-{k:03d}" for k in range(args.spot_patients)]
        put_patients(env.fhir_url, patients)
        if load == "spot":
            producer = PacedProducer(env.redis_url, spot_maker(patients, 50, args.restart_rate, rng),
                                     args.restart_rate / 50, 10 ** 9)
        else:
            producer = PacedProducer(env.redis_url, dense_maker(patients, args.restart_rate, rng),
                                     args.restart_rate / 1000, 10 ** 9)
        settings = bench_settings(env)
        worker = WorkerProcess(settings, env.tmp / f"rec-restart-{load}-{snap}", snap, env.tmp / "worker-restart.log")
        times = []
        producer.start()
        try:
            worker.start()
            wait_for(lambda: committed(env.redis_url), "a first committed id", 120)
            for _ in range(args.restarts):
                time.sleep(rng.uniform(3.0, 6.0))
                worker.kill()
                before = committed(env.redis_url)
                started = worker.start()
                def moved(b: dict[bytes, bytes] = before) -> bool:
                    return any(b.get(k) != v for k, v in committed(env.redis_url).items())

                wait_for(moved, "a new committed id", 300)
                times.append(time.perf_counter() - started)
                print(f"restart {load} -s {snap}: first new committed id after {times[-1]:.2f} s", flush=True)
        finally:
            producer.stop_event.set()
            worker.drain()
            producer.join()
        results["restart"][config] = {"seconds": [round(t, 2) for t in times], "median_s":
                                      round(statistics.median(times), 2), "max_s": round(max(times), 2),
                                      "load": load, "snapshot_s": snap, "load_samples_per_s": args.restart_rate}
        what = "spot (raw Observations)" if load == "spot" else "dense (summaries only)"
        rows.append([f"restart (kill -9 → first new committed id), -s {snap}, {args.restart_rate:,.0f} samples/s "
                     f"{what}, {len(times)} kills", f"median {statistics.median(times):.2f} s, max {max(times):.2f} s",
                     "≤ 5 s", f"{max(times) / 5:.2f}× target (max)"])
    return rows


# -- part 4: memory ---------------------------------------------------------------------------------------------

def scrape(port: int) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[s.name] = out.get(s.name, 0.0) + s.value
    return out


def part_memory(env: Env, args: argparse.Namespace, results: dict[str, Any]) -> list[list[str]]:
    reset_streams(env.redis_url)
    rng = random.Random(6)
    patients = [f"Patient/mem-{k:04d}" for k in range(args.memory_patients)]
    put_patients(env.fhir_url, patients)
    make = dense_maker(patients, args.memory_rate, rng)

    port = free_port()
    grace = {"hour": 60.0, "day": 60.0, "night": 60.0, "cgm": 60.0}
    settings = bench_settings(env, summaries="hour", horizon=args.memory_horizon, idle=60.0, evict_every=30.0,
                              grace=grace, metrics_port=port)
    worker = WorkerProcess(settings, env.tmp / "rec-memory", 10, env.tmp / "worker-memory.log")
    samples: list[dict[str, float]] = []
    try:
        worker.start()
        wait_for(lambda: _ready(port), "the worker's metrics", 120)
        time.sleep(3)
        assert worker.proc is not None
        proc = psutil.Process(worker.proc.pid)
        idle_rss = proc.memory_info().rss
        producer = PacedProducer(env.redis_url, make, args.memory_rate / 1000, args.soak)
        producer.start()
        started = time.time()
        while producer.is_alive():
            producer.join(args.memory_every)
            m = scrape(port)
            client = redis_lib.Redis.from_url(env.redis_url)
            added = entries_added(client)
            client.close()
            row = {"t": round(time.time() - started, 1), "rss_mb": round(proc.memory_info().rss / 2 ** 20, 1),
                   "kept": m.get("wearfhir_worker_samples_kept", 0.0), "keys": m.get("wearfhir_worker_keys_live", 0.0),
                   "lag_entries": added - m.get("wearfhir_worker_entries_read_total", 0.0),
                   "late": m.get("wearfhir_worker_samples_late_total", 0.0)}
            samples.append(row)
            print("memory", row, flush=True)
    finally:
        worker.drain()
    results["memory"] = {"rate": args.memory_rate, "soak_s": args.soak, "patients": len(patients),
                         "horizon_s": args.memory_horizon, "idle_rss_mb": round(idle_rss / 2 ** 20, 1),
                         "samples": samples}
    pick = [samples[0], samples[len(samples) // 2], samples[-1]]
    rows = []
    for label, s in zip(("start", "middle", "end"), pick, strict=True):
        allowance = 150 + 24 * s["kept"] / 2 ** 20
        per = (s["rss_mb"] - idle_rss / 2 ** 20) * 2 ** 20 / s["kept"] if s["kept"] else float("nan")
        rows.append([f"memory at {label} (t = {s['t']:.0f} s): RSS vs kept samples", f"{s['rss_mb']:,.0f} MB, "
                     f"{s['kept']:,.0f} kept, {per:.0f} B/kept sample over idle", "≤ 150 MB + 24 B × kept "
                     f"= {allowance:,.0f} MB", f"{s['rss_mb'] / allowance:.2f}× allowance"])
    return rows


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def code_fingerprint() -> dict[str, str]:
    """sha256 (12 hex) of every source file the worker runs: the tree changes under a long run on a shared box."""
    import hashlib

    files = [p for pattern in ("flows/*.py", "aggregates/*.py", "connectors/**/*.py", "mappers/*.py",
                               "mappers/data/*.toml", "wearfhir/*.py") for p in sorted(ROOT.glob(pattern))]
    return {str(p.relative_to(ROOT)): hashlib.sha256(p.read_bytes()).hexdigest()[:12] for p in files}


# -- main -------------------------------------------------------------------------------------------------------

PARTS: dict[str, Callable[[Env, argparse.Namespace, dict[str, Any]], list[list[str]]]] = {
    "throughput": part_throughput, "snapshot": part_snapshot, "latency": part_latency, "restart": part_restart,
    "memory": part_memory}


def words(text: str) -> list[str]:
    """A comma list (empty: none)."""
    return [w for w in text.split(",") if w]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, epilog=USAGE,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=[*PARTS, "all"], default="all")
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--patients", type=int, default=50)
    parser.add_argument("--flush-every", type=float, default=2.0, help="worker flush_every for throughput (s)")
    parser.add_argument("--epoch", type=float, default=1.0, help="epoch (sink flush) interval in-process (s)")
    parser.add_argument("--snapshot-epoch", type=float, default=1.0, help="short, so the backlog spans several")
    parser.add_argument("--latency-seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=8.0)
    parser.add_argument("--spot-patients", type=int, default=50)
    parser.add_argument("--spot-configs", type=words, default=["1000:500", "250:500", "1000:500:stub"],
                        help="rate:bundle-size[:stub] of the spot latency runs (stub: no FHIR server behind the "
                             "proxy, transactions answered at once)")
    parser.add_argument("--dense-rate", type=float, default=50_000.0)
    parser.add_argument("--dense-bundle-sizes", type=lambda s: [int(x) for x in s.split(",") if x],
                        default=[500])
    parser.add_argument("--restarts", type=int, default=5)
    parser.add_argument("--restart-configs", type=words, default=["dense:10", "dense:1"],
                        help="load:snapshot-seconds pairs (load: dense or spot; spot at 1k/s saturates the test "
                             "FHIR server, so each restart replays a growing backlog: minutes)")
    parser.add_argument("--restart-rate", type=float, default=1000.0)
    parser.add_argument("--soak", type=float, default=600.0)
    parser.add_argument("--memory-rate", type=float, default=20_000.0)
    parser.add_argument("--memory-patients", type=int, default=100)
    parser.add_argument("--memory-horizon", type=float, default=600.0)
    parser.add_argument("--memory-every", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    parts = [p for p in PARTS if p != "memory"] if args.part == "all" else [args.part]
    results: dict[str, Any] = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "args": {
        k: v for k, v in vars(args).items() if k != "out"}, "cpus": os.cpu_count(),
        "load_average_before": os.getloadavg()}
    rows: list[list[str]] = []
    code = code_fingerprint()
    results["code"] = code
    with servers() as env:
        for part in parts:
            print(f"== {part}", flush=True)
            rows += PARTS[part](env, args, results)
    results["load_average_after"] = os.getloadavg()
    changed = sorted(name for name, digest in code_fingerprint().items() if code.get(name) != digest)
    results["code_changed_during_run"] = changed
    if changed:
        print(f"warning: these files changed during the run: {', '.join(changed)}", file=sys.stderr)
    suffix = "" if args.part == "all" else f"-{args.part}"
    out = args.out or RESULTS / f"worker-{datetime.now(UTC):%Y-%m-%d}{suffix}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print("\n| measure | result | target | ratio |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\n(results: {out})")


if __name__ == "__main__":
    main()
