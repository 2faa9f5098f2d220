"""Writes the measured part of BENCHMARKS.md (between its markers, so the
written analysis around it stays) and the SVG charts beside it."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ingest import COMPACTED, ONE_THREAD, IngestComparison, rates  # noqa: E402
from measure import geomean  # noqa: E402
from queries import Query, Timing, hot  # noqa: E402

BEGIN = "<!-- measured: written by bench/run, do not edit by hand -->"
END = "<!-- end of measured -->"

# Paths in the report are shown relative to the checkout.
REPO = Path(__file__).resolve().parents[2]

QUERY_GEOMEAN_GOAL = 0.8
QUERY_WORST_GOAL = 1.5
INGEST_GOAL = 1.5
DETECTION_GOAL = 5.0


def ms(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    return f"{seconds * 1e3:,.1f}" if seconds < 10 else f"{seconds * 1e3:,.0f}"


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b <= 0:
        return None
    return a / b


def fmt_ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def verdict(met: bool) -> str:
    return "met" if met else "**missed**"


def query_ratios(results: dict[str, dict[str, Timing]], peer: str) -> dict[str, float]:
    out = {}
    for name, timings in results.items():
        value = ratio(hot(timings.get("pipewatch")), hot(timings.get(peer)))
        if value is not None:
            out[name] = value
    return out


def query_chart(results: dict[str, dict[str, Timing]], path: Path) -> None:
    names = list(results)
    duck = query_ratios(results, "duckdb")
    fusion = query_ratios(results, "datafusion")
    fig, ax = plt.subplots(figsize=(9, 0.32 * len(names) + 1.5))
    y = range(len(names))
    ax.barh([i - 0.2 for i in y], [duck.get(n, math.nan) for n in names], height=0.4, label="vs DuckDB")
    ax.barh([i + 0.2 for i in y], [fusion.get(n, math.nan) for n in names], height=0.4, label="vs DataFusion (stock)")
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_yticks(list(y), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("pipewatch time / peer time (hot, median; below 1 = pipewatch faster)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="svg")
    plt.close(fig)


def ingest_chart(comparison: IngestComparison, path: Path) -> None:
    done = [r for r in comparison.results if not r.error and r.cpus]
    fig, ax = plt.subplots(figsize=(6, 2.5))
    ax.barh([r.tool for r in done], [rates(r, comparison)["events_per_cpu_s"] for r in done])
    ax.invert_yaxis()
    ax.set_xlabel("NDJSON records to Parquet per CPU-second (higher is better)")
    fig.tight_layout()
    fig.savefig(path, format="svg")
    plt.close(fig)


def measured_section(run: dict, chart_dir: str) -> tuple[str, list[str]]:
    """The markdown of one run, and the goals it missed."""
    lines: list[str] = []
    missed: list[str] = []
    add = lines.append
    add(f"Measured {run['date']} with `{run['command']}` ({run['reps']} repetitions after a warm-up, medians).")
    add("")
    add("| machine | |")
    add("|---|---|")
    for key, value in run["machine"].items():
        add(f"| {key} | {value} |")
    add("")
    data = run["dataset"]
    add("### Data")
    add("")
    add(
        f"{data.events:,} events in {data.lake_files:,} Parquet files ({data.lake_bytes / 1e6:,.0f} MB), "
        f"grown from a generated organisation ({data.days} days at scale {data.scale}: "
        f"{data.native_files} native files, {data.native_bytes_on_disk / 1e6:,.0f} MB on disk) "
        f"that `pipewatch ingest` stored as {data.generated_events:,} events in "
        f"{data.ingest_seconds:.1f} s ({data.generated_events / data.ingest_seconds:,.0f} events/s, "
        f"{data.ingest_cpu_seconds:.1f} s CPU)."
    )
    add("")
    for command in data.commands:
        add(f"    {command}")
    add("")

    results = run.get("queries")
    goals: list[tuple[str, str, str]] = []
    if results:
        duck = query_ratios(results, "duckdb")
        fusion = query_ratios(results, "datafusion")
        duck_geo = geomean(list(duck.values()))
        fusion_geo = geomean(list(fusion.values()))
        worst = max(duck.items(), key=lambda kv: kv[1]) if duck else ("–", math.nan)
        goals.append(
            ("query suite, geometric mean vs DuckDB (hot)", f"≤ {QUERY_GEOMEAN_GOAL}", f"{duck_geo:.2f}")
        )
        goals.append(
            ("query suite, worst query vs DuckDB", f"≤ {QUERY_WORST_GOAL}", f"{worst[1]:.2f} ({worst[0]})")
        )
        if not duck_geo <= QUERY_GEOMEAN_GOAL:
            missed.append("query geometric mean")
        if not worst[1] <= QUERY_WORST_GOAL:
            missed.append(f"worst query {worst[0]}")
    ingest: IngestComparison | None = run.get("ingest")
    if ingest:
        by_tool = {r.tool: r for r in ingest.results}
        pa = by_tool.get("pyarrow")
        # What a deployment keeps is the compacted lake, so the goal counts
        # compaction's time and its output when that row was measured.
        pw = by_tool.get(COMPACTED)
        if not (pw and pw.cpus):
            pw = by_tool.get("pipewatch")
        if pw and pa and pw.cpus and pa.cpus:
            speed = rates(pw, ingest)["events_per_cpu_s"] / rates(pa, ingest)["events_per_cpu_s"]
            smaller = pw.output_bytes <= pa.output_bytes
            goals.append(
                (
                    "ingest, events per CPU-second vs pyarrow, at no larger output",
                    f"≥ {INGEST_GOAL}×",
                    f"{speed:.2f}×, output {pw.output_bytes / max(pa.output_bytes, 1):.2f}× pyarrow's"
                    f" ({pw.tool})",
                )
            )
            if not (speed >= INGEST_GOAL and smaller):
                missed.append("ingest")
    scoring = run.get("scoring")
    if scoring:
        goals.append(
            (
                "detection scoring per core vs scikit-learn IsolationForest",
                f"≥ {DETECTION_GOAL}×",
                f"{scoring['speedup']:.2f}×",
            )
        )
        if not scoring["speedup"] >= DETECTION_GOAL:
            missed.append("detection scoring")
    if goals:
        add("### Goals")
        add("")
        add("| goal | target | this run | |")
        add("|---|---|---|---|")
        for name, target, value in goals:
            add(f"| {name} | {target} | {value} | {verdict(not any(m.split()[0] in name for m in missed))} |")
        add("")

    if results:
        queries: list[Query] = run["suite"]
        add("### Incident-investigation queries")
        add("")
        add(
            "Hot: the median of the repetitions after one warm-up run in the same process "
            "(pipewatch's query service as `pipewatch serve` runs it; DuckDB over `read_parquet` "
            "with hive partitioning; DataFusion's Python package with its defaults over the "
            "same listing). First: that warm-up run. Times in milliseconds; ratio = pipewatch / peer."
        )
        add("")
        add("| query | what | pipewatch | DuckDB | DataFusion | ÷ DuckDB | ÷ DataFusion | first (pw / Duck / DF) | rows |")
        add("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for query in queries:
            timings = results[query.name]
            pw, dk, df = (timings.get(e) for e in ("pipewatch", "duckdb", "datafusion"))
            cells = []
            for timing in (pw, dk, df):
                if timing is None or (timing.error is None and timing.first is None):
                    cells.append("n/a")
                elif timing.error:
                    cells.append("error")
                else:
                    cells.append(ms(hot(timing)))
            first = " / ".join(ms(t.first) if t and not t.error else "–" for t in (pw, dk, df))
            rows = sorted({t.rows for t in (pw, dk, df) if t and t.rows is not None})
            row_text = ", ".join(f"{r:,}" for r in rows)
            if len(rows) > 1:
                row_text += " (differ)"
            add(
                f"| {query.name} | {query.about} | {cells[0]} | {cells[1]} | {cells[2]} | "
                f"{fmt_ratio(duck.get(query.name))} | {fmt_ratio(fusion.get(query.name))} | {first} | {row_text} |"
            )
        add(f"| **geometric mean** | | | | | **{duck_geo:.2f}** | **{fusion_geo:.2f}** | | |")
        add("")
        errors = [
            (name, t.engine, t.error)
            for name, timings in results.items()
            for t in timings.values()
            if t.error
        ]
        for name, engine, error in errors:
            add(f"- {name} on {engine}: {error}")
        if errors:
            add("")
        add(f"![pipewatch time over peer time per query]({chart_dir}/queries.svg)")
        add("")
        params = run["parameters"]
        add(
            "Parameters read off the data: "
            + ", ".join(f"`{{{k}}}` = `{v}`" for k, v in params.items())
            + "."
        )
        add("")

    if ingest:
        add("### Ingest: NDJSON to Parquet")
        add("")
        add(
            f"The same {ingest.files} line-delimited native files ({ingest.records:,} records, "
            f"{ingest.input_bytes / 1e6:,.0f} MB): webhooks, audit logs and traces of the "
            "generated organisation. Each tool runs as its own process; CPU is the process's "
            "user + system time. pipewatch decodes, normalizes, redacts and deduplicates into "
            "its partitioned lake; pyarrow and DuckDB infer a schema and write one file per input. "
            f"The row \"{COMPACTED}\" is the same lake after `pipewatch compact` merged each day's "
            "files (as `serve` does in the background), with the compaction's time added. "
            f"The row \"{ONE_THREAD}\" is the same ingest with `--decode-threads 1`: pipewatch "
            "decodes a large file's pieces on one thread per core (at most four) by default."
        )
        add("")
        for name, why in ingest.excluded:
            add(f"- left out for every tool: `{name}`, which pyarrow or DuckDB cannot read ({why})")
        if ingest.excluded:
            add("")
        add("| tool | wall s | CPU s | records/s | records per CPU-s | MB per CPU-s | Parquet MB | command |")
        add("|---|---:|---:|---:|---:|---:|---:|---|")
        for result in ingest.results:
            if result.error or not result.cpus:
                reason = (result.error or "no run").strip().splitlines()[-1]
                add(f"| {result.tool} | error: {reason} | | | | | | `{result.command}` |")
                continue
            r = rates(result, ingest)
            add(
                f"| {result.tool} | {r['wall_s']:.2f} | {r['cpu_s']:.2f} | {r['events_per_s']:,.0f} | "
                f"{r['events_per_cpu_s']:,.0f} | {r['mb_per_cpu_s']:.1f} | "
                f"{result.output_bytes / 1e6:,.1f} | `{result.command}` |"
            )
        add("")
        add(f"![records per CPU-second]({chart_dir}/ingest.svg)")
        add("")

    detect = run.get("detection")
    if detect:
        add("### Detection")
        add("")
        add(
            f"Backfill of the ingested organisation ({detect['events']:,} events, every detector, "
            f"reading the lake included): {detect['events_per_s']:,.0f} events/s, "
            f"{detect['events_per_cpu_s']:,.0f} events per CPU-second ({detect['wall_s']:.2f} s wall, "
            f"{detect['cpu_s']:.2f} s CPU, {detect['findings']:,} findings). `{detect['command']}`"
        )
        add("")
    if scoring:
        add(
            f"Scoring: pipewatch's resource detector against scikit-learn's IsolationForest on the "
            f"same {scoring['vectors']:,} feature vectors ({scoring['jobs']:,} jobs' runs in log space: "
            "duration, CPU, memory, egress; queue time for timing-only records). The forest follows "
            "the detector's policy: per job, fitted on its last 200 runs once it has 8, refitted every "
            "20 runs, each run scored by the model fitted before it (scored 20 at a time). "
            "\"fit once\" fits one forest per job on all its runs and scores them in one call: it sees "
            "the future, shown for reference. Quality at the same alert budget: the forest flags as "
            "many runs as pipewatch did, its highest scores; an incident is caught when one of its "
            "evidence runs is flagged. The online forest refits so often that on a large lake it "
            "runs on a sample of whole jobs (chosen by a hash of their names), and its quality is "
            "set against pipewatch's flags on that same sample."
        )
        add("")
        add("| model | CPU s | vectors per CPU-s | ÷ pipewatch rate | flagged | incidents caught | false flags |")
        add("|---|---:|---:|---:|---:|---:|---:|")
        pw_rate = scoring["pipewatch"]["vectors_per_cpu_s"]
        online = scoring["sklearn_online"]
        sampled = online["vectors"] < scoring["vectors"]
        rows = [
            ("pipewatch resource_anomaly (robust baseline + Gaussian mixture)", scoring["pipewatch"]),
            (
                "IsolationForest, the same online policy"
                + (f" (sample: {scoring['sample_jobs']:,} jobs, {online['vectors']:,} vectors)" if sampled else ""),
                online,
            ),
            ("IsolationForest, fit once per job (sees the future)", scoring["sklearn_batch"]),
        ]
        for label, r in rows:
            q = r["quality"]
            rate = r["vectors_per_cpu_s"]
            add(
                f"| {label} | {r['cpu_s']:.2f} | {rate:,.0f} | {pw_rate / rate if rate else 0:.1f}× | "
                f"{q['flagged']:,} | {q['caught']} of {q['incidents']} | {q['false_flags']:,} |"
            )
        if sampled:
            q = scoring["pipewatch_on_sample"]
            add(
                f"| pipewatch on the online forest's sample | | | | {q['flagged']:,} | "
                f"{q['caught']} of {q['incidents']} | {q['false_flags']:,} |"
            )
        add("")
        add(f"`{scoring['command']}`")
        add("")
    return "\n".join(lines), missed


def write(run: dict, out: Path, chart_dir: Path) -> list[str]:
    chart_dir.mkdir(parents=True, exist_ok=True)
    relative = Path(chart_dir).resolve().relative_to(out.parent.resolve())
    if run.get("queries"):
        query_chart(run["queries"], chart_dir / "queries.svg")
    if run.get("ingest"):
        ingest_chart(run["ingest"], chart_dir / "ingest.svg")
    section, missed = measured_section(run, str(relative))
    section = section.replace(f"{REPO}/", "")
    block = f"{BEGIN}\n{section}\n{END}"
    if out.exists():
        text = out.read_text()
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            tail = rest.split(END, 1)[1]
            out.write_text(head + block + tail)
            return missed
    out.write_text(f"# Benchmarks\n\n## Latest run\n\n{block}\n")
    return missed
