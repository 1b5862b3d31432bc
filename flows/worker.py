"""The stream worker dataflow: Redis Streams → decode → (patient, metric) state → raw + summaries → FHIR.

Runs forever under Bytewax recovery: ``wearfhir worker --redis URL --fhir URL --recovery-dir DIR`` (which
creates the recovery partitions, starts one or more processes and supervises them), or directly::

    WEARFHIR_REDIS=redis://… WEARFHIR_FHIR=https://… python -m bytewax.run flows.worker -r DIR -s 10 -b 3600

Kill it at any moment: every partition resumes from the last committed epoch (input position, duplicate filter,
windows), the FHIR sink has written everything of that epoch (it flushes in its snapshot), and re-written
resources keep their ids. See docs/worker.md.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

import bytewax.operators as op
import redis
from bytewax.dataflow import Dataflow

from aggregates.live import LiveSettings
from connectors.fhir.worker_sink import LiveFhirWriter, WorkerFhirSink
from connectors.streams.consumer import WorkItem, entry_items
from connectors.streams.producer import configured_shards
from connectors.streams.source import Drain, RedisStreamSource
from flows.live_windows import LiveContext, live_windows
from mappers.batch import BatchMapper
from mappers.context import FhirContext
from mappers.sample import batch_key
from mappers.summary import SummaryBuilder
from mappers.tables import metrics as metric_table
from wearfhir.settings import WorkerSettings

__all__ = ["get_flow", "process_id"]

log = logging.getLogger("wearfhir.worker")


def process_id(argv: list[str] | None = None, env: dict[str, str] | None = None) -> int:
    """This process's index in its Bytewax cluster (``-i``/``BYTEWAX_PROCESS_ID``; 0 when alone)."""
    argv = sys.argv if argv is None else argv
    env = dict(os.environ) if env is None else env
    for i, arg in enumerate(argv):
        if arg in ("-i", "--process-id") and i + 1 < len(argv):
            return int(argv[i + 1])
    return int(env.get("BYTEWAX_PROCESS_ID", env.get("WEARFHIR_PROCESS_ID", "0")) or 0)


def _writer_factory(settings: WorkerSettings, recorder: Any) -> Callable[[], LiveFhirWriter]:
    def make() -> LiveFhirWriter:
        from connectors.fhir.deadletter import RedisDeadLetters
        from connectors.fhir.target import FhirTarget, build_client

        target = FhirTarget.model_validate(settings.fhir)
        return LiveFhirWriter(build_client(target), RedisDeadLetters(settings.redis_url), target.bundle_size,
                              target.concurrency, metrics=recorder)

    return make


def get_flow(settings: WorkerSettings, *, clock: Callable[[], float] = time.time, recorder: Any = None,
             make_writer: Callable[[], LiveFhirWriter] | None = None, drain: Drain | None = None,
             stop: Callable[[], bool] | None = None) -> Dataflow:
    """Build the worker dataflow. ``recorder`` is a :class:`wearfhir.worker_metrics.WorkerMetrics`; ``stop``
    (tests) ends the input when it returns True; ``drain`` makes a SIGTERM exit without a replay."""
    client = redis.Redis.from_url(settings.redis_url)
    try:
        shards = configured_shards(client, settings.shards)
    finally:
        client.close()
    table = metric_table()
    ctx = FhirContext(identifier_base=settings.identifier_base)
    live = LiveContext(
        metrics=table,
        mapper=BatchMapper(table, ctx, settings.raw),
        builder=SummaryBuilder(ctx),
        wanted=settings.summaries,
        cgm_days=settings.cgm_days,
        settings=LiveSettings(horizon=settings.horizon, idle=settings.idle, grace=dict(settings.grace),
                              flush_every=settings.flush_every, evict_every=settings.evict_every),
        clock=clock,
        recorder=recorder,
    )
    flow = Dataflow("wearfhir_worker")
    source = RedisStreamSource(settings.redis_url, shards, read_count=settings.read_count,
                               idle_backoff=settings.idle_backoff, backup_seconds=settings.backup_seconds,
                               retain_seconds=settings.retain_seconds, metrics=recorder, drain=drain, stop=stop)
    entries = op.input("read_streams", flow, source)
    items = op.flat_map("decode", entries, lambda entry: entry_items(entry, table))
    split = op.branch("split_work", items, lambda item: isinstance(item, WorkItem))
    keyed = op.key_on("key_patient_metric", split.trues, lambda w: batch_key(w.batch.patient, w.batch.metric))
    outputs = live_windows("live_windows", keyed, live)
    letters = op.key_on("key_dead_letters", split.falses, lambda letter: letter.stream)
    if recorder is not None:
        letters = op.inspect("count_dead_letters", letters, lambda _, kv: recorder.dead_letter(kv[1].reason))
    merged = op.merge("merge_outputs", outputs, letters)
    op.output("write_fhir", merged, WorkerFhirSink(make_writer or _writer_factory(settings, recorder),
                                                   settings.redis_url, settings.sink_partitions, recorder))
    return flow


def _process_flow() -> Dataflow:
    """The flow of one worker process started by ``bytewax.run``: settings from the environment, metrics
    served on ``metrics_port + process id``, SIGTERM drains."""
    from wearfhir.worker_metrics import WorkerMetrics, metrics_port, serve_metrics

    logging.basicConfig(level=os.environ.get("WEARFHIR_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # request lines carry search parameters
    from prometheus_client import disable_created_metrics

    disable_created_metrics()  # one series per metric, not two
    settings = WorkerSettings.from_env()
    recorder = WorkerMetrics(components=("redis", "fhir"))
    recorder.set_ready("fhir", True)
    index = process_id()
    if settings.metrics_port:
        server = serve_metrics(recorder, settings.metrics_host, metrics_port(settings.metrics_port, index))
        log.info("process %d: metrics on %s/metrics", index, server.url)

    def drained() -> None:
        log.info("process %d drained: everything read is committed; exiting", index)
        logging.shutdown()
        os._exit(0)

    drain = Drain(drained)
    signal.signal(signal.SIGTERM, lambda *_: drain.request())
    flow = get_flow(settings, recorder=recorder, drain=drain)
    gc.freeze()  # as `wearfhir import` does: start-up objects out of collection, fewer young collections
    gc.set_threshold(50_000, 20, 50)
    return flow


def __getattr__(name: str) -> Any:
    # `python -m bytewax.run flows.worker` looks up `flow`: build it from the environment then.
    if name == "flow":
        return _process_flow()
    raise AttributeError(name)
