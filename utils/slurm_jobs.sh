#!/usr/bin/env bash
# Runs a command as the tasks of one Slurm job array, one log per job: a drop-in for
# run_jobs.sh (like Kaldi's slurm.pl for run.pl).
#
# Usage: slurm_jobs.sh [OPTIONS] [JOB=A:B] LOG CMD [ARGS...]
#   JOB=A:B, --nj N, --max-jobs-run M, LOG, CMD: as run_jobs.sh (M becomes the
#   array's %M: at most M tasks at once).
#   --gpu N              sbatch --gres=gpu:N
#   --mem M              sbatch --mem=M (per node: 4G, 500M)
#   --num-threads N      sbatch --cpus-per-task=N; the job's DS_NUM_THREADS
#   --time T             sbatch --time=T (its time limit, e.g. 2:00:00)
#   --partition P        sbatch --partition=P
#   --sbatch-args "..."  more sbatch options, split on spaces, passed as they are
#   --pending-timeout S  cancel the array when all of it has been pending S seconds
#                        for a reason that means no node can run it as asked
#                        (default $DS_SLURM_PENDING_TIMEOUT or 600; 0: never)
#
# Each job runs `run_jobs.sh JOB=<its task id> LOG CMD...` on its node, so its LOG has
# exactly run_jobs.sh's header, output and footer, and the command is the same words
# run by `bash -o pipefail -c`. The batch script (<dir of the first log>/q/<name>.sh,
# kept: `sbatch q/<name>.sh` runs it again) and Slurm's own output of each task
# (q/<name>-<array id>_<task>.out) stay beside the logs. The jobs see this shell's
# environment and working directory (sbatch --export=ALL), so the logs and data must
# be on a file system the nodes share.
#
# The array is followed with squeue (every 0.5 s at first, then up to every
# $DS_SLURM_POLL_S, default 5, s); afterwards each job's exit code is the one in its
# log's footer. A job whose log has no footer, or whose Slurm state says the
# scheduler ended it (scancel, time limit, node failure, memory limit), is reported
# as killed by the scheduler with that state (scontrol, or sacct when the job has
# left slurmctld's memory). Exit 0 quietly when all jobs succeed; otherwise print
# "slurm_jobs.sh: K/N jobs failed (exit codes ...); log: <first failed> (Slurm job
# <id>_<task>)", a line per failed job and the first failed log's last 20 lines, and
# exit 1. No sbatch, or sbatch refusing the job: one line naming sbatch and the log,
# exit 1. SIGINT/SIGTERM/SIGHUP cancel the array, wait for it to leave the queue
# and exit 130/143/129. Logs of jobs outside the range are never touched; those of
# the range are removed before submission, so that an old log is never taken for
# this run's.
set -euo pipefail

