#!/usr/bin/env bash
# Stops a LocalStack started by localstack/start.sh and removes its dir.
set -euo pipefail
STELE_PROG="localstack/stop.sh"
# shellcheck source=common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"

usage() {
  cat <<USAGE
Usage: localstack/stop.sh DIR

Stops the LocalStack instance started by "localstack/start.sh" in DIR: TERM to
its process group and to every process tagged with STELE_LOCALSTACK_DIR=DIR
(this includes the node Kinesis backend, which runs in its own session), waits
up to 10 s, then KILL; finally removes DIR. Idempotent: a missing DIR is fine.
Never kills by process name.
USAGE
}

case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  '') usage >&2; stele_die "missing DIR" ;;
esac
[ $# -eq 1 ] || { usage >&2; stele_die "expected exactly one argument"; }

if [ ! -d "$1" ]; then
  stele_log "$1: no such directory; nothing to stop"
  exit 0
fi
dir="$(cd "$1" && pwd -P)"
[ -e "$dir/.stele-localstack" ] || stele_die "$dir was not created by localstack/start.sh (no .stele-localstack); refusing"

pid="$(cat "$dir/localstack.pid" 2>/dev/null || true)"
case "$pid" in *[!0-9]*) pid="" ;; esac
stele_kill_tagged STELE_LOCALSTACK_DIR "$dir" "$pid" 10
rm -rf "$dir"
stele_log "stopped LocalStack in $dir"
