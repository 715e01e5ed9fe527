# shellcheck shell=bash disable=SC2034,SC2154  # prog, usage, runner_options: the caller's
# The command line of a job runner (run_jobs.sh's, which slurm_jobs.sh shares so that
# either can stand for the other): [OPTIONS] [JOB=A:B] LOG CMD [ARGS...].
#
# Source it with $prog and $usage set, then call `parse_job_args "$@"`. It sets
#   var first last   the range (var empty: one job, nothing replaced; first=last=1)
#   num_jobs max_jobs
#   log_pattern cmd_args
# and `expand_job I` sets job_log and job_cmd of job I. Options other than --nj and
# --max-jobs-run go to the runner's `runner_option NAME VALUE` (each of those options
# takes a value; the names are in runner_options, e.g. runner_options=(--mem --gpu)),
# which returns non-zero on a bad value after calling usage_error.

usage_error() {
  echo "$prog: $*" >&2
  echo "$usage" >&2
  exit 1
}

# $1 is a range argument NAME=A:B or NAME=A: sets var, first, last.
parse_job_range() {
  [[ "$1" =~ ^([A-Za-z_][A-Za-z0-9_]*)=(.*)$ ]] || return 1
  # Anything shaped NAME=... before LOG is a job range, checked strictly.
  [[ -z "$var" ]] || usage_error "more than one job range ($var=... and $1)"
  var=${BASH_REMATCH[1]}
  local range=${BASH_REMATCH[2]}
  if [[ "$range" =~ ^([0-9]+)(:([0-9]+))?$ ]]; then
    first=$((10#${BASH_REMATCH[1]}))
    last=$((10#${BASH_REMATCH[3]:-${BASH_REMATCH[1]}}))
    ((first <= last)) || usage_error "bad job range $1 (start > end)"
  else
    usage_error "bad job range $1 (expected $var=A:B or $var=A)"
  fi
}

# $1 is an option of every runner or one of this runner's.
is_job_option() {
  local o
  for o in --nj --max-jobs-run "${runner_options[@]}"; do
    [[ "$o" != "$1" ]] || return 0
  done
  return 1
}

positive_int() {
  if [[ ! "$2" =~ ^[0-9]+$ ]] || ((10#$2 == 0)); then
    usage_error "option $1 needs a positive integer, got '$2'"
  fi
}

parse_job_args() {
  local nj='' opt value
  var='' first='' last='' max_jobs=''
  while [[ $# -gt 0 ]]; do
    if parse_job_range "$1"; then
      shift
      continue
    fi
    case "$1" in
      -h|--help)
        echo "$usage" >&2
        exit 0
        ;;
      --*=*)
        opt=${1%%=*} value=${1#*=}
        is_job_option "$opt" || usage_error "unknown option $1"
        shift
        ;;
      --*)
        opt=$1
        is_job_option "$opt" || usage_error "unknown option $opt"
        [[ $# -ge 2 ]] || usage_error "option $opt needs a value"
        value=$2
        shift 2
        ;;
      -*)
        usage_error "unknown option $1"
        ;;
      *)
        break
        ;;
    esac
    case "$opt" in
      --max-jobs-run) positive_int "$opt" "$value"; max_jobs=$((10#$value)) ;;
      --nj) positive_int "$opt" "$value"; nj=$((10#$value)) ;;
      *) runner_option "$opt" "$value" ;;
    esac
  done

  if [[ -n "$nj" ]]; then
    [[ -z "$var" ]] || usage_error "give either --nj or a job range, not both"
    var=JOB first=1 last=$nj
  fi
  [[ $# -ge 2 ]] || usage_error "need a LOG and a command"
  log_pattern=$1
  shift
  cmd_args=("$@")
  if [[ -n "$var" ]]; then
    if ((first < last)) && [[ "$log_pattern" != *"$var"* ]]; then
      usage_error "$((last - first + 1)) jobs would share the log $log_pattern (it has no $var)"
    fi
  else
    first=1 last=1
  fi
  num_jobs=$((last - first + 1))
  [[ -n "$max_jobs" ]] || max_jobs=$num_jobs
}

# The log and command of job $1, in $job_log and $job_cmd.
expand_job() {
  local i=$1 a
  local -a words=()
  if [[ -z "$var" ]]; then
    job_log=$log_pattern
    job_cmd="${cmd_args[*]}"
    return
  fi
  job_log=${log_pattern//"$var"/"$i"}
  for a in "${cmd_args[@]}"; do
    words+=("${a//"$var"/"$i"}")
  done
  job_cmd="${words[*]}"
}
