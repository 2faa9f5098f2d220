"""The incident-investigation suite (bench/queries.toml) on pipewatch, DuckDB
and stock DataFusion over the same Parquet files: parameters read off the
data, a warm-up run each, then repetitions interleaved engine by engine."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import datafusion
import duckdb
import pyarrow as pa

from measure import BenchError, median

SUITE = Path(__file__).resolve().parent.parent / "queries.toml"


@dataclass
class Query:
    name: str
    about: str
    sql: str
    overrides: dict[str, str]

    def text_for(self, engine: str) -> str | None:
        """The statement `engine` runs, or None when it cannot express it."""
        text = self.overrides.get(engine, self.sql)
        return text if text.strip() else None


@dataclass
class Timing:
    engine: str
    first: float | None = None
    runs: list[float] = field(default_factory=list)
    rows: int | None = None
    error: str | None = None


def load_suite(only: list[str] | None = None) -> list[Query]:
    with open(SUITE, "rb") as f:
        raw = tomllib.load(f)
    queries = []
    for entry in raw["query"]:
        overrides = {k: v for k, v in entry.items() if k in ("duckdb", "datafusion")}
        query = Query(entry["name"], entry["about"], entry["sql"], overrides)
        if not only or query.name in only:
            queries.append(query)
    return queries


def timestamp_literal(engine: str, at: dt.datetime) -> str:
    if engine == "duckdb":
        return f"TIMESTAMPTZ '{at.strftime('%Y-%m-%d %H:%M:%S')}+00'"
    return f"TIMESTAMP '{at.strftime('%Y-%m-%dT%H:%M:%SZ')}'"


class DuckDB:
    name = "duckdb"
    label = "DuckDB"

    def __init__(self, lake: Path):
        self.con = duckdb.connect()
        self.con.execute("SET TimeZone = 'UTC'")
        glob = str(lake / "events" / "*" / "*" / "*.parquet").replace("'", "''")
        self.con.execute(
            "CREATE VIEW events AS SELECT * FROM read_parquet("
            f"'{glob}', hive_partitioning = true, "
            "hive_types = {'category': VARCHAR, 'date': VARCHAR})"
        )

    def run(self, sql: str) -> tuple[float, int]:
        started = time.perf_counter()
        table = self.con.sql(sql).to_arrow_table()
        return time.perf_counter() - started, table.num_rows

    def close(self) -> None:
        self.con.close()


class DataFusion:
    """Stock DataFusion (the Python package) with its defaults."""

    name = "datafusion"
    label = "DataFusion"

    def __init__(self, lake: Path):
        self.ctx = datafusion.SessionContext()
        self.ctx.register_parquet(
            "events",
            str(lake / "events") + "/",
            table_partition_cols=[("category", pa.string()), ("date", pa.string())],
            file_extension=".parquet",
        )

    def run(self, sql: str) -> tuple[float, int]:
        started = time.perf_counter()
        batches = self.ctx.sql(sql).collect()
        return time.perf_counter() - started, sum(b.num_rows for b in batches)

    def close(self) -> None:
        pass


class Pipewatch:
    """pipewatch's query service in a long-running process, as the server
    runs it: each answer carries the time measured inside that process."""

    name = "pipewatch"
    label = "pipewatch"

    def __init__(self, lake: Path, bins: Path, flags: tuple[str, ...] = ()):
        self.process = subprocess.Popen(
            [str(bins / "pipewatch-bench"), "queries", "--data-dir", str(lake), *flags],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def run(self, sql: str) -> tuple[float, int]:
        assert self.process.stdin and self.process.stdout
        self.process.stdin.write(json.dumps({"sql": sql}) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise BenchError("the pipewatch query process ended")
        answer = json.loads(line)
        if answer.get("error"):
            raise BenchError(answer["error"])
        return answer["seconds"], answer["rows"]

    def close(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        self.process.wait(timeout=60)


def parameters(lake: Path) -> dict[str, dt.datetime | str]:
    """Values the suite's placeholders take, read off the data with DuckDB
    (untimed): the busiest actor, the most-read secret, a rare word..."""
    engine = DuckDB(lake)
    one = lambda sql: engine.con.execute(sql).fetchone()  # noqa: E731
    newest = one("SELECT max(event_time) FROM events")[0]
    if newest is None:
        raise BenchError(f"the lake at {lake} holds no events")
    newest = newest.astimezone(dt.timezone.utc).replace(tzinfo=None)
    last_day = dt.datetime.combine(newest.date(), dt.time())
    values: dict[str, dt.datetime | str] = {
        "last_day": last_day,
        "last_week": last_day - dt.timedelta(days=6),
    }
    picks = {
        "actor": "SELECT actor FROM events WHERE actor IS NOT NULL AND actor_kind = 'user' "
        "GROUP BY actor ORDER BY count(*) DESC, actor LIMIT 1",
        "secret": "SELECT target_name FROM events WHERE category = 'secret_access' "
        "AND target_name IS NOT NULL GROUP BY target_name ORDER BY count(*) DESC, target_name LIMIT 1",
        "event_id": "SELECT event_id FROM events WHERE category = 'deployment' "
        "ORDER BY event_id LIMIT 1",
        "run_id": "SELECT cicd_pipeline_run_id FROM events WHERE category = 'pipeline_job' "
        "AND cicd_pipeline_run_id IS NOT NULL ORDER BY cicd_pipeline_run_id LIMIT 1",
        # A word that appears in few raw records: an egress destination seen
        # least often, the needle an analyst searches for after a tip-off.
        "pattern": "SELECT egress_destination FROM events WHERE category = 'egress' "
        "AND egress_destination IS NOT NULL GROUP BY 1 ORDER BY count(*), 1 LIMIT 1",
    }
    for key, sql in picks.items():
        row = one(sql)
        if row is None or row[0] is None:
            raise BenchError(f"cannot pick a value for {{{key}}}: the lake has none")
        values[key] = str(row[0]).replace("'", "''")
    engine.close()
    return values


def render(query: Query, engine: str, values: dict[str, dt.datetime | str]) -> str | None:
    text = query.text_for(engine)
    if text is None:
        return None
    rendered = {
        key: timestamp_literal(engine, value) if isinstance(value, dt.datetime) else value
        for key, value in values.items()
    }
    return text.format(**rendered)


def run_suite(
    lake: Path, bins: Path, queries: list[Query], reps: int, engines: list | None = None
) -> tuple[dict[str, dict[str, Timing]], dict[str, dt.datetime | str]]:
    values = parameters(lake)
    engines = engines or [Pipewatch(lake, bins), DuckDB(lake), DataFusion(lake)]
    results: dict[str, dict[str, Timing]] = {q.name: {} for q in queries}
    try:
        for rep in range(reps + 1):
            for index, query in enumerate(queries):
                shift = (rep + index) % len(engines)
                for engine in engines[shift:] + engines[:shift]:
                    timing = results[query.name].setdefault(engine.name, Timing(engine.name))
                    sql = render(query, engine.name, values)
                    if sql is None or timing.error:
                        continue
                    try:
                        seconds, rows = engine.run(sql)
                    except Exception as error:  # an engine's own error, reported per query
                        timing.error = str(error).splitlines()[0][:300]
                        continue
                    if rep == 0:
                        timing.first = seconds
                        timing.rows = rows
                    else:
                        timing.runs.append(seconds)
            print(f"  repetition {rep}/{reps} done", flush=True)
    finally:
        for engine in engines:
            engine.close()
    return results, values


def hot(timing: Timing | None) -> float | None:
    if timing is None or timing.error or not timing.runs:
        return None
    return median(timing.runs)
