# Sourced by every recipe and helper: where the toolkit lives and how Python runs.
# shellcheck shell=bash
DS_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export DS_ROOT
if [ -d "$DS_ROOT/.venv/bin" ]; then
  export VIRTUAL_ENV="$DS_ROOT/.venv"
  export PATH="$DS_ROOT/.venv/bin:$PATH"
fi
export PYTHONPATH="$DS_ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PATH="$DS_ROOT/utils:$PATH"
# Kaldi sorts ids bytewise; so must every sort in a recipe.
export LC_ALL=C
export PYTHONUNBUFFERED=1
