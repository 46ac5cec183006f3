#!/usr/bin/env bash
# Starts a throwaway LocalStack (host mode, no Docker) and prints its endpoint.
set -euo pipefail
STELE_PROG="localstack/start.sh"
# shellcheck source=common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"

usage() {
  cat <<USAGE
Usage: localstack/start.sh [--dir DIR] [--port PORT] [--watch-pid PID] [--no-warm]

Starts LocalStack in host mode (own session/process group), waits until
/_localstack/health answers (60 s timeout) and prints exactly, on stdout:
  STELE_AWS_ENDPOINT=http://127.0.0.1:PORT
  LOCALSTACK_DIR=DIR
Everything else goes to stderr. Runs localstack/install.sh first (instant when
already installed).

  --dir DIR        state dir (must be empty or absent; default: new mktemp dir).
                   Holds localstack.log, localstack.pid, fs/ (FILESYSTEM_ROOT).
  --port PORT      gateway port on 127.0.0.1 (default: a free port)
  --watch-pid PID  also start a detached watchdog that runs
                   "localstack/stop.sh DIR" once PID has exited
  --no-warm        do not start the Kinesis backend before returning (by default
                   a ListStreams call for account 000000000000 starts it, so the
                   first Kinesis call of a test is not slow)
  -h, --help       this help

Stop with: localstack/stop.sh DIR
USAGE
}

dir="" port="" watch="" warm=1
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) [ $# -ge 2 ] || stele_die "--dir needs a value"; dir="$2"; shift ;;
    --dir=*) dir="${1#*=}" ;;
    --port) [ $# -ge 2 ] || stele_die "--port needs a value"; port="$2"; shift ;;
    --port=*) port="${1#*=}" ;;
    --watch-pid) [ $# -ge 2 ] || stele_die "--watch-pid needs a value"; watch="$2"; shift ;;
    --watch-pid=*) watch="${1#*=}" ;;
    --no-warm) warm=0 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; stele_die "unknown argument: $1" ;;
  esac
  shift
done
[ -z "$port" ] || stele_check_port "$port"
[ -z "$watch" ] || stele_check_pid "$watch"

"$STELE_ROOT/localstack/install.sh" >&2

if [ -n "$dir" ]; then
  mkdir -p "$dir"
  [ -z "$(ls -A "$dir")" ] || stele_die "--dir $dir is not empty"
else
  dir="$(mktemp -d "${TMPDIR:-/tmp}/stele-localstack.XXXXXX")"
fi
dir="$(cd "$dir" && pwd -P)"
: > "$dir/.stele-localstack"         # marks the dir as ours for stop.sh

# Share the pre-installed kinesis-local instead of npm-installing it per instance.
mkdir -p "$dir/fs/usr/lib"
ln -s "$LS_LPM_ROOT/usr/lib/localstack" "$dir/fs/usr/lib/localstack"

log="$dir/localstack.log"
fail() {
  stele_log "error: $*"
  stele_log "--- last lines of $log ---"
  tail -n 40 "$log" >&2 || true
  "$STELE_ROOT/localstack/stop.sh" "$dir" >&2 || true
  exit 1
}

# launch PORT: start LocalStack in the background, pid into $pid and DIR/localstack.pid.
# STELE_LOCALSTACK_DIR tags LocalStack and all its children (the node Kinesis
# backend runs in a session of its own) so stop.sh finds them without names.
launch() {
  echo "$1" > "$dir/port"
  (
    cd "$dir"
    exec env STELE_LOCALSTACK_DIR="$dir" \
      OVERRIDE_IN_DOCKER=0 FILESYSTEM_ROOT="$dir/fs" GATEWAY_LISTEN="127.0.0.1:$1" \
      DNS_ADDRESS=0 DISABLE_EVENTS=1 SKIP_SSL_CERT_DOWNLOAD=1 KINESIS_LATENCY=0 \
      KINESIS_PERSISTENCE=0 SQS_ENDPOINT_STRATEGY=path LOCALSTACK_HOST="127.0.0.1:$1" \
      KINESIS_MOCK_VERSION="$KINESIS_MOCK_VERSION" \
      PYTHONPATH="$STELE_ROOT/localstack/ext${PYTHONPATH:+:$PYTHONPATH}" \
      PROVIDER_OVERRIDE_DYNAMODB=stele_moto \
      setsid "$LS_VENV/bin/python" -m localstack.runtime.main
  ) </dev/null >>"$log" 2>&1 &
  pid=$!
  disown "$pid" 2>/dev/null || true
  echo "$pid" > "$dir/localstack.pid"
}

# wait_ready PORT: 0 ready, 3 port already in use, 1 other failure.
# Waits for health (and optionally warms Kinesis) with the venv's python.
wait_ready() {
  "$LS_VENV/bin/python" - "$1" "$pid" "$warm" "$log" <<'PY' >&2
import json, os, sys, time, urllib.request
port, pid, warm, log = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4]
base = f"http://127.0.0.1:{port}"
deadline = time.monotonic() + 60
def port_in_use():
    try:
        with open(log, errors="replace") as f:
            return "CannotListenError" in f.read()
    except OSError:
        return False
while True:
    if not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().rsplit(") ", 1)[1][0] == "Z":
        print("LocalStack exited during start-up", file=sys.stderr); sys.exit(3 if port_in_use() else 1)
    if port_in_use():
        print(f"port {port} is already in use", file=sys.stderr); sys.exit(3)
    try:
        with urllib.request.urlopen(base + "/_localstack/health", timeout=2) as r:
            if r.status == 200 and "services" in json.load(r):
                break
    except Exception:
        pass
    if time.monotonic() > deadline:
        print("timed out after 60 s waiting for /_localstack/health", file=sys.stderr); sys.exit(1)
    time.sleep(0.1)
if warm:
    req = urllib.request.Request(base + "/", data=b"{}", method="POST", headers={
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": "Kinesis_20131202.ListStreams",
        "Authorization": "AWS4-HMAC-SHA256 Credential=test/20250101/us-east-1/kinesis/aws4_request, SignedHeaders=host, Signature=0",
    })
    try:
        with urllib.request.urlopen(req, timeout=max(5, deadline - time.monotonic())) as r:
            r.read()
    except Exception as e:
        print(f"Kinesis warm-up failed: {e}", file=sys.stderr); sys.exit(1)
PY
}

explicit_port="$port" tries=1
[ -n "$explicit_port" ] || tries=3
while :; do
  [ -n "$explicit_port" ] || port="$(stele_free_port)"
  launch "$port"
  rc=0; wait_ready "$port" || rc=$?
  [ "$rc" = 0 ] && break
  tries=$((tries - 1))
  if [ "$rc" = 3 ] && [ "$tries" -gt 0 ]; then
    stele_log "port $port was taken; retrying with another port"
    stele_kill_tagged STELE_LOCALSTACK_DIR "$dir" "$pid" 5
    : > "$log"
    continue
  fi
  fail "LocalStack did not become healthy on port $port"
done

if [ -n "$watch" ]; then
  stele_start_watchdog "$watch" "$dir" "$STELE_ROOT/localstack/stop.sh" "$dir"
fi

stele_log "LocalStack pid $pid ready on 127.0.0.1:$port (log: $log)"
printf 'STELE_AWS_ENDPOINT=http://127.0.0.1:%s\nLOCALSTACK_DIR=%s\n' "$port" "$dir"
