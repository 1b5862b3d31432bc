"""The FHIR server sink: mapped batches → transaction Bundles, several in flight, refusals to dead letters.

Ordering keeps references resolvable on a strict server (HAPI rejects a reference to a resource that is
neither stored nor in the same Bundle): a Device is written, on its own, before the first Bundle that
points at it; a CGM summary panel travels in the same Bundle as the members it lists. Bundles are
otherwise independent, so up to ``concurrency`` of them are in flight at once.

Delivery is at-least-once: a crash or a server outage beyond the retry budget stops the run with an error,
and running the same import again rewrites the same ids (nothing duplicated, nothing lost).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from connectors.fhir.client import BundleResult, FhirClient
from connectors.fhir.deadletter import DeadLetter, DeadLetterStore
from connectors.ndjson import RejectionFile
from mappers.batch import MappedBatch
from mappers.sample import Rejection, SourceReport
from mappers.summary import SummaryBatch
from wearfhir.report import ImportReport

__all__ = ["FhirSink", "FhirWriter", "resource_groups"]

log = logging.getLogger("wearfhir.fhir")
Resource = dict[str, Any]


def resource_groups(resources: list[Resource]) -> list[list[Resource]]:
    """Resources cut into groups that must share a Bundle: a panel with ``hasMember`` and the members
    right before it (as the summary builder emits them), and a report with ``result`` joins the group of the
    results right before it (Bundles travel concurrently: a reference must resolve within its own); everything
    else alone."""
    groups: list[list[Resource]] = []
    for resource in resources:
        members = resource.get("hasMember")
        results = resource.get("result")
        if results and groups and {r["reference"] for r in results} <= {
                f"{g['resourceType']}/{g['id']}" for g in groups[-1]}:
            groups[-1].append(resource)
        elif members:
            wanted = {m["reference"] for m in members}
            group = [resource]
            while groups and len(groups[-1]) == 1 and f"Observation/{groups[-1][0]['id']}" in wanted:
                group.insert(0, groups.pop()[0])
            groups.append(group)
        else:
            groups.append([resource])
    return groups


class FhirWriter:
    """Buffers resources into Bundles and writes them with bounded concurrency; thread-safe accounting."""

    def __init__(self, client: FhirClient, dead_letters: DeadLetterStore, bundle_size: int = 500,
                 concurrency: int = 4) -> None:
        self.client = client
        self.dead_letters = dead_letters
        self.bundle_size = bundle_size
        self.result = BundleResult()
        self.dead_lettered = 0
        self._pending: list[Resource] = []
        self._written_devices: set[str] = set()
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="fhir-writer")
        self._slots = threading.BoundedSemaphore(concurrency)
        self._lock = threading.Lock()
        self._futures: list[Future[None]] = []
        self._failure: BaseException | None = None
        self._raised = False

    # -- accounting (called from worker threads) -----------------------------------------------------------
    def _absorb(self, result: BundleResult) -> None:
        rejected, result.rejected = result.rejected, []  # refused resources live in the dead letters only
        letters = [DeadLetter.of(r, self.client.base_url) for r in rejected]
        with self._lock:
            if letters:
                self.dead_lettered += self.dead_letters.add(letters)
            self.result.add(result)

    def _transact(self, resources: list[Resource]) -> BundleResult:
        """One transaction (subclasses decide what an outage beyond the client's retry budget does)."""
        return self.client.transaction(resources)

    def _send(self, resources: list[Resource]) -> None:
        try:
            result = self._transact(resources)
            self._absorb(result)
        except BaseException as exc:  # surfaced to the flow on the next call
            with self._lock:
                self._failure = self._failure or exc
        finally:
            self._slots.release()

    def _check(self) -> None:
        if self._failure is not None and not self._raised:
            self._raised = True  # raised once: a second raise while the dataflow unwinds would abort it
            raise self._failure

    # -- input --------------------------------------------------------------------------------------------
    def write_devices(self, devices: Iterable[Resource]) -> None:
        """Write new Devices now (synchronously), before any Bundle that references them is sent."""
        new = [d for d in devices if d["id"] not in self._written_devices]
        if not new:
            return
        self._check()
        result = self._transact(new)
        self._absorb(result)
        self._written_devices.update(d["id"] for d in new)

    def write(self, resources: list[Resource]) -> None:
        """Queue resources (groups kept together); full Bundles are sent as slots free up."""
        self._check()
        for group in resource_groups(resources):
            if self._pending and len(self._pending) + len(group) > self.bundle_size:
                self._submit()
            self._pending.extend(group)
        if len(self._pending) >= self.bundle_size:
            self._submit()

    def _submit(self) -> None:
        bundle, self._pending = self._pending, []
        self._slots.acquire()  # blocks while `concurrency` Bundles are in flight: back-pressure on the flow
        self._check_or_release()
        self._futures.append(self._pool.submit(self._send, bundle))
        self._futures = [f for f in self._futures if not f.done()]

    def _check_or_release(self) -> None:
        if self._failure is not None:
            self._slots.release()
            self._check()

    def close(self) -> BundleResult:
        """Send what is left, wait for every Bundle, and raise the first failure (if any)."""
        try:
            if self._pending and self._failure is None:
                self._submit()
            for future in self._futures:
                future.result()
        finally:
            self._pool.shutdown(wait=True)
        self._check()
        if self._failure is not None:
            self.result.failed = True
        return self.result


class _FhirPartition(StatefulSinkPartition[Any, None]):
    def __init__(self, writer: FhirWriter, report: ImportReport, count_inputs: bool,
                 rejected: RejectionFile | None) -> None:
        self._writer = writer
        self._report = report
        self._count_inputs = count_inputs  # False when an NDJSON sink in the same flow counts them
        self._rejected = rejected  # where input rejections are listed when no NDJSON sink lists them
        self._failed = False

    def write_batch(self, values: list[Any]) -> None:
        try:
            self._write_batch(values)
        except BaseException:
            self._failed = True  # Bytewax still closes the partition: close must not raise a second time
            raise

    def _write_batch(self, values: list[Any]) -> None:
        report = self._report
        for item in values:
            if isinstance(item, MappedBatch):
                if self._count_inputs:
                    report.add_batch(item)
                devices = [r for r in item.resources if r["resourceType"] == "Device"]
                observations = [r for r in item.resources if r["resourceType"] != "Device"]
                self._writer.write_devices(devices)
                self._writer.write(observations)
                if self._count_inputs:
                    report.add_written("Observation", item.metric, len(observations))
            elif isinstance(item, SummaryBatch):
                summaries = item.resources()
                self._writer.write(summaries)
                if self._count_inputs:
                    report.add_summaries(item, summaries)
            elif isinstance(item, Rejection):
                if self._count_inputs:
                    report.add_rejection(item)
                if self._rejected is not None:
                    self._rejected.write(item)
            elif isinstance(item, SourceReport):
                if self._count_inputs:
                    report.add_source(item)
            else:
                raise TypeError(f"FHIR sink got an unexpected item of type {type(item).__name__}")

    def snapshot(self) -> None:
        return None

    def close(self) -> None:
        if self._rejected is not None:
            listed = self._rejected.commit()
            if listed is not None:
                self._report.rejected_file = str(listed)
        try:
            result = self._writer.close()
        except BaseException:
            if self._failed:  # the first error already stopped the flow; a second raise would abort it
                log.warning("FHIR writer closed after an earlier failure")
                return
            raise
        finally:
            self._report.add_fhir(self._writer.result, self._writer.dead_lettered,
                                  self._writer.dead_letters.describe())
        log.info("FHIR writes: %d created, %d updated, %d retries, %d dead-lettered", result.created,
                 result.updated, result.retries, self._writer.dead_lettered)


class FhirSink(FixedPartitionedSink[Any, None]):
    """Bytewax sink writing to a FHIR server through one :class:`FhirWriter` (one partition)."""

    def __init__(self, make_writer: Any, report: ImportReport, count_inputs: bool,
                 rejected: Path | None = None) -> None:
        self._make_writer = make_writer
        self._report = report
        self._count_inputs = count_inputs
        self._rejected = rejected  # a file for input rejections (FHIR-only runs)

    def list_parts(self) -> list[str]:
        return ["fhir"]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _FhirPartition:
        rejected = RejectionFile(self._rejected) if self._rejected is not None else None
        return _FhirPartition(self._make_writer(), self._report, self._count_inputs, rejected)

