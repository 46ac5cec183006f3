#!/usr/bin/env bash
# Issue 16, goal 3: `stele verify` of an archived day against only decoding the same
# Parquet files with arrow, interleaved in one run (verify, decode, verify, decode, …).
#
# usage: bench/tlog/verify.sh [ROWS=1000000] [RUNS=5]
# Builds (unless SKIP_BUILD=1) the release `stele` binary and the archiver_bench example
# in ${CARGO_TARGET_DIR:-target}; starts its own PostgreSQL and LocalStack; fills one day
# with sealed events through the batch-writer's store (real hashes and leaves, 20 tenants),
# publishes the log as the checkpointer does (tiles, signed checkpoints, vkey), archives
# the day, then alternates the two. Both read the files from the same LocalStack bucket.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
rows=${1:-1000000} runs=${2:-5} tenants=${BENCH_TENANTS:-20}
target=${CARGO_TARGET_DIR:-target}
if [ -z "${SKIP_BUILD:-}" ]; then
  cargo build -q --release -p stele-archiver --example archiver_bench
  cargo build -q --release -p stele --bin stele
fi
bench=$target/release/examples/archiver_bench stele=$target/release/stele
out=".bench/tlog"; mkdir -p "$out"
results="$out/verify-$(date -u +%Y%m%dT%H%M%SZ).tsv"

eval "$(scripts/pg.sh start --watch-pid $$ | sed 's/^/export /')"
eval "$(localstack/start.sh --no-warm --watch-pid $$ | sed 's/^/export /')"
trap 'scripts/pg.sh stop "$STELE_PG_DIR" >/dev/null 2>&1 || true; localstack/stop.sh "$LOCALSTACK_DIR" >/dev/null 2>&1 || true' EXIT
bucket=bench-verify origin=bench.invalid/stele day=2020-01-15
url=$STELE_PG_URL vkey="$out/log.vkey"
"$bench" bucket "$STELE_AWS_ENDPOINT" "$bucket"
"$bench" fill "$url" "$day" "$rows" "$tenants"
"$bench" publish "$url" "$STELE_AWS_ENDPOINT" "$bucket" "$origin" "$vkey"
"$bench" archive "$url" "$STELE_AWS_ENDPOINT" "$bucket" "$day"

printf 'run\tmode\tsecs\trows_per_s\tload1\n' >"$results"
for r in $(seq 1 "$runs"); do
  load=$(cut -d' ' -f1 /proc/loadavg)
  t0=$(date +%s.%N)
  "$stele" verify --bucket "$bucket" --aws-endpoint "$STELE_AWS_ENDPOINT" --vkey "@$vkey" --origin "$origin" \
    >"$out/verify-$r.log" 2>&1 || { cat "$out/verify-$r.log" >&2; echo "stele verify failed" >&2; exit 1; }
  secs=$(echo "$(date +%s.%N) - $t0" | bc)
  printf '%s\tverify\t%s\t%s\t%s\n' "$r" "$secs" "$(echo "$rows / $secs" | bc)" "$load" | tee -a "$results"
  tail -n1 "$out/verify-$r.log" >&2
  load=$(cut -d' ' -f1 /proc/loadavg)
  line=$("$bench" decode "$STELE_AWS_ENDPOINT" "$bucket" | tail -n1)
  python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["rows"] == int(sys.argv[3]), d; print("%s\tdecode\t%.3f\t%.0f\t%s" % (sys.argv[2], d["secs"], d["rows_per_sec"], sys.argv[4]))' \
    "$line" "$r" "$rows" "$load" | tee -a "$results"
done
echo "results: $results" >&2
python3 - "$results" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
v = {m: [float(r["rows_per_s"]) for r in rows if r["mode"] == m] for m in ("verify", "decode")}
per = [a / b for a, b in zip(v["verify"], v["decode"])]
print(f"verify median {statistics.median(v['verify']):.0f} rows/s, arrow decode median {statistics.median(v['decode']):.0f} rows/s, "
      f"ratio of medians {statistics.median(v['verify']) / statistics.median(v['decode']):.3f}; per run " + " ".join(f"{x:.2f}" for x in per))
PY
