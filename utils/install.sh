#!/usr/bin/env bash
# Installs what is missing into $DS_ROOT/.venv and nothing else.
#
#   utils/install.sh [--extras test]
#
# torch: an importable torch is kept (the CPU wheel here, a CUDA build on a GPU
# host); only when none is importable is exactly torch==2.13.0 installed, because an
# unpinned torch would pull several GB of CUDA packages.  The package and its pinned
# dependencies come from pyproject.toml.  A stamp file records what was installed so
# that a second call costs a fraction of a second.
set -euo pipefail

extras=""
while [ $# -gt 0 ]; do
  case "$1" in
    --extras) extras="$2"; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "$0: unknown option $1" >&2; exit 2 ;;
  esac
done

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$root/.venv"
torch_pin="torch==2.13.0"
base_python=${DS_PYTHON:-python3}

if ! command -v "$base_python" >/dev/null 2>&1; then
  echo "$0: $base_python not found; install Python >= 3.10 first" >&2; exit 1
fi
if ! "$base_python" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
  echo "$0: $("$base_python" --version 2>&1) is too old; deepspeaker needs Python >= 3.10" >&2
  exit 1
fi

if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import sys' 2>/dev/null; then
  rm -rf "$venv"
  if "$base_python" -c 'import torch' 2>/dev/null; then
    # Reuse the interpreter's torch (e.g. a CUDA build) instead of pulling another.
    echo "install.sh: creating $venv (keeping the system torch $("$base_python" -c 'import torch; print(torch.__version__)'))"
    "$base_python" -m venv --system-site-packages "$venv"
  else
    echo "install.sh: creating $venv"
    "$base_python" -m venv "$venv"
  fi
fi
py="$venv/bin/python"

if ! "$py" -c 'import torch' 2>/dev/null; then
  echo "install.sh: no importable torch; installing $torch_pin"
  "$py" -m pip install --quiet "$torch_pin"
fi

spec="."
[ -n "$extras" ] && spec=".[$extras]"
stamp="$venv/.deepspeaker-installed"
sum=$(cksum < "$root/pyproject.toml" | cut -d' ' -f1)
have_sum="" have_extras=""
[ -f "$stamp" ] && read -r have_sum have_extras < "$stamp"
if [ "$have_sum" = "$sum" ] && { [ -z "$extras" ] || [ "$have_extras" = "$extras" ]; }; then
  exit 0  # already installed from this very pyproject.toml
fi
[ -z "$extras" ] && [ "$have_sum" = "$sum" ] && extras=$have_extras
echo "install.sh: installing deepspeaker$([ -n "$extras" ] && echo "[$extras]") and its pinned dependencies"
(cd "$root" && "$py" -m pip install --quiet -e "$spec")
"$py" -c 'import torch, numpy, kaldiio, soundfile, deepspeaker' \
  || { echo "$0: installation finished but imports fail" >&2; exit 1; }
echo "$sum $extras" > "$stamp.tmp" && mv "$stamp.tmp" "$stamp"
echo "install.sh: done ($("$py" -c 'import torch; print("torch", torch.__version__)'))"
