"""The stream worker end to end on a real Redis and real FHIR servers: the import oracle, windows, dead letters."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import psutil
import pytest
import redis as redis_lib

from connectors.streams.codec import encode_entry
from connectors.streams.producer import INPUT_DEAD_LETTERS, StreamProducer, shard_of, stream_key
from mappers.sample import Sample, SourceInfo, epoch_times
from tests.servers import ROOT, fhir_server, free_port
from tests.worker_helpers import (
    SHARDS,
    enqueue,
    export_batches,
    final_form,
    identifier_counts,
    reset_streams,
    run_until_idle,
    server_resources,
    settings_for,
    shuffled_entries,
    wait_for,
    worker_thread,
)
from wearfhir.cli import main
from wearfhir.synth import SynthSpec, write_export

SAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "samples" / "apple-health"
NEW_YORK = ZoneInfo("America/New_York")


@pytest.fixture(scope="module")
def oracle_fhir(tmp_path_factory):
    """A second FHIR server: ``wearfhir import`` writes there, the worker to the session's."""
    with fhir_server(tmp_path_factory.mktemp("oracle-fhir")) as server:
        yield server


def put_patient(base_url: str, pid: str) -> str:
    httpx.put(f"{base_url}/Patient/{pid}", json={"resourceType": "Patient", "id": pid}).raise_for_status()
    return f"Patient/{pid}"


def test_worker_writes_what_a_batch_import_writes(redis, fhir, oracle_fhir, tmp_path):
    """The oracle: two patients' exports (a real one and a synthetic one with CGM, sleep and DST), cut into entries
    of random sizes, shuffled across patients, a fifth re-sent (whole or re-cut) → the same resources, values
    and ids as `wearfhir import` of each export; each identifier once."""
    synthetic = write_export(tmp_path / "export.zip", SynthSpec(records=8_000, seed=11))
    exports = {"worker-oracle-real": SAMPLES / "ashtom-hkimport-v3-2017.xml", "worker-oracle-synth": synthetic}
    reset_streams(redis.url)
    rng = random.Random(5)
    entries = []
    for pid, path in exports.items():
        patient = put_patient(fhir.base_url, pid)
        put_patient(oracle_fhir.base_url, pid)
        assert main(["import", str(path), "--patient", patient, "--fhir", oracle_fhir.base_url, "--no-progress",
                     "--dead-letters", str(tmp_path / "dlq.ndjson"), "--rejected", str(tmp_path / "rej.ndjson")]) == 0
        entries += shuffled_entries(export_batches(path, patient), rng)
    rng.shuffle(entries)
    enqueue(redis.url, entries)
    recorder = run_until_idle(settings_for(redis.url, fhir.base_url))

    duplicates = sum(v for s in recorder.registry.collect() if s.name == "wearfhir_worker_samples_duplicate"
                     for v in [x.value for x in s.samples if x.name.endswith("_total")])
    assert duplicates > 0  # the re-sends were seen, and dropped
    for pid in exports:
        for rtype in ("Observation", "DiagnosticReport"):
            worker = server_resources(fhir.base_url, rtype, subject=f"Patient/{pid}")
            batch = server_resources(oracle_fhir.base_url, rtype, subject=f"Patient/{pid}")
            assert worker or rtype != "Observation", f"nothing written for {pid}"
            assert set(worker) == set(batch), f"{rtype} ids differ for {pid}"
            different = [i for i in batch if final_form(worker[i]) != final_form(batch[i])]
            assert not different, f"{len(different)} {rtype}s differ for {pid}, e.g. {different[0]}"
            assert set(identifier_counts(worker).values()) <= {1}
    devices_worker = server_resources(fhir.base_url, "Device")
    devices_batch = server_resources(oracle_fhir.base_url, "Device")
    assert set(devices_batch) <= set(devices_worker)


def heart_rate(patient: str, start: datetime, value: float, source: str = "Apple Watch") -> Sample:
    end = start + timedelta(minutes=1)
    start_epoch, end_epoch, _ = epoch_times(start, end)
    offset = int(start.utcoffset().total_seconds())
    return Sample(patient, "heart_rate", value, None, "/min", start, end, SourceInfo(source, "10.0", None),
                  "healthkit", "HKQuantityTypeIdentifierHeartRate", start_epoch, end_epoch, offset,
                  timezone="America/New_York")


