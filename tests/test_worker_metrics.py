"""The worker's metrics and health endpoints over real HTTP: exact values, names, health and readiness codes."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from wearfhir.worker_metrics import MetricsServer, WorkerMetrics, metrics_port, serve_metrics

EXPECTED_FAMILIES = {
    "entries_read", "samples_in", "samples_accepted", "samples_duplicate", "samples_replaced", "samples_late",
    "input_dead_letters", "input_lag_entries", "input_committed_ms", "input_read_ms", "resources_written",
    "fhir_retries", "fhir_dead_letters", "fhir_outage", "fhir_flush_seconds", "epoch_seconds", "windows_emitted",
    "keys_live", "samples_kept",
}


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(trust_env=False, timeout=5) as c:
        yield c


@pytest.fixture
def served() -> Iterator[tuple[WorkerMetrics, MetricsServer]]:
    metrics = WorkerMetrics()
    with serve_metrics(metrics) as server:
        yield metrics, server


def scrape(client: httpx.Client, server: MetricsServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics keyed by (sample name, sorted labels)."""
    response = client.get(f"{server.url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE_LATEST
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


def test_recorded_values_are_served_exactly(served, client):
    metrics, server = served
    metrics.entries_read(3, 10)
    metrics.entries_read("3", 5)
    metrics.samples_in("healthkit", 7)
    metrics.accepted("heart_rate", 4)
    metrics.duplicates("heart_rate", 2)
    metrics.replaced("step_count", 1)
    metrics.late("heart_rate", 1)
    metrics.dead_letter("undecodable")
    metrics.dead_letter("undecodable", 2)
    metrics.dead_letter("unknown_version")
    metrics.lag(3, 120)
    metrics.lag(3, 42)
    metrics.committed(3, "1732712345123-4")
    metrics.read_position(3, "1732712399999-0")
    metrics.written("Observation", "final", 3)
    metrics.written("Observation", "final", 3)
    metrics.written("Bundle", "-", 1)
    metrics.retries(2)
    metrics.fhir_dead_letters(1)
    metrics.outage(True)
    metrics.windows("day", "amended", 2)
    metrics.keys(11)
    metrics.kept(900)

    got = scrape(client, server)
    p = "wearfhir_worker_"
    assert got[(p + "entries_read_total", (("shard", "3"),))] == 15
    assert got[(p + "samples_in_total", (("origin", "healthkit"),))] == 7
    assert got[(p + "samples_accepted_total", (("metric", "heart_rate"),))] == 4
    assert got[(p + "samples_duplicate_total", (("metric", "heart_rate"),))] == 2
    assert got[(p + "samples_replaced_total", (("metric", "step_count"),))] == 1
    assert got[(p + "samples_late_total", (("metric", "heart_rate"),))] == 1
    assert got[(p + "input_dead_letters_total", (("reason", "undecodable"),))] == 3
    assert got[(p + "input_dead_letters_total", (("reason", "unknown_version"),))] == 1
    assert got[(p + "input_lag_entries", (("shard", "3"),))] == 42
    assert got[(p + "input_committed_ms", (("shard", "3"),))] == 1732712345123
    assert got[(p + "input_read_ms", (("shard", "3"),))] == 1732712399999
    assert got[(p + "resources_written_total", (("status", "final"), ("type", "Observation")))] == 6
    assert got[(p + "resources_written_total", (("status", "-"), ("type", "Bundle")))] == 1
    assert got[(p + "fhir_retries_total", ())] == 2
    assert got[(p + "fhir_dead_letters_total", ())] == 1
    assert got[(p + "fhir_outage", ())] == 1
    assert got[(p + "windows_emitted_total", (("kind", "day"), ("status", "amended")))] == 2
    assert got[(p + "keys_live", ())] == 11
    assert got[(p + "samples_kept", ())] == 900

    metrics.outage(False)
    assert scrape(client, server)[(p + "fhir_outage", ())] == 0


def test_histograms_count_and_bucket_observations(served, client):
    metrics, server = served
    for seconds in (0.02, 0.3, 4.0):
        metrics.flush_time(seconds)
    metrics.epoch_time(9.5)
    metrics.epoch_time(12.0)

    got = scrape(client, server)
    flush = "wearfhir_worker_fhir_flush_seconds"
    assert got[(flush + "_count", ())] == 3
    assert got[(flush + "_sum", ())] == pytest.approx(4.32)
    assert got[(flush + "_bucket", (("le", "0.05"),))] == 1
    assert got[(flush + "_bucket", (("le", "0.5"),))] == 2
    assert got[(flush + "_bucket", (("le", "+Inf"),))] == 3
    epoch = "wearfhir_worker_epoch_seconds"
    assert got[(epoch + "_count", ())] == 2
    assert got[(epoch + "_bucket", (("le", "10.0"),))] == 1


def test_family_names_are_exactly_the_documented_set(served, client):
    _, server = served
    text = client.get(f"{server.url}/metrics").text
    names = {family.name for family in text_string_to_metric_families(text)}
    # prometheus_client also exposes each unlabelled counter's and histogram's start time as a `_created` gauge
    assert {name for name in names if not name.endswith("_created")} == {
        "wearfhir_worker_" + name for name in EXPECTED_FAMILIES}


def test_each_instance_has_its_own_registry(client):
    first, second = WorkerMetrics(), WorkerMetrics()
    first.retries(5)
    with serve_metrics(second) as server:
        assert scrape(client, server)[("wearfhir_worker_fhir_retries_total", ())] == 0


@pytest.mark.parametrize("bad", ["", "abc", "12-x", "-1", "$", ">"])
def test_malformed_stream_ids_are_refused(bad):
    with pytest.raises(ValueError, match="stream id"):
        WorkerMetrics().committed(0, bad)


def test_stream_id_without_sequence_is_its_time():
    metrics = WorkerMetrics()
    metrics.read_position(1, "1732712345123")
    value = metrics.registry.get_sample_value("wearfhir_worker_input_read_ms", {"shard": "1"})
    assert value == 1732712345123


def test_other_paths_are_404(served, client):
    _, server = served
    for path in ("/", "/metric", "/healthz/x", "/favicon.ico"):
        assert client.get(server.url + path).status_code == 404
    assert client.get(server.url + "/metrics?name[]=x").status_code == 200


def test_health_turns_503_when_the_heartbeat_stalls(client):
    metrics = WorkerMetrics(stall_seconds=0.2)
    with serve_metrics(metrics) as server:
        starting = client.get(server.url + "/healthz")  # no heartbeat yet, but just started
        assert starting.status_code == 200
        assert starting.json()["status"] == "ok"
        assert starting.json()["heartbeat_age_seconds"] is None

        metrics.heartbeat()
        assert client.get(server.url + "/healthz").status_code == 200
        time.sleep(0.3)
        stalled = client.get(server.url + "/healthz")
        assert stalled.status_code == 503
        assert stalled.json()["status"] == "stalled"
        assert client.get(server.url + "/readyz").status_code == 503  # not alive, so not ready

        metrics.heartbeat()
        assert client.get(server.url + "/healthz").status_code == 200


def test_health_turns_503_when_no_heartbeat_ever_comes(client):
    metrics = WorkerMetrics(stall_seconds=0.2)
    with serve_metrics(metrics) as server:
        time.sleep(0.3)
        assert client.get(server.url + "/healthz").status_code == 503


def test_readiness_names_the_failing_component(served, client):
    metrics, server = served
    metrics.heartbeat()
    metrics.set_ready("redis", True)
    assert client.get(server.url + "/readyz").status_code == 200

    metrics.set_ready("fhir", False, "outage")
    response = client.get(server.url + "/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["components"]["fhir"] == {"ok": False, "detail": "outage"}
    assert body["components"]["redis"]["ok"] is True
    assert client.get(server.url + "/healthz").status_code == 200  # alive, just not ready

    metrics.set_ready("fhir", True)
    assert client.get(server.url + "/readyz").status_code == 200


def test_declared_components_are_not_ready_until_reported(client):
    metrics = WorkerMetrics(components=["redis", "fhir"])
    with serve_metrics(metrics) as server:
        metrics.set_ready("redis", True)
        response = client.get(server.url + "/readyz")
        assert response.status_code == 503
        assert response.json()["components"]["fhir"]["ok"] is False
        metrics.set_ready("fhir", True)
        assert client.get(server.url + "/readyz").status_code == 200


def test_server_binds_loopback_and_close_frees_the_port(client):
    server = serve_metrics(WorkerMetrics())
    assert server.host == "127.0.0.1"
    assert server.port > 0
    assert server.url == f"http://127.0.0.1:{server.port}"
    assert client.get(server.url + "/healthz").status_code == 200
    server.close()
    with pytest.raises(httpx.ConnectError):
        client.get(server.url + "/healthz")


def test_requests_are_not_logged(served, client, capfd):
    _, server = served
    client.get(server.url + "/metrics")
    client.get(server.url + "/nope")
    assert capfd.readouterr().err == ""


def test_metrics_port_is_base_plus_process_id():
    assert metrics_port(9100, 0) == 9100
    assert metrics_port(9100, 3) == 9103
    assert metrics_port(0, 3) == 0  # off
    with pytest.raises(ValueError):
        metrics_port(-1, 0)
    with pytest.raises(ValueError):
        metrics_port(65535, 1)
