#!/usr/bin/env bash
# Throwaway PostgreSQL clusters for stele's tests and benchmarks.
set -euo pipefail
STELE_PROG="scripts/pg.sh"
# shellcheck source=lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

usage() {
  cat <<USAGE
Usage: scripts/pg.sh start [--dir DIR] [--port PORT] [--watch-pid PID] [--durable]
       scripts/pg.sh stop DIR
       scripts/pg.sh restart DIR

start    initdb a new cluster in DIR/data (superuser "stele", trust auth, UTF8,
         locale C.UTF-8) and start it on 127.0.0.1:PORT with its socket in DIR.
         Prints exactly, on stdout:
           STELE_PG_URL=postgres://stele@127.0.0.1:PORT/postgres
           STELE_PG_DIR=DIR
         --dir DIR        cluster dir (must be empty or absent; default: new mktemp dir)
         --port PORT      default: a free port
         --watch-pid PID  detached watchdog runs "scripts/pg.sh stop DIR" once PID exits
         --durable        keep fsync on (benchmarks); default is fsync=off
stop     pg_ctl -m fast stop, then remove DIR. Idempotent.
restart  crash-restart for fault tests: pg_ctl -m immediate stop, then start
         again on the same port; prints the same two lines.

Uses the newest /usr/lib/postgresql/N/bin. If none is installed: as root, the
Debian package "postgresql" is installed with apt-get; otherwise it fails. As
root the cluster runs as user "postgres" (via runuser). Logs: DIR/postgres.log.
USAGE
}

pg_bin() {
  local d best=""
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] || continue
    best="$(printf '%s\n%s\n' "$best" "$d" | sed '/^$/d' | sort -V | tail -n 1)"
  done
  printf '%s\n' "$best"
}

ensure_pg() {
  PG_BIN="$(pg_bin)"
  if [ -z "$PG_BIN" ]; then
    stele_is_root || stele_die "PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin; install them: sudo apt-get install -y postgresql"
    stele_apt_install postgresql
    PG_BIN="$(pg_bin)"
    [ -n "$PG_BIN" ] || stele_die "installed postgresql but found no /usr/lib/postgresql/*/bin/initdb"
  fi
}

# The user that owns and runs the cluster (root is refused by PostgreSQL).
pg_user() {
  if ! stele_is_root; then id -un; return; fi
  if id -u postgres >/dev/null 2>&1; then echo postgres; return; fi
  stele_die "running as root but there is no 'postgres' user to own the cluster (apt-get install postgresql creates it)"
}

# as_owner DIR CMD...: run CMD in DIR as the cluster owner, tagged with STELE_PG_DIR.
as_owner() {
  local dir="$1"; shift
  if stele_is_root; then
    (cd "$dir" && runuser -u "$PG_USER" -- env STELE_PG_DIR="$dir" "$@")
  else
    (cd "$dir" && env STELE_PG_DIR="$dir" "$@")
  fi
}

print_env() {
  printf 'STELE_PG_URL=postgres://stele@127.0.0.1:%s/postgres\nSTELE_PG_DIR=%s\n' "$1" "$2"
}

# pg_start DIR PORT: start the existing cluster; returns pg_ctl's status.
pg_start() {
  local dir="$1" port="$2" opts
  opts="-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200"
  [ "$(cat "$dir/durable" 2>/dev/null || echo 0)" = 1 ] || opts="$opts -c fsync=off"
  as_owner "$dir" "$PG_BIN/pg_ctl" -D "$dir/data" -o "$opts" -l "$dir/postgres.log" -w -t 60 start >&2
}

locale_opt() {
  if locale -a 2>/dev/null | grep -qix 'c\.utf-\?8'; then echo "--locale=C.UTF-8"; else echo "--no-locale"; fi
}