class Clock:
    """A wall clock the test moves."""

    def __init__(self, at: datetime) -> None:
        self.now = at.timestamp()

    def __call__(self) -> float:
        return self.now

    def set(self, at: datetime) -> None:
        self.now = at.timestamp()


def hour_summary(base_url: str, patient: str, hour: datetime) -> dict | None:
    """The heart-rate hour summary whose window starts at ``hour`` (local), if written."""
    for obs in server_resources(base_url, "Observation", subject=patient).values():
        period = obs.get("effectivePeriod", {})
        if period.get("start") == hour.isoformat() and period.get("end") == (hour + timedelta(hours=1)).isoformat():
            return obs
    return None


def stat(obs: dict, code: str) -> float:
    return next(c["valueQuantity"]["value"] if "valueQuantity" in c else c["valueInteger"]
                for c in obs.get("component", []) if c["code"]["coding"][0]["code"] == code)


def test_windows_go_preliminary_final_amended_and_late_data_is_dead_lettered(redis, fhir):
    """With a controlled clock: an open hour is preliminary; once its end + grace has passed it is final (no new
    sample for it needed); a late sample re-emits it amended under the same id; past the horizon a sample is
    dead-lettered as late (counted, with a re-import instruction), never folded."""
    reset_streams(redis.url)
    patient = put_patient(fhir.base_url, "worker-windows")
    ten = datetime(2026, 3, 10, 10, 0, tzinfo=NEW_YORK)  # EDT, two days after the DST change
    clock = Clock(ten + timedelta(minutes=30))
    settings = settings_for(redis.url, fhir.base_url, horizon=86400.0, idle=0.0, evict_every=0.1,
                            grace={"hour": 60.0, "day": 600.0, "night": 600.0, "cgm": 600.0})
    client = redis_lib.Redis.from_url(redis.url)
    producer = StreamProducer(client, "test", shards=SHARDS)

    def send(*samples: Sample) -> None:
        producer.add(patient, list(samples), timezone="America/New_York", origin="healthkit")
        producer.flush()

    with worker_thread(settings, clock) as recorder:
        send(*(heart_rate(patient, ten + timedelta(minutes=m), 60.0 + m) for m in range(21)))
        first = wait_for(lambda: hour_summary(fhir.base_url, patient, ten), "the open hour")
        assert first["status"] == "preliminary"
        assert first["valueQuantity"]["value"] == 70.0  # mean of 60..80

        clock.set(ten + timedelta(hours=1, minutes=2))  # 10:00-11:00 ended, plus the 60 s grace
        send(heart_rate(patient, ten + timedelta(hours=1, minutes=1), 90.0))  # wakes the key: 11:00 opens
        final = wait_for(lambda: (o := hour_summary(fhir.base_url, patient, ten)) and o["status"] == "final" and o,
                         "the hour to become final")
        assert final["id"] == first["id"] and final["valueQuantity"]["value"] == 70.0
        assert hour_summary(fhir.base_url, patient, ten + timedelta(hours=1))["status"] == "preliminary"

        send(heart_rate(patient, ten + timedelta(minutes=25), 200.0))  # late, but within the horizon
        amended = wait_for(lambda: (o := hour_summary(fhir.base_url, patient, ten)) and o["status"] == "amended"
                           and o, "the hour to be amended")
        assert amended["id"] == first["id"] and stat(amended, "maximum") == 200.0

        clock.set(ten + timedelta(days=3))  # past the 1-day horizon: the state of the 10th goes at the next flush
        send(heart_rate(patient, ten + timedelta(days=3, minutes=-5), 70.0))
        wait_for(lambda: recorder.registry.get_sample_value("wearfhir_worker_windows_emitted_total",
                                                            {"kind": "hour", "status": "preliminary"}) >= 3,
                 "the flush of the new day")
        time.sleep(0.5)
        send(heart_rate(patient, ten + timedelta(minutes=40), 120.0))  # for a window whose state is gone
        letter = wait_for(lambda: [fields for _, fields in client.xrange(INPUT_DEAD_LETTERS)
                                   if fields[b"reason"] == b"late"], "the late dead letter")[0]
        assert recorder.registry.get_sample_value("wearfhir_worker_samples_late_total", {"metric": "heart_rate"}) == 1
    assert b"wearfhir import" in letter[b"message"] and letter[b"samples"] == b"1"
    assert letter[b"patient"] == patient.encode() and b"entry.data" in letter  # replayable
    assert b"120" not in letter[b"message"]  # no value in the text
    after = hour_summary(fhir.base_url, patient, ten)
    assert after["id"] == first["id"] and stat(after, "maximum") == 200.0  # the late sample changed nothing