prog=slurm_jobs.sh
usage="Usage: $prog [OPTIONS] [JOB=A:B] LOG CMD [ARGS...]
  JOB=A:B              run jobs A..B as one Slurm array; JOB in LOG and ARGS becomes the index
  --nj N               same as JOB=1:N
  --max-jobs-run M     at most M jobs at once (the array's %M)
  --gpu N              sbatch --gres=gpu:N
  --mem M              sbatch --mem=M
  --num-threads N      sbatch --cpus-per-task=N
  --time T             sbatch --time=T
  --partition P        sbatch --partition=P
  --sbatch-args \"...\"  more sbatch options, passed as they are
  --pending-timeout S  cancel when pending S s for a reason no node can meet (default 600)
  Each job logs to LOG as with run_jobs.sh. Exit 1 if any job fails, printing its log's tail."

utils=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=utils/job_args.sh
. "$utils/job_args.sh"

# Slurm states of a job the scheduler ended, not its command.
KILLED_STATES='^(CANCELLED|TIMEOUT|NODE_FAIL|PREEMPTED|OUT_OF_MEMORY|BOOT_FAIL|DEADLINE|REVOKED)'
# Pending reasons that no amount of waiting for other jobs resolves.
BLOCKED_REASONS='ReqNodeNotAvail|Nodes required for job are DOWN|NodeDown|PartitionConfig'
BLOCKED_REASONS+='|PartitionNodeLimit|PartitionTimeLimit|PartitionDown|PartitionInactive'
BLOCKED_REASONS+='|BadConstraints|DependencyNeverSatisfied|JobHeld|InvalidAccount|InvalidQOS'
BLOCKED_REASONS+='|FrontEndDown|launch failed'

runner_options=(--gpu --mem --num-threads --time --partition --sbatch-args --pending-timeout)
sbatch_opts=()
extra_sbatch_args=()
pending_timeout=${DS_SLURM_PENDING_TIMEOUT:-600}

# A word of an #SBATCH line: no white space, which the line cannot quote.
one_word() {
  [[ -n "$2" && ! "$2" =~ [[:space:]] ]] || usage_error "option $1 needs one word, got '$2'"
}

runner_option() {
  case "$1" in
    --gpu) positive_int "$1" "$2"; sbatch_opts+=("--gres=gpu:$((10#$2))") ;;
    --num-threads) positive_int "$1" "$2"; sbatch_opts+=("--cpus-per-task=$((10#$2))") ;;
    --mem) one_word "$1" "$2"; sbatch_opts+=("--mem=$2") ;;
    --time) one_word "$1" "$2"; sbatch_opts+=("--time=$2") ;;
    --partition) one_word "$1" "$2"; sbatch_opts+=("--partition=$2") ;;
    --sbatch-args)
      local -a words
      read -r -a words <<< "$2"
      extra_sbatch_args+=("${words[@]}")
      ;;
    --pending-timeout)
      [[ "$2" =~ ^[0-9]+$ ]] || usage_error "option $1 needs seconds (0: never), got '$2'"
      pending_timeout=$((10#$2))
      ;;
  esac
}

[[ "$pending_timeout" =~ ^[0-9]+$ ]] \
  || usage_error "DS_SLURM_PENDING_TIMEOUT must be seconds, got '$pending_timeout'"
[[ "${DS_SLURM_POLL_S:-5}" =~ ^[1-9][0-9]*$ ]] \
  || usage_error "DS_SLURM_POLL_S must be whole seconds, got '$DS_SLURM_POLL_S'"
[[ "${DS_SLURM_LOG_WAIT:-10}" =~ ^[0-9]+$ ]] \
  || usage_error "DS_SLURM_LOG_WAIT must be seconds, got '$DS_SLURM_LOG_WAIT'"
parse_job_args "$@"
if ! command -v sbatch > /dev/null; then
  echo "$prog: sbatch is not on PATH (not a Slurm submit host?); no job run for the log $log_pattern" >&2
  exit 1
fi
max_poll_ds=$((${DS_SLURM_POLL_S:-5} * 10))

now() { printf '%(%s)T' -1; }

# The batch script of the array: each task runs its job through run_jobs.sh.
write_batch_script() {
  local script=$1 out=$2 name=$3 range_arg='' o tmp
  [[ -z "$var" ]] || range_arg="$var=\$SLURM_ARRAY_TASK_ID"
  tmp=$script.tmp$$
  {
    echo '#!/usr/bin/env bash'
    echo "# Written by $prog for the log $log_pattern; submitted with"
    echo "#   sbatch --parsable ${extra_sbatch_args[*]} $script"
    echo "#SBATCH --job-name=$name"
    echo "#SBATCH --array=$first-$last$( ((max_jobs >= num_jobs)) || echo "%$max_jobs")"
    echo "#SBATCH --output=$out"
    echo "#SBATCH --chdir=$PWD"
    for o in "${sbatch_opts[@]}"; do
      echo "#SBATCH $o"
    done
    echo 'set -euo pipefail'
    echo '# Threads: what Slurm gave this task, not the submit host (see deepspeaker/threads.py).'
    # shellcheck disable=SC2016  # expanded by the job
    echo 'export DS_NUM_THREADS=${SLURM_CPUS_PER_TASK:-${SLURM_CPUS_ON_NODE:-1}}'
    printf 'exec bash %q %s %q' "$utils/run_jobs.sh" "$range_arg" "$log_pattern"
    printf ' %q' "${cmd_args[@]}"
    echo
  } > "$tmp"
  mv -f -- "$tmp" "$script"
}

# Submits the script; prints the array's job id. Signals wait until sbatch returns,
# so that an array is never submitted without this script knowing its id.
submit() {
  local script=$1 out rc=0 id
  out=$(sbatch --parsable "${extra_sbatch_args[@]}" "$script" 2>&1) || rc=$?
  id=${out##*$'\n'}
  id=${id%%;*}
  if ((rc != 0)) || [[ ! "$id" =~ ^[0-9]+$ ]]; then
    out=$(tr -s '\n' ' ' <<< "$out")
    echo "$prog: sbatch failed (exit $rc: ${out% }); no job run for the log $log_pattern; batch script: $script" >&2
    exit 1
  fi
  echo "$id"
}

cancel_and_wait() {
  local i
  scancel "$jobid" 2> /dev/null || true
  for ((i = 0; i < 250; i++)); do
    [[ -n "$(squeue -h -j "$jobid" -o %i 2> /dev/null)" ]] || return 0
    sleep 0.2
  done
  echo "$prog: Slurm job $jobid is still in the queue 50 s after scancel" >&2
}

# shellcheck disable=SC2329  # called by the traps
on_signal() {
  trap '' INT TERM HUP
  cancel_and_wait
  echo "$prog: got SIG$1; cancelled Slurm job $jobid (log: $log_pattern)" >&2
  exit "$2"
}

# Waits until no task of the array is pending or running; cancels an array that
# cannot start (see --pending-timeout).
follow_array() {
  local out rc ds=5 blocked_since='' warned='' start failing_since='' reason
  local -a asked
  start=$(now)
  while true; do
    rc=0
    out=$(squeue -h -r -j "$jobid" -o '%T|%r' 2>&1) || rc=$?
    if ((rc != 0)); then
      # Gone from slurmctld's memory already: it has finished.
      [[ "$out" != *"Invalid job id"* ]] || return 0
      failing_since=${failing_since:-$(now)}
      if (($(now) - failing_since > 300)); then
        echo "$prog: squeue has failed for 300 s ($out); cancelling Slurm job $jobid" >&2
        cancel_and_wait
        exit 1
      fi
    else
      failing_since=
      [[ -n "$out" ]] || return 0
      if ! grep -qv '^PENDING|' <<< "$out"; then
        reason=$(head -n 1 <<< "$out")
        reason=${reason#PENDING|}
        if grep -qEv "^PENDING\|.*($BLOCKED_REASONS)" <<< "$out"; then
          blocked_since=
          if [[ -z "$warned" ]] && ((pending_timeout > 0 && $(now) - start >= pending_timeout)); then
            echo "$prog: Slurm job $jobid has been pending for $(($(now) - start)) s ($reason); still waiting" >&2
            warned=1
          fi
        else
          blocked_since=${blocked_since:-$(now)}
          if ((pending_timeout > 0 && $(now) - blocked_since >= pending_timeout)); then
            cancel_and_wait
            asked=("${sbatch_opts[@]}" "${extra_sbatch_args[@]}")
            echo "$prog: Slurm job $jobid (log: $log_pattern) was pending for $pending_timeout s with reason '$reason': no node can run it as asked (${asked[*]}); cancelled it" >&2
            exit 1
          fi
        fi
      else
        blocked_since=
      fi
    fi
    sleep "$((ds / 10)).$((ds % 10))" &
    wait $! || true
    ((ds >= max_poll_ds)) || ds=$((ds * 3 / 2 > max_poll_ds ? max_poll_ds : ds * 3 / 2))
  done
}

# states[task]=$2 for the tasks $1 ("3", "1-4,7", "[2-3%1]").
set_states() {
  local ids=${1%%%*} a b task
  local -a parts
  ids=${ids#[}
  ids=${ids%]}
  IFS=, read -r -a parts <<< "$ids"
  for a in "${parts[@]}"; do
    b=${a#*-}
    a=${a%-*}
    [[ "$a" =~ ^[0-9]+$ && "$b" =~ ^[0-9]+$ ]] || continue
    for ((task = a; task <= b; task++)); do
      states[$task]=$2
    done
  done
}

# Slurm's state of each task, in states[task]: scontrol while slurmctld remembers the
# array, else sacct where accounting is on; nothing when neither knows. An array
# cancelled before any task started is one record without task ids: its state is
# every task's.
read_states() {
  local records line ids state whole='' i
  if records=$(scontrol -o show job "$jobid" 2> /dev/null); then
    while read -r line; do
      [[ "$line" =~ ArrayTaskId=([^ ]+) ]] || continue
      ids=${BASH_REMATCH[1]}
      [[ "$line" =~ JobState=([^ ]+) ]] || continue
      state=${BASH_REMATCH[1]}
      if [[ "$ids" =~ ^[0-9]+$ ]] && ((ids >= 4294967294)); then
        whole=$state   # Slurm's NO_VAL: the array's own record
      else
        set_states "$ids" "$state"
      fi
    done <<< "$records"
  elif command -v sacct > /dev/null; then
    while IFS='|' read -r ids state; do
      [[ "$ids" == "${jobid}_"* ]] && set_states "${ids#"${jobid}"_}" "${state%% *}"
    done < <(sacct -n -X -P -j "$jobid" -o JobID,State 2> /dev/null || true)
  fi
  if [[ -n "$whole" ]]; then
    for ((i = first; i <= last; i++)); do
      states[$i]=${states[$i]:-$whole}
    done
  fi
}

# The code in the footer of log $1, or nothing.
footer_code() {
  local last
  last=$(tail -n 1 -- "$1" 2> /dev/null) || return 0
  [[ "$last" =~ ^\#\ Ended\ \(code\ ([0-9]+)\)\ at ]] && echo "${BASH_REMATCH[1]}"
  return 0
}

# Each job's code from its footer, in codes[i]. A log written on another node may
# show on this one a few seconds late (NFS): wait up to DS_SLURM_LOG_WAIT (10) s for
# the footers of jobs that Slurm does not say it killed.
read_codes() {
  local i deadline missing
  deadline=$(($(now) + ${DS_SLURM_LOG_WAIT:-10}))
  while true; do
    missing=0
    for ((i = first; i <= last; i++)); do
      [[ -z "${codes[$i]:-}" ]] || continue
      expand_job "$i"
      codes[$i]=$(footer_code "$job_log")
      if [[ -z "${codes[$i]}" && ! "${states[$i]:-}" =~ $KILLED_STATES ]]; then
        missing=1
      fi
    done
    ((missing == 1 && $(now) < deadline)) || return 0
    sleep 1
  done
}

# Why job $1 failed, in words.
failure_of() {
  local i=$1 state=${states[$1]:-} code=${codes[$1]}
  expand_job "$i"
  if [[ "$state" =~ $KILLED_STATES && ! -e "$job_log" ]]; then
    echo "killed by the scheduler ($state) before it started"
  elif [[ "$state" =~ $KILLED_STATES ]]; then
    echo "killed by the scheduler ($state)"
  elif [[ -z "$code" ]]; then
    echo "killed by the scheduler (its log has no footer; Slurm state ${state:-unknown})"
  else
    echo "exit code $code"
  fi
}

report() {
  local i failed=0 first_failed='' shown=0 out
  local -a failed_codes=()
  for ((i = first; i <= last; i++)); do
    if [[ "${codes[$i]}" != 0 || "${states[$i]:-}" =~ $KILLED_STATES ]]; then
      failed=$((failed + 1))
      failed_codes+=("${codes[$i]:-?}")
      first_failed=${first_failed:-$i}
    fi
  done
  ((failed > 0)) || return 0
  expand_job "$first_failed"
  echo "$prog: $failed/$num_jobs jobs failed (exit codes ${failed_codes[*]}); log: $job_log (Slurm job ${jobid}_$first_failed)" >&2
  for ((i = first; i <= last; i++)); do
    [[ "${codes[$i]}" != 0 || "${states[$i]:-}" =~ $KILLED_STATES ]] || continue
    shown=$((shown + 1))
    if ((shown > 10)); then
      echo "$prog: ... and $((failed - 10)) more" >&2
      break
    fi
    expand_job "$i"
    echo "$prog: job $i (Slurm job ${jobid}_$i): $(failure_of "$i"); log: $job_log" >&2
  done
  expand_job "$first_failed"
  tail -n 20 -- "$job_log" >&2 2> /dev/null || true
  out=$qdir/$name-${jobid}_$first_failed.out
  if [[ -s "$out" && ( -z "${codes[$first_failed]}" || "${states[$first_failed]:-}" =~ $KILLED_STATES ) ]]; then
    echo "--- Slurm's output of the job ($out):" >&2
    tail -n 5 -- "$out" >&2 || true
  fi
  exit 1
}

# Every log directory and the q/ dir first, so a bad path fails before submission.
for ((i = first; i <= last; i++)); do
  expand_job "$i"
  mkdir -p -- "$(dirname -- "$job_log")"
done
expand_job "$first"
qdir=$(cd "$(dirname -- "$job_log")" && pwd)/q
mkdir -p -- "$qdir"
name=$(basename -- "$log_pattern" .log)
if [[ -n "$var" ]]; then
  name=${name//".$var"/}
  name=${name//"$var"/}
fi
name=${name//[^A-Za-z0-9_.-]/_}
script=$qdir/$name.sh
write_batch_script "$script" "$qdir/$name-%A_%a.out" "$name"
for ((i = first; i <= last; i++)); do
  expand_job "$i"
  rm -f -- "$job_log"
done

jobid=
trap 'pending_signal="INT 130"' INT
trap 'pending_signal="TERM 143"' TERM
trap 'pending_signal="HUP 129"' HUP
pending_signal=
jobid=$(submit "$script")
trap 'on_signal INT 130' INT
trap 'on_signal TERM 143' TERM
trap 'on_signal HUP 129' HUP
# shellcheck disable=SC2086  # "NAME CODE"
[[ -z "$pending_signal" ]] || on_signal $pending_signal

follow_array
declare -A states=() codes=()
read_states
read_codes
report
exit 0
