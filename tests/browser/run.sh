#!/usr/bin/env bash
# The web viewer in a real browser (tests/browser/test_viewer.py): Debian's chromium,
# headless, driven by Selenium through chromium-driver, against `stele dev` serving
# the viewer and the API, on the PostgreSQL and LocalStack of STELE_TEST_PG_URL /
# STELE_TEST_AWS_ENDPOINT (scripts/test starts them; without them stele dev starts
# its own). Saves a screenshot ($TMPDIR/stele-viewer.png; STELE_VIEWER_SCREENSHOT=docs/viewer.png
# refreshes the one in the documentation).
#
#   bash tests/browser/run.sh
#   STELE_BIN=target/debug/stele bash tests/browser/run.sh   # a prebuilt binary
set -euo pipefail
STELE_PROG="tests/browser/run.sh"
# shellcheck source=../../scripts/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/scripts/lib.sh"
cd "$STELE_ROOT"

# Debian's own browser and driver: the same version, and nothing downloaded at run time.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  stele_apt_install chromium chromium-driver
fi
command -v psql >/dev/null 2>&1 || stele_apt_install postgresql-client
python="$(bash tests/python/venv.sh)"
if [ -z "${STELE_BIN:-}" ]; then
  cargo build -q -p stele
  export STELE_BIN="${CARGO_TARGET_DIR:-$STELE_ROOT/target}/debug/stele"
fi
stele_log "$(chromium --version 2>/dev/null || echo chromium), $STELE_BIN"
# Selenium Manager must not look for a driver on the network: the path is given.
export SE_OFFLINE=true
exec "$python" tests/browser/test_viewer.py
