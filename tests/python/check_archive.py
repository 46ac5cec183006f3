"""Read an archive directory (a copy of <prefix>/ from S3) with DuckDB and Hive
partitioning, as Athena would, and print per-tenant row counts and Merkle roots
of the event hashes (RFC 6962, leaves in (occurred_at, event_id) order) as JSON.

usage: check_archive.py <dir>
"""
import hashlib
import json
import sys

import duckdb


def merkle_root(hashes):
    """RFC 6962 Merkle tree hash over the given 32-byte leaves."""
    def mth(lo, hi):
        n = hi - lo
        if n == 0:
            return hashlib.sha256(b"").digest()
        if n == 1:
            return hashlib.sha256(b"\x00" + hashes[lo]).digest()
        k = 1
        while k * 2 < n:
            k *= 2
        return hashlib.sha256(b"\x01" + mth(lo, lo + k) + mth(lo + k, hi)).digest()
    return mth(0, len(hashes)).hex()


def main():
    root = sys.argv[1]
    c = duckdb.connect()
    src = f"read_parquet('{root}/**/*.parquet', hive_partitioning = true)"
    types = dict(c.execute(f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM {src})").fetchall())
    rows = c.execute(
        f"SELECT tenant_id, event_hash FROM {src} ORDER BY tenant_id, occurred_at, event_id"
    ).fetchall()
    tenants = {}
    for tenant, h in rows:
        tenants.setdefault(tenant, []).append(bytes.fromhex(h))
    days = [d for (d,) in c.execute(f"SELECT DISTINCT CAST(dt AS VARCHAR) FROM {src} ORDER BY 1").fetchall()]
    out = {
        "rows": len(rows),
        "days": days,
        "types": {k: types[k] for k in ("occurred_at", "received_at", "schema_version", "metadata", "dt")},
        "tenants": {t: {"rows": len(hs), "root": merkle_root(hs)} for t, hs in tenants.items()},
    }
    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    main()
