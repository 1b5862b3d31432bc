"""The ``wearfhir`` command line: validates arguments, wires progress bars, runs flows, prints reports."""

from __future__ import annotations

import argparse
import gc
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from wearfhir.errors import (
    ConfigError,
    DataError,
    ServiceError,
    UnsafeInputError,
    UnsupportedInputError,
    WearfhirError,
)

__all__ = ["main"]

log = logging.getLogger("wearfhir")

EXIT_OK = 0
EXIT_INCOMPLETE = 1
EXIT_USAGE = 2


def _import(args: argparse.Namespace) -> int:
    from bytewax.testing import run_main

    from connectors.ndjson import REJECTED_FILE
    from flows.import_flow import get_flow
    from mappers.context import FhirContext
    from wearfhir.progress import ImportProgress
    from wearfhir.report import ImportReport
    from wearfhir.settings import ImportSettings

    fhir = getattr(args, "fhir", None)
    if args.out is None and fhir is None:
        return _usage_error("give --out DIR (FHIR NDJSON files), --fhir URL (a FHIR server), or both")
    if (args.patient is None) == (getattr(args, "patient_identifier", None) is None):
        return _usage_error("give exactly one of --patient Patient/ID and --patient-identifier SYSTEM|VALUE")
    if args.patient is None and fhir is None:
        return _usage_error("--patient-identifier looks the Patient up on a FHIR server: it needs --fhir URL")
    if getattr(args, "rejected", None) is not None and args.out is not None:
        return _usage_error("--rejected is for runs without --out: with --out, rejected records are listed "
                            "in OUT/rejected.ndjson")
    writer_factory = None
    patient = args.patient
    if fhir is not None and args.dead_letters is None and args.out is not None:
        args.dead_letters = args.out / "dead-letters.ndjson"
    if fhir is not None:
        target = _fhir_target(args)
        from connectors.fhir.target import build_client, resolve_patient

        with build_client(target) as client:
            patient = resolve_patient(client, FhirContext(), args.patient, args.patient_identifier,
                                      args.create_patient)
        writer_factory = _writer_factory(target)
    try:
        rejected = None
        if args.out is None:  # no output directory: list rejected records next to the dead letters
            dead_letters = getattr(args, "dead_letters", None)
            rejected = args.rejected or (dead_letters.parent if dead_letters else Path()) / REJECTED_FILE
        settings = ImportSettings(source=args.source, patient=patient, out=args.out, raw=args.raw,
                                  summaries=args.summaries, cgm_days=args.cgm_days, rejected=rejected,
                                  timezone=getattr(args, "timezone", None))
    except ValidationError as exc:
        return _usage_error(_option_errors(exc))
    report = ImportReport()
    _tune_gc()
    started = time.perf_counter()
    with ImportProgress(enabled=args.progress) as progress:
        flow = get_flow(settings, report, progress=progress.update, fhir_writer=writer_factory)
        progress.total = flow_source_size(settings)
        _run_flow(run_main, flow)
    seconds = time.perf_counter() - started
    print(report.render(seconds))
    if settings.out is not None:
        print(f"Output: {settings.out}/")
    if fhir is not None:
        print(f"FHIR server: {fhir} (patient {patient})")
    failure = report.failure
    if failure is not None:
        print(f"FAILED: {failure}", file=sys.stderr)
        return EXIT_INCOMPLETE
    return EXIT_OK if report.complete else EXIT_INCOMPLETE


def _run_flow(run: Any, flow: Any) -> None:
    """Run a dataflow; a wearfhir error raised inside it (e.g. the server is down) is re-raised as itself."""
    try:
        run(flow)
    except WearfhirError:
        raise
    except Exception as exc:
        cause: BaseException | None = exc
        while cause is not None and not isinstance(cause, WearfhirError):
            cause = cause.__cause__ or cause.__context__
        if cause is not None:
            raise cause from None
        raise


