#!/usr/bin/env bash
# The default recipe end to end: installs what is missing, then runs egs/mini.
#   ./run.sh [--stage N] [--stop-stage M] [other egs/mini/run.sh options]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bash "$root/utils/install.sh"
cd "$root/egs/mini"
exec ./run.sh "$@"