def test_bad_entries_are_dead_lettered_and_the_rest_lands(redis, fhir):
    """An entry of an unknown version, a corrupt one, one with an unknown metric and one from an unknown origin go
    to the dead-letter stream with their reason and fields; the good entries around them are written."""
    reset_streams(redis.url)
    patient = put_patient(fhir.base_url, "worker-bad-entries")
    client = redis_lib.Redis.from_url(redis.url)
    key = stream_key(shard_of(patient, SHARDS))
    at = datetime(2024, 5, 1, 8, 0, tzinfo=NEW_YORK)
    good = [heart_rate(patient, at + timedelta(minutes=m), 70.0) for m in range(10)]
    fields = encode_entry(patient, good[:5], timezone="America/New_York", origin="healthkit", producer="test")
    client.xadd(key, {**fields, b"v": b"9"})
    client.xadd(key, fields)
    client.xadd(key, {**fields, b"data": b"not zlib"})
    client.xadd(key, encode_entry(patient, [good[0]._replace(metric="no_such_metric")], timezone=None,
                                  origin="healthkit", producer="test"))
    client.xadd(key, encode_entry(patient, [s._replace(origin="no_such_origin") for s in good[:2]], timezone=None,
                                  origin="no_such_origin", producer="test"))
    client.xadd(key, encode_entry(patient, good[5:], timezone="America/New_York", origin="healthkit",
                                  producer="test"))
    recorder = run_until_idle(settings_for(redis.url, fhir.base_url))
    reasons = sorted(f[b"reason"].decode() for _, f in client.xrange(INPUT_DEAD_LETTERS))
    assert reasons == ["undecodable", "unknown_metric", "unknown_origin", "unknown_version"]
    assert recorder.registry.get_sample_value("wearfhir_worker_samples_accepted_total", {"metric": "heart_rate"}) == 10
    day = [o for o in server_resources(fhir.base_url, "Observation", subject=patient).values()
           if o["effectivePeriod"]["start"].endswith("T00:00:00-04:00")]
    assert len(day) == 1 and stat(day[0], "count") == 10  # the five samples before and after the bad entries


def _cpu_seconds(proc: psutil.Process) -> float:
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            times = p.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def test_worker_command_idles_cheaply_drains_on_sigterm_and_resumes(redis, fhir, tmp_path):
    """`wearfhir worker`: idle it costs ≤ 5 % of a core; SIGTERM drains (exit 0, no replay: a second run reads
    nothing again); the committed position is published; `wearfhir enqueue` feeds it."""
    reset_streams(redis.url, 16)
    patient = put_patient(fhir.base_url, "worker-cli")
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    command = [sys.executable, "-m", "wearfhir.cli", "worker", "--redis", redis.url, "--fhir", fhir.base_url,
               "--recovery-dir", str(tmp_path / "recovery"), "--snapshot-seconds", "1", "--backup-seconds", "0",
               "--flush-every", "0.2s", "--metrics-port", str(port)]
    worker = subprocess.Popen(command, env=env, cwd=tmp_path)
    try:
        wait_for(lambda: _ready(port), "the worker's readiness", timeout=60)
        process = psutil.Process(worker.pid)
        time.sleep(2)
        before, started = _cpu_seconds(process), time.monotonic()
        time.sleep(6)
        idle_share = (_cpu_seconds(process) - before) / (time.monotonic() - started)
        assert idle_share <= 0.05, f"idle worker used {idle_share:.1%} of a core"

        enq = subprocess.run([sys.executable, "-m", "wearfhir.cli", "enqueue", str(SAMPLES / "ahp-export.xml"),
                              "--patient", patient, "--redis", redis.url], env=env, capture_output=True, text=True)
        assert enq.returncode == 0, enq.stderr
        assert "Enqueued 6 samples" in enq.stdout
        wait_for(lambda: _metric(port, "wearfhir_worker_samples_accepted_total") >= 6, "the samples")
        wait_for(lambda: redis_lib.Redis.from_url(redis.url).hlen("wearfhir:committed") >= 1, "a committed id")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
    written = server_resources(fhir.base_url, "Observation", subject=patient)
    assert written
    again = subprocess.Popen(command, env=env, cwd=tmp_path)
    try:
        wait_for(lambda: _ready(port), "the restarted worker", timeout=60)
        time.sleep(2)
        assert _metric(port, "wearfhir_worker_entries_read_total") == 0  # drained: nothing replayed
    finally:
        again.send_signal(signal.SIGTERM)
        again.wait(timeout=30)


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _metric(port: int, name: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
               if s.name == name)


