"""The ``wearfhir`` command line: validates arguments, wires progress bars, runs flows, prints reports."""

from __future__ import annotations

import argparse
import gc
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from wearfhir.errors import ConfigError, DataError, UnsafeInputError, UnsupportedInputError, WearfhirError

__all__ = ["main"]

log = logging.getLogger("wearfhir")

EXIT_OK = 0
EXIT_INCOMPLETE = 1
EXIT_USAGE = 2


def _import(args: argparse.Namespace) -> int:
    from bytewax.testing import run_main

    from flows.import_flow import get_flow
    from wearfhir.progress import ImportProgress
    from wearfhir.report import ImportReport
    from wearfhir.settings import ImportSettings

    try:
        settings = ImportSettings(source=args.source, patient=args.patient, out=args.out, raw=args.raw,
                                  summaries=args.summaries, cgm_days=args.cgm_days)
    except ValidationError as exc:
        return _usage_error("; ".join(f"--{str(e['loc'][0]).replace('_', '-')}: {e['msg']}" for e in exc.errors()))
    report = ImportReport()
    _tune_gc()
    started = time.perf_counter()
    with ImportProgress(enabled=args.progress) as progress:
        flow = get_flow(settings, report, progress=progress.update)
        progress.total = flow_source_size(settings)
        run_main(flow)
    seconds = time.perf_counter() - started
    print(report.render(seconds))
    print(f"Output: {settings.out}/")
    return EXIT_OK if report.complete else EXIT_INCOMPLETE


def _tune_gc() -> None:
    """Garbage-collector settings for a long import (measured in bench/summary_share.py: ~20 % less GC time).

    An import allocates millions of short-lived, acyclic objects; the default young-generation threshold
    (700) makes the collector rescan the long-lived set thousands of times. Objects alive at start-up
    (modules, tables) are frozen out of collection.
    """
    gc.freeze()
    gc.set_threshold(50_000, 20, 50)


def flow_source_size(settings: object) -> int | None:
    """Uncompressed size of the export's XML, for the progress bar total."""
    from connectors.healthkit.export_file import locate_export

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
    ns = argparse.Namespace(source=export, patient="Patient/demo-patient", out=args.workdir / "fhir",
                            raw=args.raw, summaries=args.summaries, cgm_days=args.cgm_days,
                            progress=args.progress)
    return _import(ns)


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


def _usage_error(message: str) -> int:
    print(f"wearfhir: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wearfhir", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details (never values)")
    sub = parser.add_subparsers(dest="command", required=True)

    imp = sub.add_parser("import", help="import an Apple Health export (zip or xml) into FHIR NDJSON")
    imp.add_argument("source", type=Path, help="export.zip or export.xml")
    imp.add_argument("--patient", required=True, help="the FHIR Patient the data belongs to, e.g. Patient/123")
    imp.add_argument("--out", type=Path, required=True, help="output directory (FHIR Bulk Data NDJSON)")
    imp.add_argument("--raw", choices=["all", "spot", "none"], default="spot",
                     help="raw Observations to write: spot metrics only (default), all, or none")
    _summary_flags(imp)
    _progress_flags(imp)
    imp.set_defaults(run=_import)

    maps = sub.add_parser("mappings", help="list which HealthKit types are mapped (N of M)")
    maps.add_argument("--all", action="store_true", help="also list known but unmapped types with reasons")
    maps.set_defaults(run=_mappings)

    demo = sub.add_parser("demo", help="generate a synthetic export and import it (no servers needed)")
    demo.add_argument("--workdir", type=Path, default=Path("demo-output"))
    demo.add_argument("--records", type=int, default=300_000)
    demo.add_argument("--raw", choices=["all", "spot", "none"], default="spot")
    _summary_flags(demo)
    demo.add_argument("--regenerate", action="store_true", help="write a new export even if one exists")
    _progress_flags(demo)
    demo.set_defaults(run=_demo)

    val = sub.add_parser("validate", help="validate NDJSON resources against FHIR R4 (fhir.resources)")
    val.add_argument("files", nargs="+", help="NDJSON files")
    val.set_defaults(run=_validate)
    return parser


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
