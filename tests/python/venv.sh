#!/usr/bin/env bash
# Makes .venv-tests at the repository root: Python 3.11 with tests/python/requirements.txt
# (DuckDB, which reads archives back as Athena would; Selenium, which drives the browser
# test tests/browser). Prints the venv's python.
#
#   bash tests/python/venv.sh
#
# scripts/test runs it once before the tests; tests/support/archive.rs runs it too, so a
# lone `cargo nextest run` works. nextest runs every test in its own process, so several
# may get here at once: an exclusive flock(1) on .venv-tests.lock lets one build the venv
# while the others wait, then find it ready (the requirements' checksum is stamped last).
# Environment: STELE_PYTHON (default python3.11).
set -euo pipefail
STELE_PROG="tests/python/venv.sh"
# shellcheck source=../../scripts/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/scripts/lib.sh"

venv="$STELE_ROOT/.venv-tests"
requirements="$STELE_ROOT/tests/python/requirements.txt"
stamp="$venv/.requirements.sha256"
python="${STELE_PYTHON:-python3.11}"

command -v flock >/dev/null 2>&1 || stele_die "flock is required (Debian: apt-get install util-linux)"
exec 9>"$STELE_ROOT/.venv-tests.lock"
flock 9

want="$(sha256sum "$requirements" | cut -d' ' -f1)"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  command -v "$python" >/dev/null 2>&1 ||
    stele_die "$python not found (Debian 12: apt-get install python3.11 python3.11-venv, or set STELE_PYTHON)"
  if ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
    stele_apt_install python3.11-venv
  fi
  stele_log "installing $requirements into $venv"
  # --clear: a venv left half-made by an interrupted run is rebuilt, not trusted.
  "$python" -m venv --clear "$venv" >&2 || stele_die "$python -m venv $venv failed"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$requirements" >&2 ||
    stele_die "pip install -r $requirements failed"
  echo "$want" >"$stamp"
fi
printf '%s\n' "$venv/bin/python"