def test_input_is_trimmed_only_behind_the_committed_position(redis, fhir):
    """With no backup window and no retention floor, the worker trims what it committed, and nothing after it."""
    reset_streams(redis.url)
    patient = put_patient(fhir.base_url, "worker-trim")
    at = datetime(2024, 5, 2, 8, 0, tzinfo=NEW_YORK)
    client = redis_lib.Redis.from_url(redis.url)
    producer = StreamProducer(client, "test", shards=SHARDS)
    for m in range(600):  # 600 entries of one sample: several of Redis's 100-entry stream nodes
        producer.add(patient, [heart_rate(patient, at + timedelta(minutes=m), 70.0)], timezone="America/New_York",
                     origin="healthkit")
    producer.flush()
    key = stream_key(shard_of(patient, SHARDS))
    ids = [i for i, _ in client.xrange(key)]
    run_until_idle(settings_for(redis.url, fhir.base_url, retain_seconds=0.0, backup_seconds=0.0), quiet=3.0)
    committed = client.hget("wearfhir:committed", key)
    left = [i for i, _ in client.xrange(key)]
    assert committed in ids
    assert len(left) < len(ids)  # trimmed ...
    assert set(ids[ids.index(committed) + 1:]) <= set(left)  # ... never past the committed id


class RecordingClient:
    """Wraps a real FhirClient and keeps every Bundle it sends (the resources' ids and statuses)."""

    def __init__(self, client) -> None:
        self._client = client
        self.bundles: list[list[tuple[str, str]]] = []
        self.spans: list[tuple[float, float]] = []
        self.base_url = client.base_url

    def transaction(self, resources):
        self.bundles.append([(r["id"], r.get("status", "")) for r in resources])
        started = time.monotonic()
        time.sleep(0.3)  # slow enough that a second version would overtake the first without the writer's care
        result = self._client.transaction(resources)
        self.spans.append((started, time.monotonic()))
        return result


def test_live_writer_sends_one_version_of_an_id_at_a_time_and_the_latest_wins(fhir, tmp_path):
    from connectors.fhir.client import FhirClient
    from connectors.fhir.deadletter import FileDeadLetters
    from connectors.fhir.worker_sink import LiveFhirWriter

    patient = put_patient(fhir.base_url, "worker-coalesce")

    def obs(i: int, status: str) -> dict:
        return {"resourceType": "Observation", "id": f"wcoalesce{i}", "status": status,
                "code": {"text": "test"}, "subject": {"reference": patient}}

    recording = RecordingClient(FhirClient(fhir.base_url))
    writer = LiveFhirWriter(recording, FileDeadLetters(tmp_path / "dlq.ndjson"), bundle_size=2, concurrency=4,
                            linger=60.0)  # no partial Bundle leaves on its own during the test
    writer.write([obs(1, "preliminary")])
    writer.write([obs(1, "final")])  # replaces the pending preliminary
    writer.write([obs(2, "preliminary")])  # the Bundle (1 final, 2 preliminary) is full: sent
    writer.write([obs(2, "final"), obs(3, "final")])  # 2 is in flight: this Bundle waits for it
    writer.flush()
    assert recording.bundles == [[("wcoalesce1", "final"), ("wcoalesce2", "preliminary")],
                                 [("wcoalesce2", "final"), ("wcoalesce3", "final")]]
    assert recording.spans[1][0] >= recording.spans[0][1]  # the second version left after the first had landed
    with fhir.client() as c:
        assert c.get("/Observation/wcoalesce2").json()["status"] == "final"
    writer.close()


