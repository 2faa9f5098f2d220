"""NDJSON to Parquet with pyarrow, as a team without pipewatch would do it:
`pyarrow.json.read_json` then `pyarrow.parquet.write_table` (zstd), one
output file per input file. Usage: pyarrow_ingest.py OUT_DIR INPUT..."""

import sys
from pathlib import Path

import pyarrow.json as pj
import pyarrow.parquet as pq


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for index, name in enumerate(sys.argv[2:]):
        table = pj.read_json(name)
        pq.write_table(table, out / f"{index:04}-{Path(name).stem}.parquet", compression="zstd")


if __name__ == "__main__":
    main()
