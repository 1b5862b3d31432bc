"""Import benchmark: wearfhir vs the lxml parse floor vs healthkit-to-sqlite 1.0.1, in one run.

Usage: ``python bench/import_bench.py --records 1000000 [--only wearfhir] [--repeat 1] [--baseline REV]``

``--baseline REV`` also times wearfhir as it was at git revision REV (a worktree in bench/work, run with the
same interpreter), on the same export: the cost or gain of a change, as a ratio measured in one run.

Each contender runs as its own process on the same ``export.zip`` (a synthetic export with a valid DTD so
that every contender can read it); wall time and that process's peak RSS (``wait4``) are recorded.
Timing on a shared machine is noisy: read the ratios, not the seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = HERE / "work"
RESULTS = HERE / "results"

FLOOR = r"""
import sys, zipfile
from lxml import etree
with zipfile.ZipFile(sys.argv[1]) as z, z.open("apple_health_export/export.xml") as f:
    n = 0
    for _, el in etree.iterparse(f, events=("end",), tag="Record", resolve_entities=False, no_network=True,
                                 huge_tree=True, load_dtd=False):
        a = el.attrib
        a.get("type"); a.get("value"); a.get("unit"); a.get("startDate"); a.get("endDate"); a.get("sourceName")
        n += 1
        el.clear(keep_tail=False)
        while el.getprevious() is not None:
            del el.getparent()[0]
print(n)
"""


def measure(name: str, argv: list[str]) -> dict[str, object]:
    """Run one contender as a child process; wall seconds and its own peak RSS."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    output = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
    code = os.waitstatus_to_exitcode(status)
    if code not in (0,):
        print(output[-2000:], file=sys.stderr)
        raise SystemExit(f"{name} failed with exit code {code}")
    return {"name": name, "seconds": round(seconds, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def ensure_export(records: int) -> tuple[Path, int]:
    """The synthetic export for this size (generated once, cached in bench/work)."""
    sys.path.insert(0, str(HERE.parent))
    from wearfhir.synth import SynthSpec, write_export

    path = WORK / f"export-{records}-v2.zip"  # v2: dates as iPhones write them (one export-time offset)
    if not path.exists():
        print(f"generating {path.name} ...", flush=True)
        write_export(path, SynthSpec(records=records, broken_dtd=False, traps=False))
    with zipfile.ZipFile(path) as archive:
        size = archive.getinfo("apple_health_export/export.xml").file_size
    return path, size


def baseline_tree(rev: str) -> Path:
    """A git worktree of ``rev`` under bench/work (made once)."""
    tree = WORK / f"baseline-{rev}"
    if not tree.exists():
        subprocess.run(["git", "-C", str(HERE.parent), "worktree", "add", "--detach", str(tree), rev], check=True,
                       stdout=subprocess.DEVNULL)
    return tree


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--only", action="append", help="run only these contenders (repeatable)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per contender; the best is kept")
    parser.add_argument("--baseline", metavar="REV", help="also time wearfhir at this git revision")
    args = parser.parse_args()
    WORK.mkdir(exist_ok=True)
    RESULTS.mkdir(exist_ok=True)
    export, xml_bytes = ensure_export(args.records)
    bindir = Path(sys.executable).parent
    contenders = {
        "lxml iterparse floor": [sys.executable, "-c", FLOOR, str(export)],
        "wearfhir --raw spot": [str(bindir / "wearfhir"), "import", str(export), "--patient", "Patient/bench",
                                "--out", str(WORK / "out-spot"), "--no-progress"],
        "wearfhir --raw all": [str(bindir / "wearfhir"), "import", str(export), "--patient", "Patient/bench",
                               "--out", str(WORK / "out-all"), "--raw", "all", "--no-progress"],
        "healthkit-to-sqlite 1.0.1": [str(bindir / "healthkit-to-sqlite"), str(export), str(WORK / "hk.db")],
    }
    if args.baseline:
        tree = baseline_tree(args.baseline)
        run_old = [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(tree)!r}); "
                   "from wearfhir.cli import main; sys.exit(main())"]
        for raw in ("spot", "all"):
            contenders[f"wearfhir --raw {raw} @{args.baseline}"] = [
                *run_old, "import", str(export), "--patient", "Patient/bench", "--out", str(WORK / f"out-{raw}"),
                "--raw", raw, "--no-progress"]
    rows = []
    for name, argv in contenders.items():
        if args.only and not any(o in name for o in args.only):
            continue
        best = None
        for _ in range(args.repeat):
            (WORK / "hk.db").unlink(missing_ok=True)
            for out in ("out-spot", "out-all"):
                shutil.rmtree(WORK / out, ignore_errors=True)
            result = measure(name, argv)
            if best is None or result["seconds"] < best["seconds"]:  # type: ignore[operator]
                best = result
        assert best is not None
        best["records_per_s"] = round(args.records / best["seconds"])  # type: ignore[operator]
        rows.append(best)
        print(json.dumps(best), flush=True)
    by_name = {r["name"]: r for r in rows}
    for row in rows:
        for ref in ("lxml iterparse floor", "healthkit-to-sqlite 1.0.1"):
            if ref in by_name and row["name"] != ref:
                row[f"speed_vs_{ref.split()[0]}"] = round(by_name[ref]["seconds"] / row["seconds"], 2)  # type: ignore[operator]
    summary = {"records": args.records, "xml_bytes": xml_bytes, "cpus": os.cpu_count(), "rows": rows}
    out = RESULTS / f"import-{args.records}.json"
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print("\n| contender | s | records/s | peak RSS MB | × floor speed | × healthkit-to-sqlite |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['name']} | {r['seconds']} | {r['records_per_s']:,} | {r['peak_rss_mb']} | "
              f"{r.get('speed_vs_lxml', '—')} | {r.get('speed_vs_healthkit-to-sqlite', '—')} |")
    print(f"\nwritten {out.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