def _fhir_target(args: argparse.Namespace, url: str | None = None) -> Any:
    from connectors.fhir.target import FhirTarget

    fields = {name: getattr(args, name) for name in FhirTarget.model_fields
              if name != "url" and getattr(args, name, None) is not None}
    try:
        return FhirTarget(url=url or args.fhir, **fields)
    except ValidationError as exc:
        raise ConfigError(_option_errors(exc)) from None


def _writer_factory(target: Any) -> Any:
    def make() -> Any:
        from connectors.fhir.deadletter import open_store
        from connectors.fhir.sink import FhirWriter
        from connectors.fhir.target import build_client

        return FhirWriter(build_client(target), open_store(target.redis_url, target.dead_letters),
                          bundle_size=target.bundle_size, concurrency=target.concurrency)

    return make


def _dlq(args: argparse.Namespace) -> int:
    from connectors.fhir.deadletter import open_store

    target_file = args.dead_letters or Path("dead-letters.ndjson")
    store = open_store(args.redis_url, target_file)
    letters = store.list()
    if args.dlq_command == "list":
        print(f"{len(letters):,} dead letters in {store.describe()}")
        for letter in letters:
            print(f"  [{letter.key}] {letter.reference}  HTTP {letter.status}  {letter.at}  {letter.message}")
        return EXIT_OK
    from connectors.fhir.client import BundleResult
    from connectors.fhir.target import build_client

    if not letters:
        print(f"nothing to replay in {store.describe()}")
        return EXIT_OK
    target = _fhir_target(args)
    landed: list[str] = []
    still: list[tuple[str, str]] = []
    total = BundleResult()
    with build_client(target) as client:
        for letter in letters:  # one at a time: each answer belongs to one letter
            result = client.transaction([letter.resource])
            total.add(BundleResult(result.created, result.updated, result.retries, result.bundles))
            if result.rejected:
                still.append((letter.key, result.rejected[0].message))
            else:
                landed.append(letter.key)
    store.remove(landed)
    print(f"replayed {len(letters):,}: {len(landed):,} landed ({total.created:,} created, {total.updated:,} "
          f"updated), {len(still):,} still refused")
    for key, message in still:
        print(f"  [{key}] {message}")
    return EXIT_OK if not still else EXIT_INCOMPLETE


def _tune_gc() -> None:
    """Garbage-collector settings for a long import (measured in bench/summary_share.py: ~20 % less GC time).

    An import allocates millions of short-lived, acyclic objects; the default young-generation threshold
    (700) makes the collector rescan the long-lived set thousands of times. Objects alive at start-up
    (modules, tables) are frozen out of collection.
    """
    gc.freeze()
    gc.set_threshold(50_000, 20, 50)


def flow_source_size(settings: object) -> int | None:
    """Uncompressed size of the export's XML, for the progress bar total (None for a Takeout: no bar total)."""
    from connectors.google_fit.takeout import looks_like_takeout
    from connectors.healthkit.export_file import locate_export

    if looks_like_takeout(settings.source):  # type: ignore[attr-defined]
        return None
    return locate_export(settings.source).size  # type: ignore[attr-defined]


def _mappings(args: argparse.Namespace) -> int:
    from mappers.tables import healthkit_table, metrics

    table = healthkit_table()
    mapped, unmapped = table.covered()
    total = len(mapped) + len(unmapped)
    print(f"HealthKit: {len(mapped)} of {total} known types mapped")
    table_metrics = metrics()
    for ident in mapped:
        spec = table.types.get(ident)
        key = spec.metric if spec else (table.correlations[ident][0] if ident in table.correlations
                                        else table.workout_metric)
        metric = table_metrics[key]
        code = metric.codings[0].code if metric.codings else "(Apple code only)"
        print(f"  mapped    {ident:<58} {key:<26} {code:<9} {metric.unit}")
    if args.all:
        for ident in unmapped:
            print(f"  unmapped  {ident:<58} {table.known_unmapped[ident]}")
        for prefix, reason in sorted(table.known_unmapped_prefixes.items()):
            print(f"  unmapped  {prefix + '*':<58} {reason}")
    else:
        print(f"  ({len(unmapped)} known but unmapped types: `wearfhir mappings --all` lists them with reasons)")
    return EXIT_OK


