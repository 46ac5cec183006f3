#!/usr/bin/env bash
# End-to-end benchmark: starts `stele dev` (release build, its own PostgreSQL and
# LocalStack on free loopback ports), runs the bounded load generator
# (bench/e2e/e2e_load.rs: stele over HTTP, the emulator's PutRecords ceiling,
# and the in-process ingest → batch-writer → PostgreSQL pipeline), writes
# bench/e2e/out/{timeseries.csv,summary.json,plot.svg}, then stops stele dev
# with Ctrl-C. Nothing is written to docs/ automatically.
#
#   bash bench/e2e/run.sh                       # 60 s per phase, 4 clients, batches of 100
#   E2E_SECONDS=5 E2E_PROFILE=debug bash bench/e2e/run.sh   # quick smoke
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

SECONDS_PER_PHASE="${E2E_SECONDS:-60}"
CLIENTS="${E2E_CLIENTS:-4}"
BATCH="${E2E_BATCH:-100}"
PROFILE="${E2E_PROFILE:-release}"
OUT="${E2E_OUT:-bench/e2e/out}"

if [ "$PROFILE" = release ]; then
  cargo build --release --bin stele --example e2e_load
  bin=target/release
else
  cargo build --bin stele --example e2e_load
  bin=target/debug
fi
mkdir -p "$OUT"
log="$OUT/stele-dev.log"

"$bin/stele" dev --port 0 --batch-window-ms 200 >"$log" 2>"$OUT/stele-dev.err" &
dev_pid=$!
stop_dev() {
  if kill -0 "$dev_pid" 2>/dev/null; then
    kill -INT "$dev_pid" 2>/dev/null || true
    for _ in $(seq 1 240); do kill -0 "$dev_pid" 2>/dev/null || return 0; sleep 0.5; done
    kill -KILL "$dev_pid" 2>/dev/null || true
  fi
}
trap stop_dev EXIT

for _ in $(seq 1 600); do
  grep -q '^ready:' "$log" && break
  kill -0 "$dev_pid" 2>/dev/null || { cat "$OUT/stele-dev.err" >&2; exit 1; }
  sleep 0.5
done
grep -q '^ready:' "$log" || { echo "stele dev did not become ready" >&2; exit 1; }
pg_url="$(sed -n 's/^PostgreSQL *//p' "$log" | head -1)"
ingest="$(sed -n 's#^ingest *http://\([^/]*\)/v1/events.*#\1#p' "$log" | head -1)"
aws_endpoint="$(sed -n 's/^LocalStack *\([^ ]*\).*/\1/p' "$log" | head -1)"
echo "stele dev: ingest $ingest, PostgreSQL $pg_url, LocalStack $aws_endpoint" >&2

"$bin/examples/e2e_load" --ingest "$ingest" --pg "$pg_url" --aws-endpoint "$aws_endpoint" \
  --clients "$CLIENTS" --batch "$BATCH" --seconds "$SECONDS_PER_PHASE" --out "$OUT" "$@"
