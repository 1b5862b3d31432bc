"""FHIR sink throughput vs a raw blaster, against the same local FHIR server, in one run.

Usage: ``python bench/sink_bench.py --records 20000 [--sizes 100,250,500] [--concurrency 1,2,4]``

* **raw blaster** — POSTs pre-built transaction Bundles (the same resources, already serialised) with a
  plain ``httpx.Client`` from N threads: no mapping, no retries, no bookkeeping. The ceiling for this
  server.
* **wearfhir sink** — ``FhirWriter`` (the sink's engine: grouping, orjson, bounded concurrency, retries,
  entry-status accounting) writing the same resources.

Both write the same resources to the test server (sekmet-fhir behind the HAPI-strictness middleware,
started here). Resources are the raw and summary Observations of a synthetic export (``--raw all``),
written under a fresh Patient for each contender. Read the ratio; the server (SQLite, one process) is
the bottleneck for both.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bytewax.testing import run_main  # noqa: E402

from connectors.fhir.client import FhirClient  # noqa: E402
from connectors.fhir.deadletter import FileDeadLetters  # noqa: E402
from connectors.fhir.sink import FhirWriter  # noqa: E402
from flows.import_flow import get_flow  # noqa: E402
from tests.servers import fhir_server  # noqa: E402
from wearfhir.settings import ImportSettings  # noqa: E402
from wearfhir.synth import SynthSpec, write_export  # noqa: E402

HERE = Path(__file__).resolve().parent


def resources_for(export: Path, patient: str, work: Path) -> list[dict[str, Any]]:
    """The Observations (raw, all metrics, and summaries) and Devices an import writes for ``patient``."""
    out = work / f"ndjson-{patient.split('/')[1]}"
    run_main(get_flow(ImportSettings(source=export, patient=patient, out=out, raw="all")))
    found = []
    for name in ("Device.ndjson", "Observation.ndjson"):
        found.extend(orjson.loads(line) for line in (out / name).read_bytes().splitlines())
    return found


def new_patient(base: str) -> str:
    pid = f"b{uuid.uuid4().hex[:12]}"
    httpx.put(f"{base}/Patient/{pid}", json={"resourceType": "Patient", "id": pid}, timeout=30).raise_for_status()
    return f"Patient/{pid}"


def blaster(base: str, resources: list[dict[str, Any]], size: int, concurrency: int) -> float:
    devices = [r for r in resources if r["resourceType"] == "Device"]
    rest = [r for r in resources if r["resourceType"] != "Device"]
    with FhirClient(base) as client:  # only to build the same Bundles the sink sends
        bodies = [orjson.dumps(client.bundle(devices))] + [
            orjson.dumps(client.bundle(rest[i:i + size])) for i in range(0, len(rest), size)]
    headers = {"Content-Type": "application/fhir+json", "Prefer": "return=minimal"}
    local = threading.local()

    def post(body: bytes) -> None:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(timeout=300)
        client.post(base, content=body, headers=headers).raise_for_status()

    started = time.perf_counter()
    post(bodies[0])
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(post, bodies[1:]))
    return time.perf_counter() - started


def sink(base: str, resources: list[dict[str, Any]], size: int, concurrency: int, work: Path) -> float:
    started = time.perf_counter()
    writer = FhirWriter(FhirClient(base, max_connections=concurrency + 2, timeout=300),
                        FileDeadLetters(work / "dlq.ndjson"), bundle_size=size, concurrency=concurrency)
    writer.write_devices(r for r in resources if r["resourceType"] == "Device")
    writer.write([r for r in resources if r["resourceType"] != "Device"])
    result = writer.close()
    seconds = time.perf_counter() - started
    assert writer.dead_lettered == 0 and result.created == len(resources), (result, len(resources))
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--sizes", default="100,250,500")
    parser.add_argument("--concurrency", default="1,2,4")
    args = parser.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    levels = [int(x) for x in args.concurrency.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        export = write_export(work / "export.zip", SynthSpec(records=args.records, broken_dtd=False, traps=False))
        (work / "server").mkdir()
        with fhir_server(work / "server") as server:
            for size in sizes:
                for conc in levels:
                    timings = {}
                    for name in ("raw blaster", "wearfhir sink"):
                        patient = new_patient(server.base_url)
                        resources = resources_for(export, patient, work)  # ids differ per patient: fresh writes
                        if name == "raw blaster":
                            timings[name] = blaster(server.base_url, resources, size, conc)
                        else:
                            timings[name] = sink(server.base_url, resources, size, conc, work)
                    n = len(resources)
                    row = {"bundle_size": size, "concurrency": conc, "resources": n,
                           "blaster_per_s": round(n / timings["raw blaster"]),
                           "sink_per_s": round(n / timings["wearfhir sink"]),
                           "ratio": round(timings["raw blaster"] / timings["wearfhir sink"], 3)}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / f"sink-{args.records}.json").write_text(json.dumps(rows, indent=2) + "\n")
    print("\n| Bundle size | concurrency | blaster resources/s | sink resources/s | sink / blaster |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['bundle_size']} | {r['concurrency']} | {r['blaster_per_s']:,} | {r['sink_per_s']:,} | "
              f"{r['ratio']:.0%} |")


if __name__ == "__main__":
    main()