def _demo(args: argparse.Namespace) -> int:
    from wearfhir.synth import SynthSpec, write_export

    export = args.workdir / "export.zip"
    if not export.exists() or args.regenerate:
        args.workdir.mkdir(parents=True, exist_ok=True)
        print(f"Writing a synthetic Apple Health export with ~{args.records:,} records to {export} ...")
        write_export(export, SynthSpec(records=args.records))
    ns = argparse.Namespace(source=export, patient="Patient/demo-patient", patient_identifier=None,
                            out=args.workdir / "fhir", raw=args.raw, summaries=args.summaries,
                            cgm_days=args.cgm_days, fhir=None, progress=args.progress, timezone=args.timezone)
    return _import(ns)


def _enqueue(args: argparse.Namespace) -> int:
    import redis

    from connectors.streams.producer import StreamProducer, default_producer_id
    from mappers.sample import Rejection, SampleBatch, SourceReport
    from wearfhir.settings import PATIENT_REFERENCE

    if not PATIENT_REFERENCE.fullmatch(args.patient):
        return _usage_error("--patient must be a FHIR reference such as Patient/123")
    client = redis.Redis.from_url(args.redis_url)
    try:
        producer = StreamProducer(client, default_producer_id("enqueue"), shards=args.shards or 0)
    except redis.RedisError as exc:
        raise ServiceError(f"cannot reach Redis at the given --redis URL ({type(exc).__name__})") from None
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    rejections: dict[str, int] = {}
    stopped = None
    zone = None
    started = time.perf_counter()
    try:
        for item, origin, identity in _enqueue_items(args):
            if isinstance(item, SampleBatch):
                zone = item.timezone
                producer.add(item.patient, item.samples, timezone=item.timezone, origin=origin, identity=identity)
            elif isinstance(item, Rejection):
                rejections[item.reason] = rejections.get(item.reason, 0) + 1
            elif isinstance(item, SourceReport):
                stopped = item.stopped
        producer.flush()
    except redis.RedisError as exc:
        raise ServiceError(f"Redis failed after {producer.entries:,} entries ({type(exc).__name__}); run the same "
                           "command again when it is back (the worker drops the repeats)") from None
    seconds = time.perf_counter() - started
    print(f"Enqueued {producer.samples:,} samples of {args.patient} in {producer.entries:,} entries "
          f"({producer.bytes / 1e6:.1f} MB) on {producer.shards} shards in {seconds:.1f} s; time zone "
          f"{zone or 'none known (the export offsets)'}")
    for reason, count in sorted(rejections.items(), key=lambda kv: -kv[1]):
        print(f"  rejected {count:,}: {reason}")
    if stopped:
        print(f"wearfhir: reading stopped early: {stopped}", file=sys.stderr)
        return EXIT_INCOMPLETE
    if producer.samples == 0:
        print("FAILED: no sample was read from the export", file=sys.stderr)
        return EXIT_INCOMPLETE
    return EXIT_OK


def _enqueue_items(args: argparse.Namespace) -> Any:
    """(item, origin, identity) from the file: an Apple Health export, a Google Takeout, or a Health Auto Export
    JSON body (``.json``, ``.json.gz``: its re-sent buckets replace by slot)."""
    from connectors.google_fit.takeout import looks_like_takeout, read_takeout
    from connectors.healthkit.source import read_export

    name = args.source.name.lower()
    if name.endswith((".json", ".json.gz")):
        import gzip

        from connectors.healthkit.hae import normalize_hae

        body = args.source.read_bytes()
        result = normalize_hae(gzip.decompress(body) if name.endswith(".gz") else body, args.patient, args.timezone)
        for batch in result.batches:
            yield batch, "health_auto_export", result.identity.get(batch.metric, "slot")
        for rejection in result.rejections:
            yield rejection, "health_auto_export", "slot"
    elif looks_like_takeout(args.source):
        for item in read_takeout(args.source, args.patient, args.timezone):
            yield item, "google_fit", "value"
    else:
        for item in read_export(args.source, args.patient, timezone=args.timezone):
            yield item, "healthkit", "value"


