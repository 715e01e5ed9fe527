#!/usr/bin/env bash
# shellcheck shell=bash
# Command-line option parsing for deepspeaker scripts (Kaldi's semantics).
#
# Usage: source it after declaring every option variable with its default:
#
#   nj=4
#   use_gpu=false
#   help_message="Usage: $0 [options] <data-dir> <exp-dir>"
#   . parse_options.sh        # (utils/ is on PATH after ../../path.sh)
#   [ $# -eq 2 ] || { echo "$help_message" >&2; exit 1; }
#
#   --foo-bar VALUE, --foo-bar=VALUE
#       set the already-declared variable foo_bar (dashes become underscores);
#       a variable that is not set is an unknown option: exit 1.
#       If foo_bar is currently true or false, VALUE must be true or false.
#       If $option_names is set (space-separated names, as utils/recipe.sh sets
#       it), only those variables are options: a script's other variables are not.
#   --config FILE   source FILE here (options after it override what it sets).
#   --help, -h      print $help_message to stderr and exit 0.
#   --              end of options (consumed).
#   Parsing stops at the first argument that does not start with "--" (or is
#   "-h"); it and everything after it stay in "$@".
#
# Errors (unknown option, missing value, non-boolean value for a boolean,
# missing config file) print "$0: ..." to stderr and exit 1, ending the caller.
# Works under `set -euo pipefail` and leaves the caller's shell options alone.
# It shifts the caller's positional parameters, so it must be sourced with no
# arguments. Its scratch variables are named _po_* and are unset afterwards.

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  echo "parse_options.sh: must be sourced (. parse_options.sh), not run" >&2
  exit 1
fi

while [[ $# -gt 0 ]]; do
  _po_arg=$1
  case "$_po_arg" in
    --)
      shift
      break
      ;;
    --help|-h)
      if [[ -n "${help_message+set}" ]]; then
        printf '%s\n' "$help_message" >&2
      else
        echo "$0: no help message is defined" >&2
      fi
      exit 0
      ;;
    --*=*)
      _po_opt=${_po_arg%%=*}
      _po_value=${_po_arg#*=}
      shift
      ;;
    --*)
      _po_opt=$_po_arg
      if [[ $# -lt 2 ]]; then
        echo "$0: option $_po_opt needs a value" >&2
        exit 1
      fi
      _po_value=$2
      shift 2
      ;;
    *)
      break
      ;;
  esac

  if [[ "$_po_opt" == --config ]]; then
    if [[ ! -f "$_po_value" || ! -r "$_po_value" ]]; then
      echo "$0: config file '$_po_value' (from --config) is missing or unreadable" >&2
      exit 1
    fi
    # shellcheck source=/dev/null
    . "$_po_value"
    continue
  fi

  _po_name=${_po_opt#--}
  _po_name=${_po_name//-/_}
  # Only names a script can have declared; _po_* are this file's own scratch.
  if [[ ! "$_po_name" =~ ^[A-Za-z_][A-Za-z0-9_]*$ || "$_po_name" == _po_* ]] \
      || [[ ! -v "$_po_name" ]] \
      || [[ -n "${option_names+set}" && " $option_names " != *" $_po_name "* ]]; then
    echo "$0: unknown option $_po_opt" >&2
    exit 1
  fi
  _po_old=${!_po_name}
  if [[ "$_po_old" == true || "$_po_old" == false ]] \
      && [[ "$_po_value" != true && "$_po_value" != false ]]; then
    echo "$0: option $_po_opt expects true or false, got '$_po_value'" >&2
    exit 1
  fi
  printf -v "$_po_name" '%s' "$_po_value"
done

unset _po_arg _po_opt _po_value _po_name _po_old
# The file's status is the caller's `.` status: keep it 0 under set -e.
true
