"""What one pipewatch query tuning buys: the suite on pipewatch with and
without it, interleaved in one run, as a Markdown table on stdout.

    target/bench-venv/bin/python bench/harness/ablate.py \\
        --bin-dir target/release --lake target/bench-work/lake-10000000-28 \\
        --without date-pruning

`--without compaction` compares the lake as `pipewatch ingest` left it
(`--lake`, one file per partition per commit) with a compacted copy of it.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from measure import geomean, run_process
from queries import Pipewatch, hot, load_suite, run_suite

# Each tuning that can be switched off, and the pipewatch-bench flag that does it.
SWITCHES = {
    "date-pruning": "--without-date-pruning",
    "footer-cache": "--without-footer-cache",
    "compaction": None,
}


def compacted_copy(lake: Path, bins: Path) -> Path:
    """A copy of `lake` beside it, compacted by `pipewatch compact`."""
    copy = lake.with_name(lake.name + "-compacted")
    if copy.exists():
        shutil.rmtree(copy)
    shutil.copytree(lake, copy)
    run = run_process([str(bins / "pipewatch"), "compact", "--data-dir", str(copy)])
    files = lambda root: sum(1 for _ in (root / "events").rglob("*.parquet"))  # noqa: E731
    print(f"compacted a copy in {run.wall:.1f} s: {files(lake)} files became {files(copy)}", file=sys.stderr)
    return copy


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin-dir", type=Path, required=True)
    parser.add_argument("--lake", type=Path, required=True)
    parser.add_argument("--without", choices=sorted(SWITCHES), required=True)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--only", nargs="*")
    args = parser.parse_args()

    flag = SWITCHES[args.without]
    if flag is None:
        tuned = Pipewatch(compacted_copy(args.lake, args.bin_dir), args.bin_dir)
        plain = Pipewatch(args.lake, args.bin_dir)
    else:
        tuned = Pipewatch(args.lake, args.bin_dir)
        plain = Pipewatch(args.lake, args.bin_dir, (flag,))
    plain.name = "without"
    results, _ = run_suite(args.lake, args.bin_dir, load_suite(args.only), args.reps, [tuned, plain])

    print(f"| query | with {args.without} (s) | without (s) | without ÷ with |")
    print("|---|---:|---:|---:|")
    ratios = []
    for name, timings in results.items():
        with_s, without_s = hot(timings.get("pipewatch")), hot(timings.get("without"))
        if with_s is None or without_s is None:
            errors = "; ".join(t.error for t in timings.values() if t.error)
            print(f"| {name} | | | failed: {errors} |")
            continue
        ratios.append(without_s / with_s)
        print(f"| {name} | {with_s:.3f} | {without_s:.3f} | {without_s / with_s:.2f} |")
    print(f"| geometric mean | | | {geomean(ratios):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