def _worker(args: argparse.Namespace) -> int:
    from wearfhir.settings import WorkerSettings, parse_duration
    from wearfhir.supervisor import ClusterPlan, ensure_recovery, run_supervised

    fhir = _fhir_target(args).model_dump(mode="json", exclude_defaults=True)
    if args.processes < 1:
        return _usage_error("--processes must be at least 1")
    if bool(args.addresses) != (args.process_id is not None):
        return _usage_error("--addresses and --process-id go together (one process of a multi-machine cluster)")
    try:
        settings = WorkerSettings(
            redis_url=args.redis_url, fhir=fhir, raw=args.raw, summaries=args.summaries, cgm_days=args.cgm_days,
            shards=args.shards, horizon=parse_duration(args.horizon), **({"grace": args.grace} if args.grace else {}),
            flush_every=parse_duration(args.flush_every), metrics_port=args.metrics_port,
            metrics_host=args.metrics_host, retain_seconds=None if args.retain == "forever" else parse_duration(
                args.retain), backup_seconds=args.backup_seconds)
    except ValidationError as exc:
        return _usage_error(_option_errors(exc))
    except ValueError as exc:
        return _usage_error(str(exc))
    _check_redis_shards(settings.redis_url, settings.shards)
    addresses = tuple(a for a in (args.addresses or "").split(";") if a)
    wanted = max(args.recovery_partitions or 0, args.processes, len(addresses))
    have = ensure_recovery(args.recovery_dir, wanted)
    if have < max(args.processes, len(addresses)):
        print(f"wearfhir: warning: {args.recovery_dir} has {have} recovery partitions, fewer than the "
              f"{max(args.processes, len(addresses))} processes asked for", file=sys.stderr)
    plan = ClusterPlan(args.recovery_dir, args.snapshot_seconds, int(args.backup_seconds), args.processes,
                       addresses, args.process_id, restart=not args.no_restart)
    return run_supervised(settings, plan)


def _input_dlq(args: argparse.Namespace) -> int:
    import redis

    from connectors.streams.deadletter import list_input_dead_letters, replay_input_dead_letters

    client = redis.Redis.from_url(args.redis_url, socket_connect_timeout=5)
    reasons = set(args.reason) if args.reason else None
    try:
        if args.input_dlq_command == "list":
            letters = list_input_dead_letters(client, reasons)
            for letter_id, fields in letters:
                head = {k: fields.get(k.encode(), b"").decode(errors="replace")
                        for k in ("reason", "stream", "entry", "patient", "metric", "samples", "at")}
                print(f"{letter_id}  {head['reason']:<16} {head['stream']} {head['entry']}  {head['patient']} "
                      f"{head['metric']} {head['samples']} samples  {head['at']}")
            print(f"{len(letters):,} input dead letters")
            return EXIT_OK
        wanted = reasons or {"undecodable", "unknown_version", "unknown_metric", "unknown_origin", "unprocessable"}
        replayed, skipped = replay_input_dead_letters(client, wanted)
        print(f"replayed {replayed:,} entries onto their input streams; {skipped:,} letters had no entry to replay"
              + ("; late letters are re-imported with `wearfhir import`, not replayed" if "late" in wanted else ""))
        return EXIT_OK
    except redis.RedisError as exc:
        raise ServiceError(f"cannot reach Redis at the given --redis URL ({type(exc).__name__})") from None
    finally:
        client.close()


def _check_redis_shards(url: str, shards: int | None) -> int:
    """Reach Redis and agree on the shard count before any process starts (a mismatch would loop restarts)."""
    import redis

    from connectors.streams.producer import configured_shards

    client = redis.Redis.from_url(url, socket_connect_timeout=5)
    try:
        return configured_shards(client, shards)
    except redis.RedisError as exc:
        raise ServiceError(f"cannot reach Redis at the given --redis URL ({type(exc).__name__})") from None
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    finally:
        client.close()


