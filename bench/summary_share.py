"""Share of the import's time spent in aggregation (the ``summarise`` step), measured inside one run.

Usage: ``python bench/summary_share.py --records 1000000``. Runs the default import (``--raw spot``, all
summaries) in-process on the benchmark export and times every call into the summarise step's logic
(turning batches into columns, folding them, and at end of input computing every window's statistics)
and every build of summary Observations (``SummaryBuilder.build``, called by the sinks as they write each
part). The headline share counts both. Then runs the same import with ``--summaries none`` for the
end-to-end difference (which also includes serialising and writing the extra Observations). All numbers
come from one process on one machine state: read the shares, not the seconds.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bytewax.testing import run_main  # noqa: E402

from bench.import_bench import RESULTS, WORK, ensure_export  # noqa: E402
from flows import summarise  # noqa: E402
from flows.import_flow import get_flow  # noqa: E402
from mappers.summary import SummaryBuilder  # noqa: E402
from wearfhir.cli import _tune_gc  # noqa: E402
from wearfhir.report import ImportReport  # noqa: E402
from wearfhir.settings import ImportSettings  # noqa: E402


class Timed:
    """Accumulates the wall time spent inside wrapped methods."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def wrap(self, cls: type, name: str) -> None:
        original = getattr(cls, name)

        def timed(logic, *args):  # type: ignore[no-untyped-def]
            t0 = time.perf_counter()
            try:
                return original(logic, *args)
            finally:
                self.seconds += time.perf_counter() - t0

        setattr(cls, name, timed)


def run(export: Path, summaries: str) -> tuple[float, ImportReport]:
    out = WORK / f"out-share-{summaries}"
    shutil.rmtree(out, ignore_errors=True)
    report = ImportReport()
    settings = ImportSettings(source=export, patient="Patient/bench", out=out, summaries=summaries)
    t0 = time.perf_counter()
    run_main(get_flow(settings, report))
    return time.perf_counter() - t0, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=1_000_000)
    args = parser.parse_args()
    WORK.mkdir(exist_ok=True)
    export, _ = ensure_export(args.records)
    _tune_gc()  # as `wearfhir import` does
    timer, building = Timed(), Timed()
    for name in ("on_item", "on_eof"):
        timer.wrap(summarise.SummaryLogic, name)
    building.wrap(SummaryBuilder, "build")
    total, report = run(export, "all")
    aggregation, built = timer.seconds, building.seconds
    without, _ = run(export, "none")
    samples = sum(report.samples.values())
    result = {
        "records": args.records,
        "samples": samples,
        "summary_observations": sum(report.summaries.values()),
        "import_s": round(total, 2),
        "aggregation_s": round(aggregation, 2),
        "building_s": round(built, 2),
        "aggregation_share": round(aggregation / total, 3),
        "aggregation_and_building_share": round((aggregation + built) / total, 3),
        "import_without_summaries_s": round(without, 2),
        "end_to_end_share": round((total - without) / total, 3),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"summary-share-{args.records}.json").write_text(json.dumps(result, indent=2) + "\n")
    print("| records | samples | summary Observations | import s | summarise step s | building s | "
          "share (step + building) | import --summaries none s | end-to-end difference |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| {args.records:,} | {samples:,} | {result['summary_observations']:,} | {total:.2f} | "
          f"{aggregation:.2f} | {built:.2f} | **{(aggregation + built) / total:.1%}** | {without:.2f} | "
          f"{(total - without) / total:.1%} |")


if __name__ == "__main__":
    main()
