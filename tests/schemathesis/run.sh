#!/usr/bin/env bash
# Contract test: Schemathesis fuzzes POST /v1/events and GET /v1/health from
# docs/openapi.yaml against the ingest handler served locally (the example
# `serve_local`, in front of the *in-memory* sink that accepts every record:
# the contract is about HTTP, not Kinesis). Fails on any 5xx or any response
# that the spec does not describe (status, content type, body schema).
#
# Usage: tests/schemathesis/run.sh [--max-examples N] [--seed S]
# Env:   STELE_SCHEMATHESIS_PYTHON (default python3.11)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
max_examples=50
seed=""
while [ $# -gt 0 ]; do
  case "$1" in
    --max-examples) max_examples="$2"; shift ;;
    --seed) seed="$2"; shift ;;
    -h|--help) sed -n 2,9p "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

venv="$here/.venv-schemathesis"
python="${STELE_SCHEMATHESIS_PYTHON:-python3.11}"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)"
if [ ! -x "$venv/bin/schemathesis" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "run.sh: installing Schemathesis into $venv" >&2
  "$python" -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$here/requirements.txt" >&2
  echo "$want" > "$stamp"
fi

(cd "$root" && cargo build -q -p stele --example serve_local)
server_bin="$root/target/debug/examples/serve_local"

out="$(mktemp -d "${TMPDIR:-/tmp}/stele-schemathesis.XXXXXX")"
token="schemathesis-token"
STELE_LOCAL_ADDR=127.0.0.1:0 STELE_LOCAL_TOKENS="$token=tenant-a" STELE_LOCAL_SINK=memory \
  "$server_bin" >"$out/server.out" 2>"$out/server.err" &
server=$!
cleanup() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  rm -rf "$out"
}
trap cleanup EXIT

url=""
for _ in $(seq 1 100); do
  url="$(sed -n 's/^listening on //p' "$out/server.out")"
  [ -n "$url" ] && break
  kill -0 "$server" 2>/dev/null || { cat "$out/server.err" >&2; echo "run.sh: server exited" >&2; exit 1; }
  sleep 0.1
done
[ -n "$url" ] || { echo "run.sh: server did not start" >&2; exit 1; }
echo "run.sh: handler on $url" >&2

args=(run "$root/docs/openapi.yaml" --url "$url"
  --checks not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance
  --max-examples "$max_examples" --header "Authorization: Bearer $token"
  --workers 1 --request-timeout 30 --no-color)
[ -z "$seed" ] || args+=(--seed "$seed")
status=0
(cd "$out" && "$venv/bin/schemathesis" "${args[@]}") || status=$?
if [ "$status" -ne 0 ]; then
  echo "run.sh: Schemathesis failed (exit $status); server log:" >&2
  tail -n 20 "$out/server.err" >&2
fi
exit "$status"
