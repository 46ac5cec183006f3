# shellcheck shell=bash
# Shared helpers for stele's local-service scripts (scripts/pg.sh, localstack/*.sh).
# Source it; it does not change shell options of the caller.

STELE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

stele_log() { printf '%s: %s\n' "${STELE_PROG:-${0##*/}}" "$*" >&2; }
stele_die() { stele_log "error: $*"; exit 1; }

stele_is_root() { [ "$(id -u)" -eq 0 ]; }

# First python3 found (for tiny helpers only; the LocalStack venv has its own).
stele_python() {
  local p
  for p in python3 python3.11 python; do
    if command -v "$p" >/dev/null 2>&1; then command -v "$p"; return 0; fi
  done
  stele_die "python3 is required (Debian: apt-get install python3)"
}

# Prints a currently free TCP port on 127.0.0.1.
stele_free_port() {
  "$(stele_python)" -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

stele_check_port() {
  case "$1" in ''|*[!0-9]*) stele_die "invalid port: '$1'";; esac
  [ "$1" -ge 1 ] && [ "$1" -le 65535 ] || stele_die "invalid port: $1"
}

stele_check_pid() {
  case "$1" in ''|*[!0-9]*) stele_die "invalid pid: '$1'";; esac
  [ -e "/proc/$1" ] || stele_die "--watch-pid $1: no such process"
}

# apt-get install, only as root; otherwise fail saying what to install.
stele_apt_install() {
  if ! stele_is_root; then
    stele_die "missing dependency; install it with: sudo apt-get install -y $*"
  fi
  command -v apt-get >/dev/null 2>&1 || stele_die "apt-get not found; install: $*"
  stele_log "installing Debian packages: $* (apt-get update first)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 || stele_die "apt-get update failed"
  apt-get install -y -qq --no-install-recommends "$@" >&2 || stele_die "apt-get install $* failed"
}

# Process start time (clock ticks since boot), to detect pid reuse.
stele_proc_starttime() {
  local stat f
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  stat="${stat##*) }"                 # drop "pid (comm) "; field 3 is now f[0]
  read -r -a f <<<"$stat"
  printf '%s\n' "${f[19]}"          # field 22: starttime
}

# stele_start_watchdog PID DIR CMD...: detached process (own session, stdio on
# /dev/null) that runs CMD once PID has exited, polling every second. It exits
# quietly if DIR disappears first (the instance was stopped by someone else).
# Its pid is written to DIR/watchdog.pid.
stele_start_watchdog() {
  local pid="$1" dir="$2"; shift 2
  local st; st="$(stele_proc_starttime "$pid")" || stele_die "--watch-pid $pid: no such process"
  # shellcheck disable=SC2016
  setsid -f bash -c '
    pid=$1 st=$2 dir=$3; shift 3
    echo $$ > "$dir/watchdog.pid"
    while [ -d "$dir" ]; do
      s=$(cat "/proc/$pid/stat" 2>/dev/null) || break
      s=${s##*) }; read -r -a f <<<"$s"
      [ "${f[19]:-}" = "$st" ] || break
      sleep 1
    done
    [ -d "$dir" ] && exec "$@"
    exit 0' stele-watchdog "$pid" "$st" "$dir" "$@" </dev/null >/dev/null 2>&1
}

# stele_tagged_pids VAR VALUE: pids whose environment holds VAR=VALUE exactly
# (processes we started, and their children even after re-parenting).
stele_tagged_pids() {
  local want="$1=$2" p kv
  for p in /proc/[0-9]*; do
    p="${p#/proc/}"
    [ "$p" = "$$" ] && continue
    [ "$p" = "${BASHPID:-$$}" ] && continue
    [ -r "/proc/$p/environ" ] || continue
    {
      while IFS= read -r -d '' kv; do
        if [ "$kv" = "$want" ]; then printf '%s\n' "$p"; break; fi
      done < "/proc/$p/environ"
    } 2>/dev/null || true
  done
}

# stele_kill_tagged VAR VALUE [PGID] [TIMEOUT]: TERM the process group PGID (if
# given and still tagged) and every tagged process, wait up to TIMEOUT seconds
# (default 10), then KILL what is left.
stele_kill_tagged() {
  local var="$1" val="$2" pgid="${3:-}" timeout="${4:-10}" pids i
  pids="$(stele_tagged_pids "$var" "$val")"
  if [ -n "$pgid" ] && printf '%s\n' "$pids" | grep -qx "$pgid"; then
    kill -TERM -- "-$pgid" 2>/dev/null || true
  fi
  [ -n "$pids" ] || return 0
  # shellcheck disable=SC2086
  kill -TERM $pids 2>/dev/null || true
  for ((i = 0; i < timeout * 10; i++)); do
    pids="$(stele_tagged_pids "$var" "$val")"
    [ -n "$pids" ] || return 0
    sleep 0.1
  done
  stele_log "still running after ${timeout}s, sending KILL to: $(echo $pids)"
  [ -n "$pgid" ] && kill -KILL -- "-$pgid" 2>/dev/null || true
  # shellcheck disable=SC2086
  kill -KILL $pids 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    [ -n "$(stele_tagged_pids "$var" "$val")" ] || return 0
    sleep 0.1
  done
  stele_log "warning: processes survived KILL: $(stele_tagged_pids "$var" "$val" | tr '\n' ' ')"
}
