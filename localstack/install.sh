#!/usr/bin/env bash
# Installs LocalStack (host mode, no Docker) into .localstack/venv and its
# Kinesis backend (kinesis-local from npm) into .localstack/lpm. Idempotent.
set -euo pipefail
STELE_PROG="localstack/install.sh"
# shellcheck source=common.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/common.sh"

usage() {
  cat <<USAGE
Usage: localstack/install.sh [--force]

Creates .localstack/venv (python3.11 -m venv) at the repository root, installs
localstack/requirements.txt into it, and installs LocalStack's Kinesis backend
(npm kinesis-local \$KINESIS_MOCK_VERSION, default 0.6.2) into .localstack/lpm.
A marker with the sha256 of requirements.txt makes later runs instant; a changed
requirements.txt re-installs. Prints nothing on stdout.

  --force     re-install everything
  -h, --help  this help

Environment: STELE_PYTHON (default python3.11), KINESIS_MOCK_VERSION (0.6.2).
Needs python3.11 with venv (Debian: python3.11-venv) and node+npm (Debian:
nodejs npm); as root, missing Debian packages are installed with apt-get.
USAGE
}

force=0
while [ $# -gt 0 ]; do
  case "$1" in
    --force) force=1 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; stele_die "unknown argument: $1" ;;
  esac
  shift
done

[ -f "$LS_REQUIREMENTS" ] || stele_die "missing $LS_REQUIREMENTS"
mkdir -p "$LS_HOME"

# Serialise concurrent installs (e.g. several test processes calling start.sh).
if command -v flock >/dev/null 2>&1; then
  exec 9>"$LS_HOME/install.lock"
  flock 9
fi

want="$(sha256sum "$LS_REQUIREMENTS" | cut -d' ' -f1)"

venv_ok() {
  [ -x "$LS_VENV/bin/python" ] && "$LS_VENV/bin/python" -c '' 2>/dev/null
}

if [ "$force" = 0 ] && [ -f "$LS_MARKER" ] && [ "$(cat "$LS_MARKER")" = "$want" ] && venv_ok; then
  :
else
  command -v "$LS_PYTHON" >/dev/null 2>&1 ||
    stele_die "$LS_PYTHON not found (LocalStack 4.9 needs Python 3.11; Debian 12: apt-get install python3.11 python3.11-venv, or set STELE_PYTHON)"
  if ! "$LS_PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
    stele_apt_install python3.11-venv
  fi
  if [ "$force" = 1 ] || ! venv_ok; then
    rm -rf "$LS_VENV"
    stele_log "creating $LS_VENV with $LS_PYTHON"
    "$LS_PYTHON" -m venv "$LS_VENV" >&2 || stele_die "$LS_PYTHON -m venv failed"
  fi
  rm -f "$LS_MARKER"
  stele_log "installing $LS_REQUIREMENTS into the venv (about a minute, ~510 MB)"
  "$LS_VENV/bin/python" -m pip install -q --disable-pip-version-check \
    -r "$LS_REQUIREMENTS" >&2 || stele_die "pip install -r $LS_REQUIREMENTS failed"
  echo "$want" > "$LS_MARKER"
  stele_log "LocalStack installed"
fi

# Kinesis backend ahead of time (LocalStack would otherwise npm-install it on the
# first Kinesis call of every fresh instance, ~5 s each time).
if [ "$force" = 1 ] || [ ! -f "$LS_KINESIS_MARKER" ]; then
  if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
    stele_apt_install nodejs npm
  fi
  rm -rf "$LS_KINESIS_DIR"
  stele_log "installing kinesis-local@$KINESIS_MOCK_VERSION (npm) into $LS_LPM_ROOT"
  FILESYSTEM_ROOT="$LS_LPM_ROOT" OVERRIDE_IN_DOCKER=0 DISABLE_EVENTS=1 \
    "$LS_VENV/bin/python" -m localstack.cli.lpm install kinesis-mock >&2 ||
    stele_die "installing kinesis-local@$KINESIS_MOCK_VERSION failed (needs the npm registry)"
  [ -f "$LS_KINESIS_MARKER" ] || stele_die "kinesis-local installed but $LS_KINESIS_MARKER is missing"
fi