def _view(args: argparse.Namespace) -> int:
    from wearfhir.view import serve_viewer

    serve_viewer(args.host, args.port)
    return EXIT_OK


def _validate(args: argparse.Namespace) -> int:
    from wearfhir.validate import validate_ndjson

    failures = 0
    for path in args.files:
        checked, errors = validate_ndjson(Path(path))
        failures += len(errors)
        print(f"{path}: {checked:,} resources checked, {len(errors):,} invalid")
        for line, message in errors[:20]:
            print(f"  line {line}: {message}")
    return EXIT_OK if failures == 0 else EXIT_INCOMPLETE


def _option_errors(exc: ValidationError) -> str:
    """Settings validation errors named by their command-line options (``--cgm-days: ...``)."""
    return "; ".join(f"--{str(e['loc'][0]).replace('_', '-')}: {e['msg']}" for e in exc.errors())


def _usage_error(message: str) -> int:
    print(f"wearfhir: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wearfhir", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details (never values)")
    sub = parser.add_subparsers(dest="command", required=True)

    imp = sub.add_parser("import", help="import an Apple Health export (zip or xml) into FHIR files and/or a server")
    imp.add_argument("source", type=Path, help="export.zip or export.xml")
    who = imp.add_argument_group("patient")
    who.add_argument("--patient", help="the FHIR Patient the data belongs to, e.g. Patient/123 (must exist on "
                                       "the server with --fhir)")
    who.add_argument("--patient-identifier", metavar="SYSTEM|VALUE",
                     help="find the Patient on the --fhir server by identifier instead")
    who.add_argument("--create-patient", action="store_true",
                     help="with --patient-identifier: create the Patient (deterministic id) if it is missing")
    imp.add_argument("--out", type=Path, help="output directory (FHIR Bulk Data NDJSON)")
    imp.add_argument("--rejected", type=Path, metavar="FILE",
                     help="without --out: file listing rejected input records (reason and line, never values; "
                          "default rejected.ndjson next to the dead-letter file). With --out they go to "
                          "OUT/rejected.ndjson")
    imp.add_argument("--raw", choices=["all", "spot", "none"], default="spot",
                     help="raw Observations to write: spot metrics only (default), all, or none")
    _summary_flags(imp)
    _timezone_flag(imp)
    _fhir_flags(imp, required=False)
    _progress_flags(imp)
    imp.set_defaults(run=_import)

    dlq = sub.add_parser("dlq", help="list or replay resources a FHIR server refused (dead letters)")
    dlq_sub = dlq.add_subparsers(dest="dlq_command", required=True)
    dlq_list = dlq_sub.add_parser("list", help="show dead letters: resource, HTTP status, the server's reason")
    _dlq_store_flags(dlq_list)
    dlq_list.set_defaults(run=_dlq)
    replay = dlq_sub.add_parser("replay", help="re-send dead letters; those that land are removed")
    _fhir_flags(replay, required=True)
    replay.set_defaults(run=_dlq)

    enq = sub.add_parser("enqueue", help="stream a file into the worker's input streams (Redis): an Apple Health "
                                         "export, a Google Takeout (Fit) or a Health Auto Export JSON body")
    enq.add_argument("source", type=Path, help="export.zip/.xml, a Takeout zip or folder, or an HAE .json[.gz]")
    enq.add_argument("--patient", required=True, help="the FHIR Patient the data belongs to, e.g. Patient/123")
    enq.add_argument("--redis", dest="redis_url", required=True, metavar="URL", help="redis://host:6379/0")
    enq.add_argument("--shards", type=int, help="input shards (set once per deployment; default: as set, else 16)")
    _timezone_flag(enq)
    enq.set_defaults(run=_enqueue)

    wrk = sub.add_parser("worker", help="run the stream worker: Redis Streams in, FHIR out, until stopped")
    wrk.add_argument("--redis", dest="redis_url", required=True, metavar="URL",
                     help="Redis holding the input streams (redis://host:6379/0); FHIR dead letters go there too")
    wrk.add_argument("--recovery-dir", type=Path, required=True,
                     help="Bytewax recovery directory (created with --recovery-partitions partitions if empty)")
    wrk.add_argument("--recovery-partitions", type=int, metavar="N",
                     help="partitions to create in a new recovery directory: the most processes you will ever "
                          "run (default: --processes, at least 4)", default=4)
    wrk.add_argument("--processes", type=int, default=1, help="worker processes on this machine (default 1)")
    wrk.add_argument("--addresses", metavar="H:P;H:P", help="every process of a multi-machine cluster")
    wrk.add_argument("--process-id", type=int, help="with --addresses: which of them this machine runs")
    wrk.add_argument("--snapshot-seconds", type=int, default=10, help="epoch and snapshot interval (default 10)")
    wrk.add_argument("--backup-seconds", type=float, default=3600,
                     help="keep snapshots (and input entries) this long for restores from backups (default 3600)")
    wrk.add_argument("--raw", choices=["all", "spot", "none"], default="spot",
                     help="raw Observations to write: spot metrics only (default), all, or none")
    _summary_flags(wrk)
    wrk.add_argument("--shards", type=int, help="input shards (set once per deployment; default: as set, else 16)")
    wrk.add_argument("--horizon", default="3d", help="how long a window's state is kept after its end (default 3d)")
    wrk.add_argument("--grace", metavar="KIND=DURATION,…",
                     help="how long after its end a window stays preliminary (default hour=10m,day=2h,night=2h,"
                          "cgm=2h)")
    wrk.add_argument("--flush-every", default="30s",
                     help="how often a key with new samples writes its open windows (default 30s)")
    wrk.add_argument("--retain", default="7d",
                     help="input history kept in Redis behind the committed position (default 7d; 'forever')")
    wrk.add_argument("--metrics-port", type=int, default=0,
                     help="serve Prometheus /metrics, /healthz, /readyz on this port (+ process id); 0 = off")
    wrk.add_argument("--metrics-host", default="127.0.0.1", help="address of the metrics server")
    wrk.add_argument("--no-restart", action="store_true", help="exit when a process dies instead of restarting")
    _fhir_flags(wrk, required=True, dead_letters=False)
    wrk.set_defaults(run=_worker)

    idlq = sub.add_parser("input-dlq", help="list or replay the worker's input dead letters (wearfhir:in:dead)")
    idlq_sub = idlq.add_subparsers(dest="input_dlq_command", required=True)
    for name, text in (("list", "show input dead letters: reason, stream entry, patient, metric, count (no values)"),
                       ("replay", "put the entries back on their streams (after a fix or an upgrade) and remove "
                                  "the letters; default: every reason but 'late'")):
        cmd = idlq_sub.add_parser(name, help=text)
        cmd.add_argument("--redis", dest="redis_url", required=True, metavar="URL", help="redis://host:6379/0")
        cmd.add_argument("--reason", action="append", metavar="REASON",
                         help="only letters of this reason (repeatable): undecodable, unknown_version, "
                              "unknown_metric, unknown_origin, unprocessable, late")
        cmd.set_defaults(run=_input_dlq)

    maps = sub.add_parser("mappings", help="list which HealthKit types are mapped (N of M)")
    maps.add_argument("--all", action="store_true", help="also list known but unmapped types with reasons")
    maps.set_defaults(run=_mappings)

    demo = sub.add_parser("demo", help="generate a synthetic export and import it (no servers needed)")
    demo.add_argument("--workdir", type=Path, default=Path("demo-output"))
    demo.add_argument("--records", type=int, default=300_000)
    demo.add_argument("--raw", choices=["all", "spot", "none"], default="spot")
    _summary_flags(demo)
    _timezone_flag(demo)
    demo.add_argument("--regenerate", action="store_true", help="write a new export even if one exists")
    _progress_flags(demo)
    demo.set_defaults(run=_demo)

    view = sub.add_parser("view", help="serve the SMART on FHIR viewer (static files) for an EHR or an open server")
    view.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    view.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    view.set_defaults(run=_view)

    val = sub.add_parser("validate", help="validate NDJSON resources against FHIR R4 (fhir.resources)")
    val.add_argument("files", nargs="+", help="NDJSON files")
    val.set_defaults(run=_validate)
    return parser


def _fhir_flags(parser: argparse.ArgumentParser, required: bool, dead_letters: bool = True) -> None:
    group = parser.add_argument_group("FHIR server (secrets come from environment variables or files, "
                                      "never the command line)")
    group.add_argument("--fhir", metavar="URL", required=required,
                       help="FHIR R4 base URL to write to (e.g. http://hapi:8080/fhir)")
    group.add_argument("--bundle-size", type=int, help="resources per transaction Bundle (default 500)")
    group.add_argument("--concurrency", type=int, help="transaction Bundles in flight (default 4)")
    group.add_argument("--gzip", action="store_true", default=None, help="gzip request bodies")
    group.add_argument("--timeout", type=float, help="seconds to wait for a response (default 60)")
    group.add_argument("--max-attempts", type=int, help="attempts per request before giving up (default 8)")
    group.add_argument("--auth", choices=["none", "bearer", "basic", "smart"], help="authentication (default none)")
    group.add_argument("--token-env", help="bearer: environment variable holding the token "
                                           "(default WEARFHIR_FHIR_TOKEN)")
    group.add_argument("--token-file", type=Path, help="bearer: file holding the token")
    group.add_argument("--basic-user", help="basic: user name")
    group.add_argument("--password-env", help="basic: environment variable holding the password "
                                              "(default WEARFHIR_FHIR_PASSWORD)")
    group.add_argument("--password-file", type=Path, help="basic: file holding the password")
    group.add_argument("--smart-client-id", help="SMART Backend Services: client id")
    group.add_argument("--smart-key", type=Path, help="SMART: PEM private key that signs the client assertion")
    group.add_argument("--smart-alg", choices=["RS384", "ES384"], help="SMART: signing algorithm (default RS384)")
    group.add_argument("--smart-kid", help="SMART: key id (kid) of the signing key")
    group.add_argument("--smart-token-url",
                       help="SMART: token endpoint (default: from .well-known/smart-configuration)")
    group.add_argument("--smart-scope", help="SMART: scopes to request")
    group.add_argument("--ca-bundle", type=Path, help="CA certificates to trust for TLS (verification is always on)")
    if dead_letters:
        _dlq_store_flags(group)


def _dlq_store_flags(parser: Any) -> None:
    parser.add_argument("--dead-letters", type=Path, metavar="FILE",
                        help="dead-letter file (default ./dead-letters.ndjson)")
    parser.add_argument("--redis", dest="redis_url", metavar="URL",
                        help="keep dead letters in a Redis stream instead (redis://host:6379/0)")


def _timezone_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--timezone", metavar="ZONE",
                        help="the patient's IANA time zone (e.g. Europe/Berlin): the local clock of hour, day and "
                             "night windows and of written times. Default: the zone the export's records name "
                             "(HKTimeZone), else the UTC offset the export wrote (the offset at export time)")


def _summary_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--summaries", default="all", metavar="WINDOWS",
                        help="summary Observations to write: a comma list of hour, day, night (sleep), cgm "
                             "(HL7 CGM summary); 'all' (default) or 'none'")
    parser.add_argument("--cgm-days", type=int, default=14, metavar="N",
                        help="length of the CGM summary reporting period in days (default 14)")


def _progress_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--progress", dest="progress", action="store_true", default=None,
                       help="always show the progress bar")
    group.add_argument("--no-progress", dest="progress", action="store_false",
                       help="never show the progress bar (default: only on a terminal)")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``wearfhir`` console script."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.run(args))
    except (UnsupportedInputError, UnsafeInputError, ConfigError) as exc:
        return _usage_error(str(exc))
    except DataError as exc:
        print(f"wearfhir: {exc}", file=sys.stderr)
        return EXIT_INCOMPLETE
    except WearfhirError as exc:
        print(f"wearfhir: {exc}", file=sys.stderr)
        return EXIT_INCOMPLETE


if __name__ == "__main__":
    sys.exit(main())
