"""NDJSON to Parquet: pipewatch ingest against pyarrow and DuckDB on the
same input files (the generated corpus's line-delimited sources,
decompressed), each a separate process, interleaved, several times. Each
pipewatch lake is then compacted, as `serve` does in the background, and
counted again with the compaction's time added."""

from __future__ import annotations

import gzip
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from measure import BenchError, median, run_process

HERE = Path(__file__).resolve().parent

# The row of pipewatch's ingest followed by `pipewatch compact`.
COMPACTED = "pipewatch, then compact"
# The row of pipewatch's ingest with `--decode-threads 1`.
ONE_THREAD = "pipewatch, one decoding thread"

# The corpus's line-delimited native files: webhooks, audit logs, traces.
NDJSON_SUFFIXES = (".ndjson", ".ndjson.gz", ".log", ".log.gz")


@dataclass
class IngestResult:
    tool: str
    command: str
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)
    output_bytes: int = 0
    error: str | None = None


@dataclass
class IngestComparison:
    files: int
    records: int
    input_bytes: int
    results: list[IngestResult]
    # Native files a peer cannot read at all, left out for every tool.
    excluded: list[tuple[str, str]] = field(default_factory=list)


def prepare_input(corpus: Path, work: Path) -> list[Path]:
    """The corpus's NDJSON files, decompressed under `work` with their
    relative paths kept (pipewatch recognises the sources by them)."""
    target = work / "ingest-input"
    if target.exists():
        shutil.rmtree(target)
    files: list[Path] = []
    for path in sorted(corpus.rglob("*")):
        if not path.is_file() or not path.name.endswith(NDJSON_SUFFIXES):
            continue
        relative = path.relative_to(corpus)
        name = relative.with_suffix("") if path.suffix == ".gz" else relative
        out = target / name
        out.parent.mkdir(parents=True, exist_ok=True)
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        files.append(out)
    if not files:
        raise BenchError(f"no NDJSON files in {corpus}")
    return files


def unreadable_by_peers(files: list[Path]) -> list[tuple[Path, str]]:
    """Files pyarrow or DuckDB refuse (untimed): fields whose JSON type
    changes between records are common in real audit logs."""
    import duckdb
    import pyarrow.json as pj

    refused = []
    con = duckdb.connect()
    for path in files:
        try:
            pj.read_json(path)
            quoted = str(path).replace("'", "''")
            con.execute(f"SELECT count(*) FROM read_json_auto('{quoted}', format = 'newline_delimited', sample_size = -1)")
        except Exception as error:  # the peer's own parse error, reported
            refused.append((path, str(error).splitlines()[0][:200]))
    con.close()
    return refused


def compare(bins: Path, corpus: Path, work: Path, reps: int) -> IngestComparison:
    files = prepare_input(corpus, work)
    refused = unreadable_by_peers(files)
    for path, _ in refused:
        files.remove(path)
    if not files:
        raise BenchError("the peers can read none of the NDJSON files")
    records = 0
    for path in files:
        with open(path, "rb") as counted:
            records += sum(1 for line in counted if line.strip())
    input_bytes = sum(f.stat().st_size for f in files)
    root = work / "ingest-input"
    excluded = [(str(p.relative_to(root)), why) for p, why in refused]
    inputs = [str(f) for f in files]
    outputs = work / "ingest-output"
    tools = {
        "pipewatch": lambda out: [str(bins / "pipewatch"), "ingest", "--data-dir", str(out), *inputs],
        # The same ingest decoding on the committing thread only: slower by
        # the clock, less CPU per record than one decoding thread per core.
        ONE_THREAD: lambda out: [
            str(bins / "pipewatch"), "ingest", "--decode-threads", "1", "--data-dir", str(out), *inputs,
        ],
        "pyarrow": lambda out: [sys.executable, str(HERE / "peers" / "pyarrow_ingest.py"), str(out), *inputs],
        "DuckDB": lambda out: [sys.executable, str(HERE / "peers" / "duckdb_ingest.py"), str(out), *inputs],
    }
    results = {
        name: IngestResult(tool=name, command=" ".join(a for a in argv(Path("OUT")) if a not in inputs) + " …")
        for name, argv in tools.items()
    }
    compacted = IngestResult(
        tool=COMPACTED,
        command=f"{bins / 'pipewatch'} ingest … && {bins / 'pipewatch'} compact --data-dir OUT",
    )
    order = list(tools)
    for rep in range(reps):
        # Rotate who goes first so no tool always meets a cold page cache.
        for name in order[rep % len(order):] + order[: rep % len(order)]:
            result = results[name]
            if result.error:
                continue
            out = outputs / name
            if out.exists():
                shutil.rmtree(out)
            try:
                run = run_process(tools[name](out))
            except BenchError as error:
                result.error = str(error)
                continue
            result.walls.append(run.wall)
            result.cpus.append(run.cpu)
            result.output_bytes = parquet_bytes(out)
            print(f"    {name}: {run.wall:.2f} s wall, {run.cpu:.2f} s CPU", flush=True)
            if name == "pipewatch" and not compacted.error:
                try:
                    compact = run_process([str(bins / "pipewatch"), "compact", "--data-dir", str(out)])
                except BenchError as error:
                    compacted.error = str(error)
                    continue
                compacted.walls.append(run.wall + compact.wall)
                compacted.cpus.append(run.cpu + compact.cpu)
                compacted.output_bytes = parquet_bytes(out)
                print(f"    then compact: {compact.wall:.2f} s wall, {compact.cpu:.2f} s CPU", flush=True)
    return IngestComparison(
        files=len(files),
        records=records,
        input_bytes=input_bytes,
        results=[*results.values(), compacted],
        excluded=excluded,
    )


def parquet_bytes(out: Path) -> int:
    """Bytes of the Parquet files a tool wrote (pipewatch's lake keeps an
    id index and a control database beside them: not counted)."""
    return sum(p.stat().st_size for p in out.rglob("*.parquet")) if out.exists() else 0


def rates(result: IngestResult, comparison: IngestComparison) -> dict[str, float]:
    wall = median(result.walls)
    cpu = median(result.cpus)
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "events_per_s": comparison.records / wall if wall else 0.0,
        "events_per_cpu_s": comparison.records / cpu if cpu else 0.0,
        "mb_per_cpu_s": comparison.input_bytes / 1e6 / cpu if cpu else 0.0,
    }


__all__ = ["COMPACTED", "ONE_THREAD", "IngestComparison", "IngestResult", "compare", "rates"]
