#!/usr/bin/env bash
# The test command of the README: installs what is missing, then runs pytest.
#   utils/test.sh [pytest args...]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$root/utils/install.sh" --extras test
# shellcheck source=/dev/null
. "$root/path.sh"
cd "$root"
exec python -m pytest "$@"
