"""The oracle of the read API's differential test (tests/it/search.rs): DuckDB answers
the same searches over the same PostgreSQL tables (postgres extension) and the same
archived Parquet files (a local copy of the bucket, Hive partitioning).

usage: search_oracle.py <postgres conninfo> <archive dir> <queries.json>
Each query: {"tenant", "from", "to", "order": "asc"|"desc", and any of "actor_id",
"action", "action_prefix", "category", "outcome", "resource_type", "resource_id",
"correlation_id", "source_service"}. Prints a JSON list: per query, the event ids
in the search's order ((occurred_at, event_id) descending or ascending).
"""
import json
import sys

import duckdb
from duckdb_extensions import import_extension

COLUMNS = (
    "tenant_id, CAST(event_id AS VARCHAR) AS event_id, occurred_at, actor_id, action, category, outcome, "
    "resource_type, resource_id, correlation_id, source_service"
)
EXACT = ("actor_id", "action", "category", "outcome", "resource_type", "resource_id", "correlation_id", "source_service")


def main():
    conninfo, archive, queries = sys.argv[1], sys.argv[2], sys.argv[3]
    import_extension("postgres_scanner")
    c = duckdb.connect()
    c.execute("SET TimeZone = 'UTC'")
    c.execute("LOAD postgres_scanner")
    c.execute(f"ATTACH '{conninfo}' AS pg (TYPE postgres, READ_ONLY)")
    c.execute(
        f"CREATE TEMP TABLE events AS "
        f"SELECT {COLUMNS} FROM pg.public.audit_events "
        f"UNION ALL SELECT {COLUMNS} FROM pg.public.late_events "
        f"UNION ALL SELECT {COLUMNS} FROM read_parquet('{archive}/**/*.parquet', hive_partitioning = true)"
    )
    out = []
    for q in json.load(open(queries)):
        where = ["tenant_id = ?", "occurred_at >= CAST(? AS TIMESTAMPTZ)", "occurred_at < CAST(? AS TIMESTAMPTZ)"]
        args = [q["tenant"], q["from"], q["to"]]
        for name in EXACT:
            if name in q:
                where.append(f"{name} = ?")
                args.append(q[name])
        if "action_prefix" in q:
            where.append("starts_with(action, ?)")
            args.append(q["action_prefix"])
        direction = "ASC" if q["order"] == "asc" else "DESC"
        rows = c.execute(
            f"SELECT event_id FROM events WHERE {' AND '.join(where)} "
            f"ORDER BY occurred_at {direction}, event_id {direction}",
            args,
        ).fetchall()
        out.append([r[0] for r in rows])
    print(json.dumps(out))


if __name__ == "__main__":
    main()
