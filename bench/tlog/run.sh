#!/usr/bin/env bash
# Issue 16, goal 1: the batch-writer with the verifiable log against itself without it,
# in one run: the unchanged batch-writer benchmark built at two commits, run as
# alternating pairs (off, on, off, on, …) against the same PostgreSQL.
#
# usage: bench/tlog/run.sh OFF_BENCH_BINARY ON_BENCH_BINARY [PAIRS=5]
#   the binaries: `cargo bench -p stele-batch-writer --bench batch_writer --no-run` in a
#   worktree at the commit before the log (d4b50b3, "log off") and at HEAD ("log on"),
#   each with its own CARGO_TARGET_DIR (the "Executable" line names the binary).
# env: STELE_BENCH_PG_URL (a superuser URL; default: a new `scripts/pg.sh start --durable`),
#      STELE_BENCH_ROUNDS (default 1 per run), the bench's other STELE_BENCH_* settings.
# Prints each run's rates, then the medians and on/off ratios of each method.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
off=$1 on=$2 pairs=${3:-5}
if [ -z "${STELE_BENCH_PG_URL:-}" ]; then
  eval "$(scripts/pg.sh start --durable --watch-pid $$ | sed 's/^/export /')"
  trap 'scripts/pg.sh stop "$STELE_PG_DIR" >/dev/null 2>&1 || true' EXIT
  export STELE_BENCH_PG_URL=$STELE_PG_URL
fi
export STELE_BENCH_ROUNDS=${STELE_BENCH_ROUNDS:-1}
out=".bench/tlog"; mkdir -p "$out"
results="$out/batch-writer-$(date -u +%Y%m%dT%H%M%SZ).tsv"
printf 'pair\tside\tload1\tmethod\tevents_per_s\n' >"$results"
for p in $(seq 1 "$pairs"); do
  for side in off on; do
    bin=$off; [ "$side" = on ] && bin=$on
    load=$(cut -d' ' -f1 /proc/loadavg)
    log="$out/run-$p-$side.log"
    "$bin" >"$log" 2>&1
    # "| method | best | all |" rows of the bench's table
    awk -F'|' -v p="$p" -v s="$side" -v l="$load" \
      'NF >= 4 && $3 ~ /^ *[0-9]+ *$/ { gsub(/ /, "", $2); gsub(/ /, "", $3); print p "\t" s "\t" l "\t" $2 "\t" $3 }' \
      "$log" | tee -a "$results"
  done
done
echo "results: $results" >&2
python3 - "$results" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
methods = []
for r in rows:
    if r["method"] not in methods:
        methods.append(r["method"])
print(f"{'method':<12} {'off median':>11} {'on median':>11} {'on/off':>7}  per-pair on/off")
for m in methods:
    v = {s: {r["pair"]: float(r["events_per_s"]) for r in rows if r["method"] == m and r["side"] == s} for s in ("off", "on")}
    off, on = statistics.median(v["off"].values()), statistics.median(v["on"].values())
    per = [v["on"][p] / v["off"][p] for p in v["off"] if p in v["on"]]
    print(f"{m:<12} {off:>11.0f} {on:>11.0f} {on/off:>7.3f}  " + " ".join(f"{x:.2f}" for x in per)
          + f"  (median of pairs {statistics.median(per):.3f})")
PY
