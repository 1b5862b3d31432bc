"""Shared pieces of the worker tests: feeding exports into the streams, running the worker, reading FHIR back."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import redis as redis_lib
from bytewax.testing import run_main

from connectors.healthkit.source import read_export
from connectors.streams.producer import CONFIG_KEY, StreamProducer, stream_key
from flows.worker import get_flow
from mappers.sample import Sample, SampleBatch
from wearfhir.settings import WorkerSettings
from wearfhir.worker_metrics import WorkerMetrics

SHARDS = 4


def export_batches(path: Path, patient: str) -> list[SampleBatch]:
    """The sample batches an export yields (what ``wearfhir enqueue`` sends)."""
    return [item for item in read_export(path, patient) if isinstance(item, SampleBatch)]


def shuffled_entries(batches: list[SampleBatch], rng: random.Random, resend: float = 0.2
                     ) -> list[tuple[SampleBatch, list[Sample]]]:
    """The batches cut into entries of random sizes, with a share re-sent (whole, or re-cut across two entries),
    in random order: what producers that retry, overlap and interleave patients deliver."""
    entries: list[tuple[SampleBatch, list[Sample]]] = []
    for batch in batches:
        i = 0
        while i < len(batch.samples):
            size = rng.choice((1, 7, 100, 333, 1000))
            entries.append((batch, batch.samples[i:i + size]))
            i += size
    extra = []
    for batch, part in entries:
        if rng.random() < resend:
            if len(part) > 2 and rng.random() < 0.5:  # an overlapping re-cut
                cut = rng.randrange(1, len(part))
                extra += [(batch, part[:cut]), (batch, part[cut - 1:])]
            else:
                extra.append((batch, part))
    everything = entries + extra
    rng.shuffle(everything)
    return everything


def enqueue(url: str, entries: list[tuple[SampleBatch, list[Sample]]], shards: int = SHARDS) -> int:
    """Add the entries to the input streams; returns how many entries."""
    client = redis_lib.Redis.from_url(url)
    producer = StreamProducer(client, "test", shards=shards)
    for batch, part in entries:
        producer.add(batch.patient, part, timezone=batch.timezone, origin="healthkit")
    producer.flush()
    client.close()
    return producer.entries


def reset_streams(url: str, shards: int = SHARDS) -> None:
    client = redis_lib.Redis.from_url(url)
    client.flushdb()
    client.hset(CONFIG_KEY, "shards", str(shards))
    client.close()


def entries_added(url: str, shards: int = SHARDS) -> int:
    client = redis_lib.Redis.from_url(url)
    try:
        return sum(int(client.xlen(stream_key(k))) for k in range(shards))
    finally:
        client.close()


def entries_read(recorder: WorkerMetrics, shards: int = SHARDS) -> int:
    return int(sum(recorder.registry.get_sample_value("wearfhir_worker_entries_read_total", {"shard": str(k)}) or 0
                   for k in range(shards)))


def settings_for(redis_url: str, fhir_url: str, **overrides: Any) -> WorkerSettings:
    values: dict[str, Any] = {"redis_url": redis_url, "fhir": {"url": fhir_url}, "flush_every": 0.2,
                              "horizon": 100 * 365 * 86400.0, "idle": 0.0, "idle_backoff": 0.05, "shards": SHARDS}
    values.update(overrides)
    return WorkerSettings.model_validate(values)


def run_until_idle(settings: WorkerSettings, quiet: float = 2.0, timeout: float = 300.0,
                   clock: Callable[[], float] = time.time) -> WorkerMetrics:
    """Run the worker in-process until every entry added so far was read and ``quiet`` seconds passed."""
    recorder = WorkerMetrics()
    started = time.monotonic()
    caught_up: list[float] = []

    def stop() -> bool:
        if time.monotonic() - started > timeout:
            raise TimeoutError("the worker did not catch up in time")
        if not caught_up:
            if entries_read(recorder) >= entries_added(settings.redis_url):
                caught_up.append(time.monotonic())
            return False
        return time.monotonic() - caught_up[0] > quiet

    run_main(get_flow(settings, recorder=recorder, clock=clock, stop=stop), epoch_interval=timedelta(seconds=0.5))
    return recorder


@contextmanager
def worker_thread(settings: WorkerSettings, clock: Callable[[], float]) -> Iterator[WorkerMetrics]:
    """Run the worker in a background thread until the block ends."""
    recorder = WorkerMetrics()
    done = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            run_main(get_flow(settings, recorder=recorder, clock=clock, stop=done.is_set))
        except BaseException as exc:  # surfaced to the test
            failure.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield recorder
    finally:
        done.set()
        thread.join(60)
    if failure:
        raise failure[0]


def wait_for(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def server_resources(base_url: str, resource_type: str, **params: str) -> dict[str, dict[str, Any]]:
    """Every resource of a type on the server by id (``meta`` dropped), following paging."""
    out: dict[str, dict[str, Any]] = {}
    with httpx.Client(timeout=60) as client:
        url: str | None = f"{base_url}/{resource_type}"
        query: dict[str, str] | None = {"_count": "1000", **params}
        while url:
            bundle = client.get(url, params=query).raise_for_status().json()
            for entry in bundle.get("entry", []):
                resource = entry["resource"]
                resource.pop("meta", None)
                assert resource["id"] not in out, f"{resource_type}/{resource['id']} listed twice"
                out[resource["id"]] = resource
            url = next((link["url"] for link in bundle.get("link", []) if link["relation"] == "next"), None)
            query = None
    return out


def final_form(resource: dict[str, Any]) -> dict[str, Any]:
    """A resource as a clean batch import would write it: ``amended`` (late data in the worker) reads ``final``."""
    if resource.get("status") == "amended":
        return {**resource, "status": "final"}
    return resource


def identifier_counts(resources: dict[str, dict[str, Any]]) -> Counter[str]:
    return Counter(f"{i['system']}|{i['value']}" for r in resources.values() for i in r.get("identifier", []))
