"""bench/run's harness: builds the data, runs pipewatch and its peers side by
side (ingest, the query suite, detection) and writes BENCHMARKS.md. Exits
non-zero when a step fails, an engine errors on a query it should answer,
or the engines disagree on a query's row count."""

from __future__ import annotations

import argparse
import datetime as dt
import shlex
import sys
from pathlib import Path

from measure import BenchError

ROOT = Path(__file__).resolve().parent.parent.parent


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/run", description=__doc__)
    parser.add_argument("--bin-dir", type=Path, required=True, help="where pipewatch and pipewatch-bench are")
    parser.add_argument("--events", type=int, default=10_000_000, help="events in the lake (default 10M)")
    parser.add_argument("--days", type=int, default=28, help="days the generated organisation spans")
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions after the warm-up")
    parser.add_argument("--ingest-reps", type=int, default=3, help="repetitions of each ingest")
    parser.add_argument("--work", type=Path, default=ROOT / "target" / "bench-work", help="data kept between runs")
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md", help="the report to write")
    parser.add_argument("--charts", type=Path, default=None, help="folder for the SVG charts")
    parser.add_argument("--only", nargs="*", help="run only these queries")
    parser.add_argument(
        "--scoring-sample",
        type=int,
        default=20_000,
        help="most feature vectors the online IsolationForest scores (whole jobs, sampled)",
    )
    parser.add_argument("--skip", nargs="*", default=[], choices=["ingest", "queries", "detection"])
    parser.add_argument("--fresh", action="store_true", help="rebuild the data even if kept")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="a tiny dataset and one repetition, into target/bench-smoke (what CI runs)",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.events = min(args.events, 30_000)
        args.days = 7
        args.reps = 1
        args.ingest_reps = 1
        args.work = ROOT / "target" / "bench-smoke"
        args.out = args.work / "BENCHMARKS.md"
    if args.charts is None:
        args.charts = args.out.parent / "bench" / "charts" if not args.smoke else args.work / "charts"
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    # The peers' packages load only after the arguments parse, so that
    # --help works outside the benchmark's virtual environment.
    import dataset
    import detection
    import ingest
    import queries
    import report
    import scoring
    from measure import machine_facts

    args.work.mkdir(parents=True, exist_ok=True)
    # bench/run passes `--bin-dir DIR` ahead of the user's own arguments.
    given = argv[2:] if argv[:1] == ["--bin-dir"] else argv
    command = " ".join(["bench/run", *(shlex.quote(a) for a in given)])
    run: dict = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "reps": args.reps,
        "machine": machine_facts(args.bin_dir / "pipewatch"),
    }
    problems: list[str] = []
    print(f"==> data: {args.events:,} events", flush=True)
    data = dataset.build(args.work, args.bin_dir, args.events, args.days, args.fresh)
    run["dataset"] = data
    print(f"  {data.events:,} events in {data.lake}", flush=True)

    def stage(title: str, measure) -> None:
        """Runs one part; a failure is reported and the other parts still
        run and reach the report."""
        print(f"==> {title}", flush=True)
        try:
            measure()
        except BenchError as error:
            problems.append(f"{title}: {error}")
            print(f"error: {title}: {error}", file=sys.stderr, flush=True)

    def measure_ingest() -> None:
        comparison = ingest.compare(args.bin_dir, Path(data.corpus), args.work, args.ingest_reps)
        run["ingest"] = comparison
        problems.extend(
            f"ingest with {r.tool}: {r.error}" for r in comparison.results if r.error and r.tool == "pipewatch"
        )

    def measure_queries() -> None:
        suite = queries.load_suite(args.only)
        results, values = queries.run_suite(Path(data.lake), args.bin_dir, suite, args.reps)
        run["suite"] = suite
        run["queries"] = results
        run["parameters"] = {k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in values.items()}
        for name, timings in results.items():
            for timing in timings.values():
                if timing.error:
                    problems.append(f"query {name} failed on {timing.engine}: {timing.error}")
            counts = {t.rows for t in timings.values() if t.rows is not None}
            if len(counts) > 1:
                problems.append(f"query {name}: engines return different row counts {sorted(counts)}")

    def measure_backfill() -> None:
        run["detection"] = detection.backfill(args.bin_dir, Path(data.base_lake), max(1, min(args.reps, 3)))

    def measure_scoring() -> None:
        run["scoring"] = scoring.compare(
            args.bin_dir, Path(data.base_lake), Path(data.corpus) / "labels.json", args.work,
            args.scoring_sample,
        )

    if "ingest" not in args.skip:
        stage("ingest: NDJSON to Parquet", measure_ingest)
    if "queries" not in args.skip:
        stage("incident-investigation queries", measure_queries)
    if "detection" not in args.skip:
        stage("detection backfill", measure_backfill)
        stage("detection scoring against scikit-learn's IsolationForest", measure_scoring)

    missed = report.write(run, args.out, args.charts)
    print(f"==> wrote {args.out}", flush=True)
    for goal in missed:
        print(f"  goal missed: {goal}")
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except BenchError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