def test_supervisor_runs_two_processes_restarts_the_cluster_when_one_dies_and_drains(redis, fhir, tmp_path):
    """`wearfhir worker --processes 2`: each process serves its own metrics port and takes part of the shards;
    kill -9 of one process → the supervisor restarts the whole cluster; SIGTERM drains both and exits 0."""
    reset_streams(redis.url, 16)
    patient = put_patient(fhir.base_url, "worker-two")
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "wearfhir.cli", "worker", "--redis", redis.url, "--fhir", fhir.base_url,
         "--recovery-dir", str(tmp_path / "recovery"), "--processes", "2", "--snapshot-seconds", "1",
         "--backup-seconds", "0", "--flush-every", "0.2s", "--metrics-port", str(port)], env=env, cwd=tmp_path)
    try:
        wait_for(lambda: _ready(port) and _ready(port + 1), "both processes", timeout=60)
        children = psutil.Process(supervisor.pid).children()
        assert len(children) == 2
        assert len(list((tmp_path / "recovery").glob("part-*.sqlite3"))) == 4  # created for the most processes
        children[1].kill()
        wait_for(lambda: {p.pid for p in psutil.Process(supervisor.pid).children()} - {c.pid for c in children}
                 and _ready(port) and _ready(port + 1), "the restarted cluster", timeout=60)
        enq = subprocess.run([sys.executable, "-m", "wearfhir.cli", "enqueue", str(SAMPLES / "ahp-export.xml"),
                              "--patient", patient, "--redis", redis.url], env=env, capture_output=True, text=True)
        assert enq.returncode == 0, enq.stderr
        wait_for(lambda: _metric(port, "wearfhir_worker_samples_accepted_total")
                 + _metric(port + 1, "wearfhir_worker_samples_accepted_total") >= 6, "the samples")
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=40) == 0
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            for child in psutil.Process(supervisor.pid).children():
                child.kill()
    assert server_resources(fhir.base_url, "Observation", subject=patient)


def test_input_dead_letters_are_listed_and_replayed_onto_their_stream(redis, capsys):
    """`wearfhir input-dlq list` shows letters without values; `replay` puts an entry back on its stream (as after
    an upgrade) and removes the letter; late letters are left for `wearfhir import`."""
    from connectors.streams.deadletter import InputDeadLetter, write_input_dead_letters

    reset_streams(redis.url)
    client = redis_lib.Redis.from_url(redis.url)
    patient = "Patient/worker-dlq"
    entry = encode_entry(patient, [heart_rate(patient, datetime(2024, 5, 3, 8, tzinfo=NEW_YORK), 123.456)],
                         timezone="America/New_York", origin="healthkit", producer="test")
    stream = stream_key(shard_of(patient, SHARDS))
    write_input_dead_letters(client, [
        InputDeadLetter("unknown_metric", "not known", stream, "1-1", "test", patient, "heart_rate", 1, entry),
        InputDeadLetter("late", "too late", stream, "1-2", "test", patient, "heart_rate", 1, entry)])
    assert main(["input-dlq", "list", "--redis", redis.url]) == 0
    listed = capsys.readouterr().out
    assert "unknown_metric" in listed and "late" in listed and "2 input dead letters" in listed
    assert "123.456" not in listed
    assert main(["input-dlq", "replay", "--redis", redis.url]) == 0
    assert "replayed 1 entries" in capsys.readouterr().out
    [(_, back)] = client.xrange(stream)
    assert back == entry
    assert [f[b"reason"] for _, f in client.xrange(INPUT_DEAD_LETTERS)] == [b"late"]


def test_worker_refuses_another_shard_count_before_starting(redis, fhir, tmp_path, capsys):
    reset_streams(redis.url, 16)
    code = main(["worker", "--redis", redis.url, "--fhir", fhir.base_url, "--recovery-dir", str(tmp_path / "r"),
                 "--shards", "8"])
    assert code == 2
    assert "set up with 16 input shards, not 8" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # nothing started or created


def test_live_writer_sends_a_partial_bundle_after_the_linger_time(fhir, tmp_path):
    """One resource, far from a full Bundle, reaches the server within the linger time, not at the next snapshot."""
    from connectors.fhir.client import FhirClient
    from connectors.fhir.deadletter import FileDeadLetters
    from connectors.fhir.worker_sink import LiveFhirWriter

    patient = put_patient(fhir.base_url, "worker-linger")
    writer = LiveFhirWriter(FhirClient(fhir.base_url), FileDeadLetters(tmp_path / "dlq.ndjson"), linger=0.05)
    try:
        writer.write([{"resourceType": "Observation", "id": "wlinger1", "status": "final", "code": {"text": "t"},
                       "subject": {"reference": patient}}])
        with fhir.client() as c:
            wait_for(lambda: c.get("/Observation/wlinger1").status_code == 200, "the lingering Bundle", timeout=5)
    finally:
        writer.close()


