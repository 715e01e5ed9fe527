#!/usr/bin/env bash
# Filter a data dir to its common ids: utils/fix_data_dir.sh SRC DST (DST must differ).
# Thin wrapper of python -m deepspeaker.bin.fix_data_dir.
set -euo pipefail
# shellcheck source=/dev/null
. "$(dirname "$0")/../path.sh"
exec python -m deepspeaker.bin.fix_data_dir "$@"
