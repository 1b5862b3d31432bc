"""The stream worker's FHIR sink: exactly as safe as the recovery snapshot.

With recovery on, Bytewax commits an epoch once the snapshots are written, without waiting for anything a sink
buffers; so :meth:`LiveFhirWriter.flush` runs in the sink partition's ``snapshot()`` (and ``close()``) and waits for
every in-flight Bundle before the epoch can commit. Two versions of one resource are never in flight at once: a
resource re-emitted while an older version still waits to be sent replaces it (latest wins), and a Bundle holding
an id that is in flight waits for that Bundle first. A FHIR outage longer than the client's retry budget does not
drop or exit: the writer holds its Bundles, reports the outage (metrics, a log line a minute) and keeps retrying;
reading the input pauses meanwhile (Bytewax's back-pressure), and nothing is committed that was not written.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import zlib
from concurrent.futures import Future, wait
from typing import Any

import redis
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from connectors.fhir.client import BundleResult, FhirClient
from connectors.fhir.deadletter import DeadLetterStore
from connectors.fhir.sink import FhirWriter, resource_groups
from connectors.streams.deadletter import InputDeadLetter, write_input_dead_letters
from mappers.batch import MappedBatch
from mappers.summary import SummaryBatch
from wearfhir.errors import ServiceError

__all__ = ["LiveFhirWriter", "WorkerFhirSink"]

log = logging.getLogger("wearfhir.worker.fhir")
Resource = dict[str, Any]


def _key(resource: Resource) -> tuple[str, str]:
    return resource["resourceType"], resource["id"]


class LiveFhirWriter(FhirWriter):
    """A :class:`FhirWriter` for a process that runs forever: coalesces by id, blocks through outages."""

    def __init__(self, client: FhirClient, dead_letters: DeadLetterStore, bundle_size: int = 500,
                 concurrency: int = 4, metrics: Any = None, outage_backoff: float = 30.0, linger: float = 0.05) -> None:
        super().__init__(client, dead_letters, bundle_size, concurrency)
        self.metrics = metrics
        self.linger = linger  # a partial Bundle waits at most this long for more resources before it is sent
        self._pending_lock = threading.RLock()
        self._pending_since = 0.0
        self._closing = threading.Event()
        self._lingerer = threading.Thread(target=self._send_lingering, name="fhir-linger", daemon=True)
        self._lingerer.start()
        self.outage_backoff = outage_backoff
        self._slots_of: dict[tuple[str, str], int] = {}  # pending resource → its index in _pending
        self._in_flight: dict[Future[None], set[tuple[str, str]]] = {}
        self._outage_since: float | None = None
        self._outage_logged = 0.0
        self._outage_lock = threading.Lock()
        self._rng = random.Random()  # noqa: S311  # retry jitter, not cryptography

    # -- sending (worker threads) ---------------------------------------------------------------------------
    def _transact(self, resources: list[Resource]) -> BundleResult:
        """One transaction, retried without end through outages (the client's own budget handles blips)."""
        attempt = 0
        while True:
            try:
                result = self.client.transaction(resources)
            except ServiceError as exc:
                attempt += 1
                self._outage(True, str(exc))
                time.sleep(self._rng.uniform(0.5, 1.0) * min(self.outage_backoff, 2.0 ** attempt))
                continue
            self._outage(False, "")
            return result

    def _outage(self, active: bool, why: str) -> None:
        with self._outage_lock:
            now = time.monotonic()
            if active:
                if self._outage_since is None:
                    self._outage_since = self._outage_logged = now
                    log.error("FHIR server unavailable beyond the retry budget; holding the Bundles and retrying "
                              "(nothing is dropped, input reading pauses): %s", why.split(". ")[0])
                elif now - self._outage_logged >= 60:
                    self._outage_logged = now
                    log.warning("FHIR server still unavailable after %.0f s; retrying", now - self._outage_since)
            elif self._outage_since is not None:
                log.info("FHIR server back after %.0f s", now - self._outage_since)
                self._outage_since = None
            if self.metrics is not None:
                self.metrics.outage(active)
                self.metrics.set_ready("fhir", not active, "outage" if active else "")
                self.metrics.heartbeat()  # waiting out an outage is alive, not hung: not ready, but no restart

    def _send(self, resources: list[Resource]) -> None:
        try:
            result = self._transact(resources)
            retries, dead = result.retries, len(result.rejected)
            refused = {_key(r.resource) for r in result.rejected}
            self._absorb(result)
            if self.metrics is not None:
                for r in resources:
                    if _key(r) not in refused:
                        self.metrics.written(r["resourceType"], r.get("status", "-"), 1)
                self.metrics.retries(retries)
                self.metrics.fhir_dead_letters(dead)
        except BaseException as exc:  # surfaced to the flow on the next call
            with self._lock:
                self._failure = self._failure or exc
        finally:
            self._slots.release()

    # -- input ----------------------------------------------------------------------------------------------
    def _send_lingering(self) -> None:
        """Send a partial Bundle once it has waited ``linger`` seconds: resources reach the server in well under a
        second at any input rate, not only when a Bundle fills up or the epoch ends."""
        while not self._closing.wait(self.linger):
            with self._pending_lock:
                if (self._slots_of and self._failure is None
                        and time.monotonic() - self._pending_since >= self.linger):
                    try:
                        self._submit()
                    except BaseException:  # noqa: S110  # the failure is raised in the flow by its next call
                        pass

    def write(self, resources: list[Resource]) -> None:
        """Queue resources; a group re-emitted while an older version is pending replaces it (latest wins)."""
        with self._pending_lock:
            if not self._slots_of:
                self._pending_since = time.monotonic()
            self._write(resources)

    def _write(self, resources: list[Resource]) -> None:
        self._check()
        for group in resource_groups(resources):
            for resource in group:
                at = self._slots_of.pop(_key(resource), None)
                if at is not None:
                    self._pending[at] = None  # type: ignore[call-overload]  # dropped at submit
            if self._pending and len(self._slots_of) + len(group) > self.bundle_size:
                self._submit()
            for resource in group:
                self._slots_of[_key(resource)] = len(self._pending)
                self._pending.append(resource)
        if len(self._slots_of) >= self.bundle_size:
            self._submit()

    def _submit(self) -> None:
        bundle = [r for r in self._pending if r is not None]
        self._pending, self._slots_of = [], {}
        if not bundle:
            return
        ids = {_key(r) for r in bundle}
        self._in_flight = {f: keys for f, keys in self._in_flight.items() if not f.done()}
        clashing = [f for f, keys in self._in_flight.items() if keys & ids]
        if clashing:  # an older version of one of these is still on its way: let it land first
            wait(clashing)
        self._slots.acquire()  # blocks while `concurrency` Bundles are in flight: back-pressure on the flow
        self._check_or_release()
        future = self._pool.submit(self._send, bundle)
        self._in_flight[future] = ids
        self._futures.append(future)
        self._futures = [f for f in self._futures if not f.done()]

    def flush(self) -> None:
        """Send what is pending and wait for every Bundle in flight; raise the first failure."""
        started = time.monotonic()
        with self._pending_lock:
            if any(r is not None for r in self._pending) and self._failure is None:
                self._submit()
            futures = list(self._futures)
        wait(futures)
        with self._pending_lock:
            self._futures = [f for f in self._futures if not f.done()]
            self._in_flight = {f: keys for f, keys in self._in_flight.items() if not f.done()}
        if self.metrics is not None:
            self.metrics.flush_time(time.monotonic() - started)
        self._check()

    def close(self) -> BundleResult:
        try:
            self.flush()
        finally:
            self._closing.set()
            self._lingerer.join()
            self._pool.shutdown(wait=True)
        return self.result


class _WorkerFhirPartition(StatefulSinkPartition[Any, None]):
    def __init__(self, writer: LiveFhirWriter, redis_url: str, metrics: Any) -> None:
        self._writer = writer
        self._redis = redis.Redis.from_url(redis_url)
        self._metrics = metrics

    def write_batch(self, values: list[Any]) -> None:
        letters: list[InputDeadLetter] = []
        for item in values:
            if isinstance(item, MappedBatch):
                devices = [r for r in item.resources if r["resourceType"] == "Device"]
                self._writer.write_devices(devices)
                self._writer.write([r for r in item.resources if r["resourceType"] != "Device"])
            elif isinstance(item, SummaryBatch):
                self._writer.write(item.resources())
            elif isinstance(item, InputDeadLetter):
                letters.append(item)
            else:
                raise TypeError(f"the worker's FHIR sink got an unexpected item of type {type(item).__name__}")
        if letters:
            self._dead_letters(letters)

    def _dead_letters(self, letters: list[InputDeadLetter]) -> None:
        delay = 0.5
        while True:  # Redis briefly away (a restart): hold the epoch rather than lose the letters
            try:
                write_input_dead_letters(self._redis, letters)
                return
            except redis.RedisError as exc:
                log.warning("could not write %d input dead letters (%s); retrying", len(letters), type(exc).__name__)
                time.sleep(delay)
                delay = min(delay * 2, 10.0)

    def snapshot(self) -> None:
        self._writer.flush()
        return None

    def close(self) -> None:
        try:
            self._writer.close()
        finally:
            self._redis.close()


class WorkerFhirSink(FixedPartitionedSink[Any, None]):
    """``partitions`` writers, patients spread over them (so a cluster's processes share the writing)."""

    def __init__(self, make_writer: Any, redis_url: str, partitions: int = 2, metrics: Any = None) -> None:
        self._make_writer = make_writer
        self._redis_url = redis_url
        self._partitions = partitions
        self._metrics = metrics

    def list_parts(self) -> list[str]:
        return [f"fhir-{i}" for i in range(self._partitions)]

    def part_fn(self, item_key: str) -> int:
        return zlib.adler32(item_key.split("\x1f", 1)[0].encode())

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _WorkerFhirPartition:
        return _WorkerFhirPartition(self._make_writer(), self._redis_url, self._metrics)