def test_a_batch_that_fails_to_process_is_dead_lettered_and_the_key_goes_on():
    """A bug met by one batch must not stop the worker (a restart would meet it again): the batch becomes an
    `unprocessable` dead letter with its samples re-encoded, and the key still takes the next batch."""
    from aggregates.live import LiveSettings
    from connectors.streams.consumer import WorkItem
    from connectors.streams.deadletter import InputDeadLetter
    from flows.live_windows import LiveContext, LiveLogic
    from mappers.batch import BatchMapper
    from mappers.context import FhirContext
    from mappers.sample import SampleBatch
    from mappers.summary import SummaryBuilder
    from mappers.tables import metrics

    table = metrics()
    ctx = LiveContext(table, BatchMapper(table, FhirContext(), "spot"), SummaryBuilder(FhirContext()),
                      frozenset({"hour", "day"}), 14, LiveSettings(), clock=lambda: 1.9e9)
    logic = LiveLogic(ctx, None)
    patient = "Patient/worker-poison"
    at = datetime(2024, 5, 4, 8, tzinfo=NEW_YORK)
    broken = [heart_rate(patient, at, 70.0)._replace(metric="no_such_metric")]  # what entry_items would stop
    out, retain = logic.on_item(WorkItem(SampleBatch(patient, "no_such_metric", broken, "America/New_York"),
                                         "value", "healthkit", "wearfhir:in:1", "5-0", "test"))
    [letter] = out
    assert isinstance(letter, InputDeadLetter) and letter.reason == "unprocessable" and letter.samples == 1
    assert b"data" in letter.fields and "KeyError" in letter.message
    assert logic.snapshot() is None and retain == logic.RETAIN
    good = [heart_rate(patient, at + timedelta(minutes=m), 70.0) for m in range(3)]
    out, _ = logic.on_item(WorkItem(SampleBatch(patient, "heart_rate", good, "America/New_York"), "value",
                                    "healthkit", "wearfhir:in:1", "6-0", "test"))
    assert out == [] and logic.snapshot().kept_samples == 3  # dense heart rate: kept for its windows, no raw


HAE = Path(__file__).resolve().parents[1].parent / "shared" / "samples" / "health-auto-export"


def test_re_sent_health_auto_export_buckets_replace_their_values(redis, fhir, tmp_path):
    """Health Auto Export re-sends today's open buckets: a real body sent twice, then again with two buckets
    changed, ends with the summaries of the changed body alone (slot identity), through `wearfhir enqueue`."""
    import json

    reset_streams(redis.url, SHARDS)
    body = json.loads((HAE / "ivailop7-step-count-2021.json").read_text())
    first = tmp_path / "day.json"
    first.write_text(json.dumps(body))
    points = body["data"]["metrics"][0]["data"]
    points[1]["qty"], points[5]["qty"] = 40, 9.5  # the 00:51 and 01:16 buckets grew between two syncs
    later = tmp_path / "day-later.json"
    later.write_text(json.dumps(body))
    resent, once = put_patient(fhir.base_url, "worker-hae-resent"), put_patient(fhir.base_url, "worker-hae-once")
    for path, patient in ((first, resent), (first, resent), (later, resent), (later, once)):
        assert main(["enqueue", str(path), "--patient", patient, "--redis", redis.url, "--timezone",
                     "Europe/Sofia"]) == 0
    recorder = run_until_idle(settings_for(redis.url, fhir.base_url))
    assert recorder.registry.get_sample_value("wearfhir_worker_samples_replaced_total", {"metric": "steps"}) == 2

    def summaries(patient: str) -> dict:
        found = server_resources(fhir.base_url, "Observation", subject=patient)
        assert set(identifier_counts(found).values()) <= {1}
        return {(o["effectivePeriod"]["start"], o["effectivePeriod"]["end"]): o["valueQuantity"]["value"]
                for o in found.values()}

    assert summaries(resent) == summaries(once)
    day = next(v for (start, end), v in summaries(once).items() if start.endswith("T00:00:00+02:00")
               and end.endswith("T00:00:00+02:00"))
    # steps are written as whole steps (metrics.toml decimals = 0): 127.218… → 127; with 25 and 7.28 it was 110
    assert day == round(34 + 40 + 8.279676364935806 + 17.719295979506633 + 17.719295979506636 + 9.5) == 127
