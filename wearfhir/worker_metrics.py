"""Prometheus metrics and liveness/readiness for one stream-worker process, served over HTTP."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["MetricsServer", "WorkerMetrics", "metrics_port", "serve_metrics"]

_PREFIX = "wearfhir_worker_"
_FLUSH_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
_EPOCH_BUCKETS = (0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)


def metrics_port(base: int, process_id: int) -> int:
    """The metrics port of one process of a cluster: each process serves on its own port, `base + process_id`.

    A base of 0 means metrics are off and gives 0 (do not pass that to `serve_metrics`, where 0 asks for a free port).
    """
    if base < 0 or process_id < 0:
        raise ValueError(f"metrics port base ({base}) and process id ({process_id}) must not be negative")
    if base == 0:
        return 0
    if base + process_id > 65535:
        raise ValueError(f"metrics port {base} + process {process_id} is above 65535: choose a lower base port")
    return base + process_id


def _stream_ms(stream_id: str) -> int:
    """The millisecond time of a Redis stream id such as `1732712345123-4`."""
    ms, _, seq = stream_id.partition("-")
    if not ms.isdigit() or not (seq.isdigit() or not seq):
        raise ValueError(f"not a Redis stream id: {stream_id[:40]!r} (expected <ms>-<seq>)")
    return int(ms)


class WorkerMetrics:
    """The metrics of one worker process, in its own registry; labels are shards, metric keys, resource types,
    statuses and reasons — never patients or values. Recording methods are safe to call from any thread."""

    def __init__(self, stall_seconds: float = 60.0, components: Iterable[str] = ()) -> None:
        """`components` (e.g. `redis`, `fhir`) start not ready until `set_ready` reports them ok."""
        self.registry = CollectorRegistry(auto_describe=True)
        self.stall_seconds = stall_seconds
        self._started = time.monotonic()
        self._heartbeat: float | None = None
        self._lock = threading.Lock()
        self._components: dict[str, tuple[bool, str]] = {name: (False, "not checked yet") for name in components}

        def counter(name: str, doc: str, *labels: str) -> Counter:
            return Counter(_PREFIX + name, doc, labels, registry=self.registry)

        def gauge(name: str, doc: str, *labels: str) -> Gauge:
            return Gauge(_PREFIX + name, doc, labels, registry=self.registry)

        self._entries_read = counter("entries_read_total", "Redis stream entries read.", "shard")
        self._samples_in = counter("samples_in_total", "Samples decoded from stream entries.", "origin")
        self._accepted = counter("samples_accepted_total", "New samples kept.", "metric")
        self._duplicates = counter("samples_duplicate_total", "Samples already seen, dropped.", "metric")
        self._replaced = counter("samples_replaced_total", "Samples re-sent for a slot with a new value.", "metric")
        self._late = counter("samples_late_total", "Samples past the state horizon, dead-lettered.", "metric")
        self._input_dead = counter("input_dead_letters_total", "Stream entries dead-lettered, by reason.", "reason")
        self._lag = gauge("input_lag_entries", "Entries added to the stream but not yet read by this process.",
                          "shard")
        self._committed = gauge("input_committed_ms", "Time (ms) of the last committed stream id.", "shard")
        self._read = gauge("input_read_ms", "Time (ms) of the last stream id read.", "shard")
        self._written = counter("resources_written_total", "FHIR resources written (status: Observation status or -).",
                                "type", "status")
        self._retries = counter("fhir_retries_total", "FHIR requests retried.")
        self._fhir_dead = counter("fhir_dead_letters_total", "FHIR Bundles dead-lettered.")
        self._outage = gauge("fhir_outage", "1 while the sink is blocked on a FHIR outage past its retry budget.")
        self._flush = Histogram(_PREFIX + "fhir_flush_seconds", "Time a sink snapshot waited for in-flight Bundles.",
                                buckets=_FLUSH_BUCKETS, registry=self.registry)
        self._epoch = Histogram(_PREFIX + "epoch_seconds", "Time between epoch snapshots of an input partition.",
                                buckets=_EPOCH_BUCKETS, registry=self.registry)
        self._windows = counter("windows_emitted_total", "Summary windows emitted.", "kind", "status")
        self._keys = gauge("keys_live", "Patient x metric states held.")
        self._kept = gauge("samples_kept", "Samples held in state.")

    # -- input
    def entries_read(self, shard: int | str, n: int) -> None:
        self._entries_read.labels(shard=str(shard)).inc(n)

    def samples_in(self, origin: str, n: int) -> None:
        self._samples_in.labels(origin=origin).inc(n)

    def accepted(self, metric: str, n: int) -> None:
        self._accepted.labels(metric=metric).inc(n)

    def duplicates(self, metric: str, n: int) -> None:
        self._duplicates.labels(metric=metric).inc(n)

    def replaced(self, metric: str, n: int) -> None:
        self._replaced.labels(metric=metric).inc(n)

    def late(self, metric: str, n: int) -> None:
        self._late.labels(metric=metric).inc(n)

    def dead_letter(self, reason: str, n: int = 1) -> None:
        self._input_dead.labels(reason=reason).inc(n)

    def lag(self, shard: int | str, entries: int) -> None:
        self._lag.labels(shard=str(shard)).set(entries)

    def committed(self, shard: int | str, stream_id: str) -> None:
        """Record the last committed stream id (its millisecond part); raises ValueError for a malformed id."""
        self._committed.labels(shard=str(shard)).set(_stream_ms(stream_id))

    def read_position(self, shard: int | str, stream_id: str) -> None:
        """Record the last stream id read (its millisecond part); raises ValueError for a malformed id."""
        self._read.labels(shard=str(shard)).set(_stream_ms(stream_id))

    # -- output
    def written(self, resource_type: str, status: str, n: int) -> None:
        self._written.labels(type=resource_type, status=status or "-").inc(n)

    def retries(self, n: int) -> None:
        self._retries.inc(n)

    def fhir_dead_letters(self, n: int) -> None:
        self._fhir_dead.inc(n)

    def outage(self, active: bool) -> None:
        self._outage.set(1 if active else 0)

    def flush_time(self, seconds: float) -> None:
        self._flush.observe(seconds)

    def epoch_time(self, seconds: float) -> None:
        self._epoch.observe(seconds)

    # -- state
    def windows(self, kind: str, status: str, n: int) -> None:
        self._windows.labels(kind=kind, status=status).inc(n)

    def keys(self, n: int) -> None:
        self._keys.set(n)

    def kept(self, n: int) -> None:
        self._kept.set(n)

    # -- health
    def heartbeat(self) -> None:
        """The dataflow loop ran now."""
        self._heartbeat = time.monotonic()

    def set_ready(self, component: str, ok: bool, detail: str = "") -> None:
        """Report whether a dependency (`redis`, `fhir`, ...) is usable; `detail` is a short reason, never data."""
        with self._lock:
            self._components[component] = (ok, detail)

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Alive: a heartbeat within `stall_seconds`, or none yet and started less than `stall_seconds` ago."""
        now, beat = time.monotonic(), self._heartbeat
        age = None if beat is None else now - beat
        alive = (now - self._started if age is None else age) < self.stall_seconds
        body = {"status": "ok" if alive else "stalled", "heartbeat_age_seconds": None if age is None else round(age, 3),
                "stall_seconds": self.stall_seconds}
        return alive, body

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready: alive and every reported component ok."""
        alive, _ = self.health()
        with self._lock:
            components = {name: {"ok": ok, "detail": detail} for name, (ok, detail) in sorted(self._components.items())}
        ready = alive and all(c["ok"] for c in components.values())
        return ready, {"status": "ok" if ready else "unavailable", "alive": alive, "components": components}


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        metrics = self.server.metrics
        if path == "/metrics":
            self._send(200, CONTENT_TYPE_LATEST, generate_latest(metrics.registry))
        elif path in ("/healthz", "/readyz"):
            ok, body = metrics.health() if path == "/healthz" else metrics.readiness()
            self._send(200 if ok else 503, "application/json", json.dumps(body).encode())
        else:
            self._send(404, "text/plain; charset=utf-8", b"not found: try /metrics, /healthz or /readyz\n")

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """No request log: scrapes every few seconds would drown the worker's own log."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], metrics: WorkerMetrics) -> None:
        self.metrics = metrics
        super().__init__(address, _Handler)


class MetricsServer:
    """`/metrics`, `/healthz` and `/readyz` of one worker process, served from a daemon thread."""

    def __init__(self, metrics: WorkerMetrics, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = _Server((host, port), metrics)
        self.host = host
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"metrics:{self.port}", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def serve_metrics(metrics: WorkerMetrics, host: str = "127.0.0.1", port: int = 0) -> MetricsServer:
    """Start serving `metrics` on host:port (0: a free port; read `.port`). Loopback by default."""
    return MetricsServer(metrics, host, port)
