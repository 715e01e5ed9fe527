#!/usr/bin/env bash
# shellcheck shell=bash
# Logging helpers shared by every deepspeaker shell script.
#
# Usage:
#   . log.sh                  # (utils/ is on PATH after ../../path.sh)
#   log "computing fbank for $data"
#   [ -f "$data/wav.scp" ] || die "$data/wav.scp is missing"
#
#   log MESSAGE...   prints "YYYY-MM-DD HH:MM:SS (file:line:function) MESSAGE"
#                    to stderr; file, line and function are those of the call
#                    to log ("main" at a script's top level).
#   die MESSAGE...   the same line (naming die's caller), then exit 1. Inside a
#                    subshell or $(...) that exits only the subshell.
#
# Sourcing defines these two functions and nothing else: no output, no change
# to shell options or other variables.

log() {
  local file=${BASH_SOURCE[1]:-$0}
  printf '%(%Y-%m-%d %H:%M:%S)T (%s:%s:%s) %s\n' -1 \
    "${file##*/}" "${BASH_LINENO[0]}" "${FUNCNAME[1]:-main}" "$*" >&2
}

die() {
  local file=${BASH_SOURCE[1]:-$0}
  printf '%(%Y-%m-%d %H:%M:%S)T (%s:%s:%s) %s\n' -1 \
    "${file##*/}" "${BASH_LINENO[0]}" "${FUNCNAME[1]:-main}" "$*" >&2
  exit 1
}
