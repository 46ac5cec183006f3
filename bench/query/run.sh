#!/usr/bin/env bash
# Issue 17: the read API's searches against baselines, in one run each (release mode).
#
# usage: bench/query/run.sh hot  [ROWS=10000000] [DAYS=30] [QUERIES=500]
#        bench/query/run.sh cold [ROWS_PER_DAY=50000] [DAYS=30] [QUERIES=50]
# hot:  one tenant's ROWS events spread over DAYS day partitions (real sealed rows, through
#       the batch-writer's store: bench/archiver's `fill`), then one-day + actor_id searches
#       through the query function's handler against the same rows read by one SQL statement.
# cold: DAYS days of one tenant archived by the archiver (export, verify, detach), copied to a
#       local folder, then actor_id searches over all DAYS days: our search (first page, and
#       every page) against DuckDB over the same files (bench/query/duckdb_search.py); then
#       GET /v1/events/export of the archived range (NDJSON, CSV) and of three hot days after it.
# Builds (unless SKIP_BUILD=1) in ${CARGO_TARGET_DIR:-target}; starts its own PostgreSQL (and
# LocalStack for cold). Prints each query's times on stderr, the summary JSON on stdout.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
mode=${1:?hot or cold}
target=${CARGO_TARGET_DIR:-target}
if [ -z "${SKIP_BUILD:-}" ]; then
  cargo build -q --release -p stele --example search_bench
  cargo build -q --release -p stele-archiver --example archiver_bench
fi
bench=$target/release/examples/search_bench archiver=$target/release/examples/archiver_bench
out=".bench/query"; mkdir -p "$out"
stamp=$(date -u +%Y%m%dT%H%M%SZ)

eval "$(scripts/pg.sh start --watch-pid $$ | sed 's/^/export /')"
cleanup() { scripts/pg.sh stop "$STELE_PG_DIR" >/dev/null 2>&1 || true; }
trap cleanup EXIT
url=$STELE_PG_URL tenant=tenant-0 first=2020-02-01

case "$mode" in
hot)
  rows=${2:-10000000} days=${3:-30} queries=${4:-500}
  per_day=$((rows / days))
  for d in $(seq 0 $((days - 1))); do
    "$archiver" fill "$url" "$(date -u -d "$first + $d day" +%F)" "$per_day" 1 >&2
  done
  "$bench" hot "$url" "$tenant" "$first" "$days" "$queries" 2>"$out/hot-$stamp.tsv" | tee "$out/hot-$stamp.json"
  ;;
cold)
  per_day=${2:-50000} days=${3:-30} queries=${4:-50}
  eval "$(localstack/start.sh --no-warm --watch-pid $$ | sed 's/^/export /')"
  trap 'cleanup; localstack/stop.sh "$LOCALSTACK_DIR" >/dev/null 2>&1 || true' EXIT
  bucket=bench-query dir="$out/archive-$stamp"
  "$archiver" bucket "$STELE_AWS_ENDPOINT" "$bucket"
  for d in $(seq 0 $((days - 1))); do
    day=$(date -u -d "$first + $d day" +%F)
    "$archiver" fill "$url" "$day" "$per_day" 1 >&2
    "$archiver" archive "$url" "$STELE_AWS_ENDPOINT" "$bucket" "$day" >&2
  done
  # The archived partitions are detached: the search reads those days from the files.
  "$bench" download "$STELE_AWS_ENDPOINT" "$bucket" "$dir" >&2
  python=$(bash tests/python/venv.sh)
  to=$(date -u -d "$first + $days day" +%F)
  "$bench" cold "$url" "$dir" "$tenant" "${first}T00:00:00Z" "${to}T00:00:00Z" "$queries" "$python" \
    2>"$out/cold-$stamp.tsv" | tee "$out/cold-$stamp.json"
  rm -rf "$dir"
  # Exports through the handler: the archived days (uploaded: larger than a response), then
  # three hot days after them, inline-sized and uploaded.
  for f in ndjson csv; do
    "$bench" export "$url" "$STELE_AWS_ENDPOINT" "$bucket" "$tenant" "${first}T00:00:00Z" "${to}T00:00:00Z" $f 5000000 \
      | tee -a "$out/export-$stamp.json"
  done
  for d in 0 1 2; do
    "$archiver" fill "$url" "$(date -u -d "$to + $d day" +%F)" "$per_day" 1 >&2
  done
  hot_to=$(date -u -d "$to + 3 day" +%F)
  "$bench" export "$url" "$STELE_AWS_ENDPOINT" "$bucket" "$tenant" "${to}T00:00:00Z" "${hot_to}T00:00:00Z" ndjson 5000000 \
    | tee -a "$out/export-$stamp.json"
  ;;
*) echo "usage: $0 hot|cold ..." >&2; exit 2 ;;
esac
