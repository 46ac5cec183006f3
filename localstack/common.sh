# shellcheck shell=bash
# Shared settings for localstack/*.sh. Sourced, not executed.
# shellcheck source=../scripts/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/scripts/lib.sh"

LS_HOME="$STELE_ROOT/.localstack"            # git-ignored
LS_VENV="$LS_HOME/venv"
LS_REQUIREMENTS="$STELE_ROOT/localstack/requirements.txt"
LS_MARKER="$LS_VENV/.stele-requirements.sha256"
# Pre-installed LocalStack packages (kinesis-local); every instance's
# FILESYSTEM_ROOT/usr/lib/localstack is a symlink to $LS_LPM_ROOT/usr/lib/localstack.
LS_LPM_ROOT="$LS_HOME/lpm"
LS_PYTHON="${STELE_PYTHON:-python3.11}"
# kinesis-local (npm) version LocalStack runs as its Kinesis backend. LocalStack
# 4.9.2 defaults to 0.4.13; 0.6.2 is several times faster with concurrent callers.
export KINESIS_MOCK_VERSION="${KINESIS_MOCK_VERSION:-0.6.2}"
LS_KINESIS_DIR="$LS_LPM_ROOT/usr/lib/localstack/kinesis-local/$KINESIS_MOCK_VERSION"
LS_KINESIS_MARKER="$LS_KINESIS_DIR/node_modules/kinesis-local/main.js"
