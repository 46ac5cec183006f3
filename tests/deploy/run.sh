#!/usr/bin/env bash
# The deploy contract test (tests/deploy/test_contract.py): the function binaries, release
# builds as deployed, each started with the environment Terraform gives it and driven through
# cargo-lambda's Runtime API emulator with AWS-shaped payloads, against the PostgreSQL and
# LocalStack of STELE_TEST_PG_URL / STELE_TEST_AWS_ENDPOINT (scripts/test starts them).
#
#   bash tests/deploy/run.sh                  # builds the release binaries first
#   STELE_FUNCTION_DIR=target/debug bash tests/deploy/run.sh   # use other, prebuilt binaries
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT="$PWD"
venv="$ROOT/.venv-lambda" req="$ROOT/scripts/requirements-lambda.txt"
want="$(sha256sum "$req" | cut -d' ' -f1)"
(
  # One installer at a time (scripts/package-lambdas uses the same venv).
  if command -v flock >/dev/null; then flock 9; fi
  if [ "$(cat "$venv/.stamp" 2>/dev/null)" != "$want" ]; then
    echo "==> installing cargo-lambda, python-hcl2, boto3, pytest into .venv-lambda/" >&2
    "${PYTHON:-python3.11}" -m venv --clear "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check --no-input -r "$req"
    echo "$want" >"$venv/.stamp"
  fi
) 9>"$ROOT/.venv-lambda.lock"
if [ -z "${STELE_FUNCTION_DIR:-}" ]; then
  cargo build --release --locked -p stele-ingest -p stele-batch-writer -p stele-archiver -p stele-checkpointer \
    -p stele-query
  export STELE_FUNCTION_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/release"
fi
export CARGO_LAMBDA="$venv/bin/cargo-lambda"
export STELE_DEPLOY_LOGS="${STELE_DEPLOY_LOGS:-$(mktemp -d /tmp/stele-deploy.XXXXXX)}"
echo "==> deploy contract (function logs in $STELE_DEPLOY_LOGS)" >&2
exec "$venv/bin/python" -m pytest -q -rs -p no:cacheprovider --rootdir "$ROOT/tests/deploy" "$ROOT/tests/deploy" "$@"
