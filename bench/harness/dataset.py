"""The benchmark's data: the generated organisation (`pipewatch generate`)
ingested through `pipewatch ingest` into a lake, then grown to the target
size by copies moved later in time or renamed as more organisations.
Built once per size and kept under the work directory."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow.parquet as pq

from measure import BenchError, dir_bytes, run_process

# Events the generated organisation produces per simulated day at scale 1
# (measured on the default organisation); used to pick the scale.
EVENTS_PER_DAY_AT_SCALE_1 = 3_770

# The ingested organisation is at most this large; a larger target is grown
# from it, since the generator holds a whole period in memory.
MAX_GENERATED_EVENTS = 1_000_000


@dataclass
class Dataset:
    corpus: str
    base_lake: str
    lake: str
    days: int
    scale: float
    native_files: int
    native_bytes_on_disk: int
    generated_events: int
    events: int
    lake_bytes: int
    lake_files: int
    generate_seconds: float
    ingest_seconds: float
    ingest_cpu_seconds: float
    grow_seconds: float
    commands: list[str]


def lake_events(lake: Path) -> tuple[int, int]:
    """Rows and files of a lake's event table, from Parquet footers."""
    rows = 0
    files = 0
    for path in (lake / "events").rglob("*.parquet"):
        rows += pq.ParquetFile(path).metadata.num_rows
        files += 1
    return rows, files


def build(work: Path, bins: Path, target: int, days: int, fresh: bool) -> Dataset:
    marker = work / f"dataset-{target}-{days}.json"
    if marker.exists() and not fresh:
        saved = Dataset(**json.loads(marker.read_text()))
        if Path(saved.lake).exists():
            return saved
    pipewatch = str(bins / "pipewatch")
    generated_target = min(target, MAX_GENERATED_EVENTS)
    scale = round(max(0.3, generated_target / (EVENTS_PER_DAY_AT_SCALE_1 * days)), 2)
    corpus = work / f"corpus-{generated_target}-{days}"
    base = work / f"lake-{generated_target}-{days}"
    lake = base if target <= generated_target else work / f"lake-{target}-{days}"
    for path in {corpus, base, lake}:
        if path.exists():
            shutil.rmtree(path)
    commands = []
    generate = [pipewatch, "generate", "--out", str(corpus), "--days", str(days), "--scale", str(scale)]
    commands.append(" ".join(generate))
    print(f"  generating {days} days of an organisation at scale {scale}", flush=True)
    generated = run_process(generate)
    ingest = [pipewatch, "ingest", "--data-dir", str(base), str(corpus)]
    commands.append(" ".join(ingest))
    print("  ingesting it with pipewatch ingest", flush=True)
    ingested = run_process(ingest)
    base_events, _ = lake_events(base)
    if base_events == 0:
        raise BenchError(f"pipewatch ingest stored no events from {corpus}")
    grow_seconds = 0.0
    if lake != base:
        grow = [str(bins / "pipewatch-bench"), "grow", "--from", str(base), "--to", str(lake), "--events", str(target)]
        commands.append(" ".join(grow))
        print(f"  growing the lake to {target:,} events", flush=True)
        grow_seconds = run_process(grow).wall
    events, files = lake_events(lake)
    native = [p for p in corpus.rglob("*") if p.is_file() and p.name != "labels.json"]
    dataset = Dataset(
        corpus=str(corpus),
        base_lake=str(base),
        lake=str(lake),
        days=days,
        scale=scale,
        native_files=len(native),
        native_bytes_on_disk=sum(p.stat().st_size for p in native),
        generated_events=base_events,
        events=events,
        lake_bytes=dir_bytes(lake / "events"),
        lake_files=files,
        generate_seconds=generated.wall,
        ingest_seconds=ingested.wall,
        ingest_cpu_seconds=ingested.cpu,
        grow_seconds=grow_seconds,
        commands=commands,
    )
    marker.write_text(json.dumps(asdict(dataset), indent=2))
    return dataset
