"""Baseline: DuckDB's postgres extension exporting the same partition to one
local Parquet file (zstd), as in shared/bench/README.md. Prints one JSON line."""
import json
import sys
import time

import duckdb
from duckdb_extensions import import_extension

conninfo, partition, out = sys.argv[1], sys.argv[2], sys.argv[3]
import_extension("postgres_scanner")
c = duckdb.connect()
c.execute("LOAD postgres_scanner")
c.execute(f"ATTACH '{conninfo}' AS pg (TYPE postgres, READ_ONLY)")
started = time.perf_counter()
c.execute(
    f"COPY (SELECT * FROM pg.public.{partition} ORDER BY tenant_id, occurred_at, event_id) "
    f"TO '{out}' (FORMAT parquet, COMPRESSION zstd)"
)
secs = time.perf_counter() - started
rows = c.execute(f"SELECT count(*) FROM read_parquet('{out}')").fetchone()[0]
print(json.dumps({"mode": "duckdb_copy", "rows": rows, "secs": secs, "rows_per_sec": rows / secs}))
