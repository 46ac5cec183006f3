#!/usr/bin/env bash
# Contract test: Schemathesis fuzzes every operation of docs/openapi.yaml against
# the handlers served locally (the example `serve_local`): POST /v1/events and
# GET /v1/health against ingest in front of the *in-memory* sink that accepts
# every record (the contract is about HTTP, not Kinesis); the read routes
# (/v1/events/{event_id}/proof, /v1/log/…) against the query handler reading a
# fresh database of STELE_TEST_PG_URL, in which tenant-a has one signed
# checkpoint (so /v1/log/checkpoint and /v1/log/consistency answer 200 too) and
# no stored events (proofs answer 400/404). Fails on any 5xx or any response
# that the spec does not describe (status, content type, body schema).
#
# Usage: tests/schemathesis/run.sh [--max-examples N] [--seed S]
# Env:   STELE_SCHEMATHESIS_PYTHON (default python3.11); STELE_TEST_PG_URL (a
#        PostgreSQL superuser URL, as scripts/test sets it; without it the read
#        routes reach ingest and get its 404, which the spec also allows)
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
server_bin="${CARGO_TARGET_DIR:-$root/target}/debug/examples/serve_local"

out="$(mktemp -d "${TMPDIR:-/tmp}/stele-schemathesis.XXXXXX")"
token="schemathesis-token"
query_db=""
if [ -n "${STELE_TEST_PG_URL:-}" ]; then
  db="schemathesis_$(od -An -N5 -tx1 /dev/urandom | tr -d ' \n')"
  psql -X -q -v ON_ERROR_STOP=1 "$STELE_TEST_PG_URL" -c "CREATE DATABASE $db"
  query_db="${STELE_TEST_PG_URL%/*}/$db"
fi
STELE_LOCAL_ADDR=127.0.0.1:0 STELE_LOCAL_TOKENS="$token=tenant-a" STELE_LOCAL_SINK=memory \
  STELE_LOCAL_QUERY_DB="$query_db" "$server_bin" >"$out/server.out" 2>"$out/server.err" &
server=$!
cleanup() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  rm -rf "$out"
  [ -z "$query_db" ] || psql -X -q "$STELE_TEST_PG_URL" -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true
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
if [ -n "$query_db" ]; then
  # One checkpoint of tenant-a's log (size 1), as the checkpointer records it: the read
  # routes then have something to answer 200 with (the server checks no signature here).
  psql -X -q -v ON_ERROR_STOP=1 "$query_db" -c "INSERT INTO tlog_checkpoints (tenant_id, size, root, note)
    VALUES ('tenant-a', 1, decode(repeat('ab', 32), 'hex'),
            'schemathesis/tenant/tenant-a' || chr(10) || '1' || chr(10) || encode(decode(repeat('ab', 32), 'hex'), 'base64')
            || chr(10) || chr(10) || '— schemathesis' || chr(10))"
  echo "run.sh: query handler on $query_db" >&2
fi

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
