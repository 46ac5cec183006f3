#!/usr/bin/env bash
# Archiver benchmark: on the same partition, in one run, rows/s of
#   copy_floor       binary COPY (SELECT … ORDER BY tenant, time) TO STDOUT, rows discarded (the read floor)
#   duckdb_copy      DuckDB + postgres extension: COPY (SELECT …) TO 'x.parquet' (COMPRESSION zstd), local file
#   archiver_export  stele: COPY → Arrow → Parquet zstd → S3 multipart (LocalStack), no verify
#   archiver_full    stele: export + manifest + verify from S3 + DETACH CONCURRENTLY (table kept)
# and the peak RSS of each process (/usr/bin/time -v), for every size given.
#
# usage: [BENCH_TENANTS=20] bench/archiver/run.sh [ROWS ...]   (default: 100000 1000000)
# Needs: cargo, python3.11; starts its own PostgreSQL (fsync on) and LocalStack.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
sizes=("${@:-100000 1000000}")
read -r -a sizes <<<"${sizes[*]}"
tenants=${BENCH_TENANTS:-20}
out_dir=".bench/archiver"; mkdir -p "$out_dir"
results="$out_dir/results-$(date -u +%Y%m%dT%H%M%SZ).jsonl"

# SKIP_BUILD=1 uses the binary already built (the shared target dir may be busy).
[ -n "${SKIP_BUILD:-}" ] || cargo build -q --release -p stele-archiver --example archiver_bench
bin=${CARGO_TARGET_DIR:-target}/release/examples/archiver_bench

if [ ! -x .venv-tests/bin/python ]; then python3.11 -m venv .venv-tests; fi
.venv-tests/bin/python -c 'import duckdb' 2>/dev/null ||
  .venv-tests/bin/pip install -q --disable-pip-version-check -r tests/python/requirements.txt

eval "$(scripts/pg.sh start --durable --watch-pid $$ | sed 's/^/export /')"
eval "$(localstack/start.sh --no-warm --watch-pid $$ | sed 's/^/export /')"
trap 'scripts/pg.sh stop "$STELE_PG_DIR" >/dev/null 2>&1 || true; localstack/stop.sh "$LOCALSTACK_DIR" >/dev/null 2>&1 || true' EXIT
psql=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)/psql
bucket="bench-archive"
"$bin" bucket "$STELE_AWS_ENDPOINT" "$bucket"

# Run a measured command; append its JSON line plus size and peak RSS (KiB) to $results.
measure() {
  local n=$1; shift
  local err; err=$(mktemp)
  local line
  line=$(/usr/bin/time -v "$@" 2>"$err" | tail -n1)
  local rss; rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$err")
  grep -v -E '^\s|Command being timed' "$err" >&2 || true
  rm -f "$err"
  python3 -c 'import json,sys; d=json.loads(sys.argv[1]); d["size"]=int(sys.argv[2]); d["peak_rss_kib"]=int(sys.argv[3]); print(json.dumps(d))' \
    "$line" "$n" "$rss" | tee -a "$results"
}

i=0
for n in "${sizes[@]}"; do
  i=$((i + 1))
  day=$(printf '2020-01-%02d' "$i")
  part="audit_events_p${day//-/}"
  db="bench_$n"
  "$psql" "$STELE_PG_URL" -qc "CREATE DATABASE $db" >/dev/null
  url="${STELE_PG_URL%/*}/$db"
  conninfo="host=127.0.0.1 port=$(sed -E 's#.*:([0-9]+)/.*#\1#' <<<"$STELE_PG_URL") user=stele dbname=$db"
  echo "== $n rows ($part)" >&2
  # Sealed events through the batch-writer's store: real hashes and log leaves (the
  # archiver re-hashes every row and checks its leaf; made-up rows would fail).
  "$bin" fill "$url" "$day" "$n" "$tenants" >&2
  measure "$n" "$bin" copy "$url" "$day"
  measure "$n" .venv-tests/bin/python bench/archiver/duckdb_baseline.py "$conninfo" "$part" "$out_dir/duckdb-$n.parquet"
  measure "$n" "$bin" export "$url" "$STELE_AWS_ENDPOINT" "$bucket" "$day"
  measure "$n" "$bin" archive "$url" "$STELE_AWS_ENDPOINT" "$bucket" "$day"
  ls -l "$out_dir/duckdb-$n.parquet" >&2
done

echo "results: $results" >&2
python3 - "$results" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(f"{'rows':>9} {'mode':<16} {'secs':>7} {'rows/s':>10} {'peak RSS MiB':>12}")
for r in rows:
    print(f"{r['size']:>9} {r['mode']:<16} {r['secs']:>7.2f} {r['rows_per_sec']:>10.0f} {r['peak_rss_kib']/1024:>12.1f}")
PY
