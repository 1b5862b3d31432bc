"""Chaos: kill -9 the worker ≥ 20 times (1 and 2 processes, rescaled), 429/503 storms, the FHIR server down 60 s,
Redis restarted (AOF), producers adding throughout → the server ends with exactly what `wearfhir import` writes."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis as redis_lib

from connectors.streams.producer import COMMITTED_KEY, CONFIG_KEY, StreamProducer, stream_key
from tests.servers import ROOT, fault_proxy, fhir_server, free_port, redis_server
from tests.worker_helpers import (
    SHARDS,
    export_batches,
    final_form,
    identifier_counts,
    server_resources,
    shuffled_entries,
)
from wearfhir.cli import main
from wearfhir.synth import SynthSpec, write_export

PATIENTS = {"chaos-a": ("America/New_York", 1), "chaos-b": ("Europe/Berlin", 2), "chaos-c": ("Asia/Kolkata", 3)}
KILLS_ONE, KILLS_TWO = 12, 9


class Cluster:
    """Worker processes started with ``bytewax.run`` on one recovery directory; killed and restarted at will."""

    def __init__(self, settings: dict, recovery: Path, log: Path) -> None:
        self.env = dict(os.environ, PYTHONPATH=str(ROOT), WEARFHIR_WORKER_SETTINGS=json.dumps(settings))
        self.recovery = recovery
        self.log = log
        self.procs: list[subprocess.Popen[bytes]] = []
        self.kills = 0

    def start(self, processes: int) -> None:
        base = [sys.executable, "-m", "bytewax.run", "flows.worker:flow", "-r", str(self.recovery), "-s", "1",
                "-b", "0"]
        if processes > 1:
            addresses = ";".join(f"127.0.0.1:{free_port()}" for _ in range(processes))
            commands = [[*base, "-i", str(k), "-a", addresses] for k in range(processes)]
        else:
            commands = [base]
        with self.log.open("ab") as out:
            self.procs = [subprocess.Popen(c, env=self.env, stdout=out, stderr=subprocess.STDOUT) for c in commands]

    def kill_one(self, rng: random.Random) -> None:
        """kill -9 one process; the others of its cluster exit by themselves (then they are reaped)."""
        victim = rng.choice(self.procs)
        victim.send_signal(signal.SIGKILL)
        self.kills += 1
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def drain(self) -> list[int]:
        for proc in self.procs:
            proc.send_signal(signal.SIGTERM)
        return [proc.wait(timeout=60) for proc in self.procs]

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def servers(tmp_path_factory) -> Iterator[tuple]:
    base = tmp_path_factory.mktemp("chaos")
    (base / "w").mkdir()
    (base / "o").mkdir()
    with redis_server(base, aof=True) as redis, fhir_server(base / "w") as fhir, \
            fhir_server(base / "o") as oracle, fault_proxy(fhir.base_url) as proxy:
        yield redis, fhir, oracle, proxy


def caught_up(url: str) -> bool:
    """Every shard's committed id is its stream's last id."""
    client = redis_lib.Redis.from_url(url)
    try:
        committed = client.hgetall(COMMITTED_KEY)
        for shard in range(SHARDS):
            key = stream_key(shard)
            if not client.exists(key):
                continue
            last = client.xinfo_stream(key)["last-generated-id"]
            if committed.get(key.encode()) != last:
                return False
        return True
    finally:
        client.close()


def test_chaos_ends_with_exactly_the_batch_result(servers, tmp_path):
    redis, fhir, oracle, proxy = servers
    rng = random.Random(2026)
    entries = []
    for pid, (zone, seed) in PATIENTS.items():
        export = write_export(tmp_path / f"{pid}.zip", SynthSpec(records=3_000, seed=seed, timezone=zone))
        for server in (fhir, oracle):
            httpx.put(f"{server.base_url}/Patient/{pid}", json={"resourceType": "Patient", "id": pid}
                      ).raise_for_status()
        assert main(["import", str(export), "--patient", f"Patient/{pid}", "--fhir", oracle.base_url,
                     "--no-progress", "--dead-letters", str(tmp_path / "dlq.ndjson"),
                     "--rejected", str(tmp_path / "rejected.ndjson")]) == 0
        entries += shuffled_entries(export_batches(export, f"Patient/{pid}"), rng)
    rng.shuffle(entries)

    client = redis_lib.Redis.from_url(redis.url)
    client.hset(CONFIG_KEY, "shards", str(SHARDS))
    produced = threading.Event()
    pace = 45.0 / len(entries)  # the producers keep adding for most of the kills

    def produce() -> None:
        producer = StreamProducer(redis_lib.Redis.from_url(redis.url), "chaos", shards=SHARDS, pipeline_entries=1)
        for batch, part in entries:
            while True:  # at-least-once: a Redis restart makes the producer retry (duplicates are absorbed)
                try:
                    producer.add(batch.patient, part, timezone=batch.timezone, origin="healthkit")
                    producer.flush()
                    break
                except redis_lib.RedisError:
                    producer._pipe = producer.client.pipeline(transaction=False)
                    producer._queued = 0
                    time.sleep(0.2)
            time.sleep(pace)
        produced.set()

    settings = {"redis_url": redis.url, "fhir": {"url": proxy.base_url, "max_attempts": 3, "timeout": 10},
                "flush_every": 0.2, "horizon": 100 * 365 * 86400.0, "idle": 0.0, "shards": SHARDS,
                "idle_backoff": 0.05}
    (tmp_path / "recovery").mkdir()
    subprocess.run([sys.executable, "-m", "bytewax.recovery", str(tmp_path / "recovery"), "4"], check=True)
    cluster = Cluster(settings, tmp_path / "recovery", tmp_path / "worker.log")
    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    try:
        proxy.every, proxy.every_faults = 3, ("429", "503", "reset")  # a storm for the first kills
        for k in range(KILLS_ONE):
            cluster.start(1)
            time.sleep(rng.uniform(1.5, 5.0))
            if k == 5:
                proxy.every = 0
                redis.restart(down_seconds=1.0)  # AOF (appendfsync always): nothing acknowledged is lost
            cluster.kill_one(rng)
        outage_until = time.monotonic() + 60.0  # the FHIR server is away for a minute, kills go on meanwhile
        proxy.every, proxy.every_faults = 1, ("503",)
        for _ in range(KILLS_TWO):
            cluster.start(2)  # a different process count: the same recovery directory
            time.sleep(rng.uniform(2.0, 6.0))
            cluster.kill_one(rng)
            if time.monotonic() > outage_until:
                proxy.every = 0
        remaining = outage_until - time.monotonic()
        cluster.start(1)
        if remaining > 0:
            time.sleep(remaining)
        proxy.every = 0
        assert produced.wait(120), "the producer did not finish"
        deadline = time.monotonic() + 180
        while not caught_up(redis.url):
            assert time.monotonic() < deadline, "the worker did not catch up after the chaos"
            time.sleep(0.5)
        time.sleep(3)  # the last windows flush (0.2 s timers) and the sink flushes at the next snapshot
        assert cluster.drain() == [0]
    finally:
        cluster.stop()

    log = (tmp_path / "worker.log").read_text(errors="replace")
    assert cluster.kills >= 20
    assert proxy.seen["429"] and proxy.seen["503"] and proxy.seen["reset"]
    assert "FHIR server unavailable beyond the retry budget" in log  # the outage blocked, it did not drop
    for pid in PATIENTS:
        for rtype in ("Observation", "DiagnosticReport"):
            worker = server_resources(fhir.base_url, rtype, subject=f"Patient/{pid}")
            batch = server_resources(oracle.base_url, rtype, subject=f"Patient/{pid}")
            missing, extra = set(batch) - set(worker), set(worker) - set(batch)
            assert not missing and not extra, f"{pid} {rtype}: {len(missing)} lost, {len(extra)} extra"
            different = [i for i in batch if final_form(worker[i]) != final_form(batch[i])]
            assert not different, f"{pid}: {len(different)} {rtype}s differ from the batch import"
            assert set(identifier_counts(worker).values()) <= {1}, "an identifier was written twice"
