"""NDJSON to Parquet with DuckDB: `COPY (SELECT * FROM read_json_auto(...))
TO ... (FORMAT parquet, COMPRESSION zstd)`, one output file per input
file. Usage: duckdb_ingest.py OUT_DIR INPUT..."""

import sys
from pathlib import Path

import duckdb


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    for index, name in enumerate(sys.argv[2:]):
        target = out / f"{index:04}-{Path(name).stem}.parquet"
        source = name.replace("'", "''")
        con.execute(
            f"COPY (SELECT * FROM read_json_auto('{source}', format = 'newline_delimited', sample_size = -1)) "
            f"TO '{target}' (FORMAT parquet, COMPRESSION zstd)"
        )


if __name__ == "__main__":
    main()
