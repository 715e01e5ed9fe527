#!/usr/bin/env bash
# Check a data dir: utils/validate_data_dir.sh [--need feats.scp,vad.scp] [--strict-warnings] DATA
# Thin wrapper of python -m deepspeaker.bin.validate_data_dir (exit 1 on errors).
set -euo pipefail
# shellcheck source=/dev/null
. "$(dirname "$0")/../path.sh"
exec python -m deepspeaker.bin.validate_data_dir "$@"