cmd_start() {
  local dir="" port="" watch="" durable=0
  while [ $# -gt 0 ]; do
    case "$1" in
      --dir) [ $# -ge 2 ] || stele_die "--dir needs a value"; dir="$2"; shift ;;
      --dir=*) dir="${1#*=}" ;;
      --port) [ $# -ge 2 ] || stele_die "--port needs a value"; port="$2"; shift ;;
      --port=*) port="${1#*=}" ;;
      --watch-pid) [ $# -ge 2 ] || stele_die "--watch-pid needs a value"; watch="$2"; shift ;;
      --watch-pid=*) watch="${1#*=}" ;;
      --durable) durable=1 ;;
      -h|--help) usage; exit 0 ;;
      *) usage >&2; stele_die "unknown argument to start: $1" ;;
    esac
    shift
  done
  [ -z "$port" ] || stele_check_port "$port"
  [ -z "$watch" ] || stele_check_pid "$watch"
  ensure_pg
  PG_USER="$(pg_user)"

  if [ -n "$dir" ]; then
    mkdir -p "$dir"
    [ -z "$(ls -A "$dir")" ] || stele_die "--dir $dir is not empty"
  else
    dir="$(mktemp -d "${TMPDIR:-/tmp}/stele-pg.XXXXXX")"
  fi
  dir="$(cd "$dir" && pwd -P)"
  : > "$dir/.stele-pg"
  echo "$durable" > "$dir/durable"
  if stele_is_root; then
    chown "$PG_USER" "$dir"
    runuser -u "$PG_USER" -- test -w "$dir" -a -x "$dir" ||
      { rm -rf "$dir"; stele_die "user $PG_USER cannot reach $dir (a parent directory is not traversable); use another --dir"; }
  fi

  # shellcheck disable=SC2046
  if ! as_owner "$dir" "$PG_BIN/initdb" -D "$dir/data" -A trust -U stele --no-sync -E UTF8 $(locale_opt) \
      >"$dir/initdb.log" 2>&1; then
    cat "$dir/initdb.log" >&2; rm -rf "$dir"; stele_die "initdb failed"
  fi

  local tries=1 explicit_port="$port"
  [ -n "$explicit_port" ] || tries=3
  while :; do
    [ -n "$explicit_port" ] || port="$(stele_free_port)"
    echo "$port" > "$dir/port"
    if pg_start "$dir" "$port"; then break; fi
    tries=$((tries - 1))
    if [ "$tries" -le 0 ]; then
      stele_log "--- last lines of $dir/postgres.log ---"; tail -n 30 "$dir/postgres.log" >&2 || true
      cmd_stop "$dir" >&2 || true
      stele_die "PostgreSQL did not start on port $port"
    fi
    stele_log "start on port $port failed; retrying with another port"
  done

  if [ -n "$watch" ]; then
    stele_start_watchdog "$watch" "$dir" "$STELE_ROOT/scripts/pg.sh" stop "$dir"
  fi
  stele_log "PostgreSQL ($PG_BIN) ready on 127.0.0.1:$port as $PG_USER (log: $dir/postgres.log)"
  print_env "$port" "$dir"
}

resolve_dir() {  # resolve_dir DIR -> canonical dir of one of our clusters, or empty if gone
  [ -d "$1" ] || return 0
  local d; d="$(cd "$1" && pwd -P)"
  [ -e "$d/.stele-pg" ] || stele_die "$d was not created by scripts/pg.sh start (no .stele-pg); refusing"
  printf '%s\n' "$d"
}

cmd_stop() {
  [ $# -eq 1 ] || { usage >&2; stele_die "usage: scripts/pg.sh stop DIR"; }
  case "$1" in -h|--help) usage; exit 0 ;; esac
  local dir; dir="$(resolve_dir "$1")"
  if [ -z "$dir" ]; then stele_log "$1: no such directory; nothing to stop"; return 0; fi
  PG_BIN="$(pg_bin)"
  PG_USER="$(stat -c %U "$dir")"
  if [ -n "$PG_BIN" ] && [ -f "$dir/data/postmaster.pid" ]; then
    as_owner "$dir" "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w -t 20 stop >&2 ||
      stele_log "pg_ctl stop failed; killing the cluster's processes"
  fi
  stele_kill_tagged STELE_PG_DIR "$dir" "" 10     # leftovers, if any
  rm -rf "$dir"
  stele_log "stopped PostgreSQL in $dir"
}

cmd_restart() {
  [ $# -eq 1 ] || { usage >&2; stele_die "usage: scripts/pg.sh restart DIR"; }
  case "$1" in -h|--help) usage; exit 0 ;; esac
  local dir port; dir="$(resolve_dir "$1")"
  [ -n "$dir" ] || stele_die "$1: no such directory"
  port="$(cat "$dir/port")"
  ensure_pg
  PG_USER="$(stat -c %U "$dir")"
  if [ -f "$dir/data/postmaster.pid" ]; then
    as_owner "$dir" "$PG_BIN/pg_ctl" -D "$dir/data" -m immediate -w stop >&2 ||
      stele_log "pg_ctl -m immediate stop failed; continuing"
  fi
  stele_kill_tagged STELE_PG_DIR "$dir" "" 5
  pg_start "$dir" "$port" || {
    tail -n 30 "$dir/postgres.log" >&2 || true
    stele_die "PostgreSQL did not restart on port $port"
  }
  stele_log "PostgreSQL restarted on 127.0.0.1:$port"
  print_env "$port" "$dir"
}

case "${1:-}" in
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  restart) shift; cmd_restart "$@" ;;
  -h|--help|help) usage ;;
  '') usage >&2; exit 2 ;;
  *) usage >&2; stele_die "unknown command: $1" ;;
esac
