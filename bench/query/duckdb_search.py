"""The baseline of bench/query (search_bench cold): DuckDB answering `actor_id` searches
over the same archived Parquet files, as fast as it can (tenant directory glob, Hive
layout, the time range and the actor pushed into the scan; every column fetched, as ours).

usage: duckdb_search.py <archive dir>   (the `audit` folder of a local copy of the bucket)
Reads `<limit> <tenant> <actor> <from> <to>` lines (limit 0: every row), answers each with
`<milliseconds> <event ids…>`: the ids newest first, as the search pages serve them.
"""
import sys
import time

import duckdb


def main():
    archive = sys.argv[1]
    c = duckdb.connect()
    c.execute("SET TimeZone = 'UTC'")
    for line in sys.stdin:
        limit, tenant, actor, start, end = line.split()
        files = f"{archive}/tenant_id={tenant}/dt=*/*.parquet"
        sql = (
            f"SELECT * FROM read_parquet('{files}') "
            "WHERE actor_id = ? AND occurred_at >= CAST(? AS TIMESTAMPTZ) AND occurred_at < CAST(? AS TIMESTAMPTZ) "
            "ORDER BY occurred_at DESC, event_id DESC"
            + (f" LIMIT {int(limit)}" if int(limit) > 0 else "")
        )
        started = time.perf_counter()
        cur = c.execute(sql, [actor, start, end])
        rows = cur.fetchall()
        ms = (time.perf_counter() - started) * 1000
        at = [d[0] for d in cur.description].index("event_id")
        ids = [str(r[at]) for r in rows]
        print(f"{ms:.3f} " + " ".join(ids), flush=True)


if __name__ == "__main__":
    main()
