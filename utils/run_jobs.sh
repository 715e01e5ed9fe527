#!/usr/bin/env bash
# Runs a command as parallel local jobs, one log per job (like Kaldi's run.pl).
#
# Usage: run_jobs.sh [--max-jobs-run M] [--nj N] [JOB=A:B] LOG CMD [ARGS...]
#   JOB=A:B            run jobs A..B (A <= B, non-negative integers; JOB=A runs
#                      one). Every "JOB" in LOG and in CMD ARGS... becomes the
#                      job index. Another upper- or lower-case name works too
#                      (SPLIT=1:4 replaces SPLIT).
#   --nj N             the same as JOB=1:N (not together with a range).
#   --max-jobs-run M   at most M jobs at once (default: all of them).
#   --gpu N, --mem M, --num-threads N, --time T
#                      what a cluster runner (utils/slurm_jobs.sh) asks its scheduler
#                      for; accepted and ignored here (as Kaldi's run.pl), so that one
#                      recipe line works with either runner (the recipes' --cmd).
#   Options and the range may come in any order, before LOG. Without a range
#   there is one job and nothing is replaced.
#
# The command is CMD and ARGS joined with spaces, run by `bash -o pipefail -c`,
# so one quoted argument can hold a pipeline: run_jobs.sh x.log 'a | b > c'.
# Arguments are not re-quoted: an argument with spaces meant as one word must
# carry its own quotes inside ("'a b'"). Jobs read stdin from /dev/null.
#
# Each LOG (its directory created) holds "# <command>", "# Started at <date>",
# the command's stdout and stderr, "# Accounting: time=<s> threads=1" and
# "# Ended (code <rc>) at <date>".
# Exit 0 quietly when all jobs succeed. Otherwise, once all have finished,
# print "run_jobs.sh: K/N jobs failed (exit codes ...); log: <first failed>"
# and that log's last 20 lines to stderr, and exit 1. Usage errors exit 1.
# Each job gets DS_NUM_THREADS: the cores this script may use (or an inherited
# DS_NUM_THREADS) divided by the jobs running at once, at least 1, and OPENBLAS_NUM_THREADS
# the same unless set; nothing when OMP_NUM_THREADS is set (see deepspeaker/threads.py).
# SIGINT/SIGTERM/SIGHUP kill the running jobs (their whole process groups),
# whose logs end with their code, and exit 130/143/129. A Python stage starts
# this script with PR_SET_PDEATHSIG (deepspeaker/jobs.py): the kernel sends the
# SIGTERM when that stage dies, even by SIGKILL, so no job outlives its stage.
set -euo pipefail

prog=run_jobs.sh
usage="Usage: $prog [--max-jobs-run M] [--nj N] [JOB=A:B] LOG CMD [ARGS...]
  JOB=A:B           run jobs A..B; JOB in LOG and ARGS becomes the job index
  --nj N            same as JOB=1:N
  --max-jobs-run M  at most M jobs at once (default: all)
  --gpu N, --mem M, --num-threads N, --time T: for cluster runners; ignored here
  The command (CMD ARGS joined with spaces) runs under bash -o pipefail -c;
  each job logs to LOG. Exit 1 if any job fails, printing the failed log's tail."

# shellcheck source=utils/job_args.sh
. "$(dirname "${BASH_SOURCE[0]}")/job_args.sh"
# What a cluster runner asks its scheduler for: accepted and ignored here (as run.pl).
runner_options=(--gpu --mem --num-threads --time)
runner_option() { :; }
parse_job_args "$@"

# Cores this script may use: its affinity (nproc, without the OMP_* that nproc would
# echo back), capped by a cgroup v2 quota rounded up; as deepspeaker/threads.py counts.
usable_cores() {
  local cores quota period limit
  cores=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc 2> /dev/null) || cores=1
  if { read -r quota period < "${DS_CGROUP_CPU_MAX:-/sys/fs/cgroup/cpu.max}"; } 2> /dev/null \
     && [[ "$quota" =~ ^[0-9]+$ && "$period" =~ ^[1-9][0-9]*$ ]] && ((quota > 0)); then
    limit=$(((quota + period - 1) / period))
    ((limit >= cores)) || cores=$limit
  fi
  echo "$cores"
}

# Each job's share of the cores (DS_NUM_THREADS, read by deepspeaker/threads.py), so that
# jobs side by side do not each start a thread per core and spin waiting for each other.
# A budget already set (by the user, or by an enclosing run_jobs.sh) is split, not
# multiplied; a user's OMP_NUM_THREADS (a per-process count) is left to rule alone.
if [[ -z "${OMP_NUM_THREADS:-}" ]]; then
  at_once=$((max_jobs < num_jobs ? max_jobs : num_jobs))
  budget=${DS_NUM_THREADS:-}
  [[ "$budget" =~ ^[1-9][0-9]*$ ]] || budget=$(usable_cores)
  DS_NUM_THREADS=$((budget / at_once))
  ((DS_NUM_THREADS >= 1)) || DS_NUM_THREADS=1
  export DS_NUM_THREADS
  # numpy's OpenBLAS reads its count only when it loads, so it is told here.
  export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-$DS_NUM_THREADS}
fi


# Runs in its own process group (set -m below); the footer is written even
# when a signal kills the command, because the trap only defers to it.
run_one_job() {
  local log=$1 cmd=$2 rc_file=$3 rc=0 start end
  set +e
  trap : INT TERM HUP
  printf -v start '%(%s)T' -1
  {
    printf '# %s\n' "$cmd"
    printf '# Started at %s\n' "$(date)"
  } > "$log"
  # Where bash reports a command killed by a signal ("Terminated").
  exec 2>> "$log"
  "${BASH:-bash}" -o pipefail -c "$cmd" >> "$log" 2>&1 < /dev/null
  rc=$?
  printf -v end '%(%s)T' -1
  {
    printf '# Accounting: time=%d threads=1\n' "$((end - start))"
    printf '# Ended (code %d) at %s\n' "$rc" "$(date)"
  } >> "$log"
  echo "$rc" > "$rc_file"
  exit "$rc"
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/run_jobs.XXXXXX")
pids=()
# shellcheck disable=SC2329  # cleanup and on_signal are called by the traps
cleanup() { rm -rf -- "$tmp"; }
# shellcheck disable=SC2329
on_signal() {
  local sig=$1 code=$2 pid
  trap '' INT TERM HUP
  for pid in "${pids[@]}"; do
    kill -TERM -- "-$pid" 2> /dev/null || true
  done
  wait || true
  echo "$prog: got SIG$sig; killed the running jobs" >&2
  exit "$code"
}
trap cleanup EXIT
trap 'on_signal INT 130' INT
trap 'on_signal TERM 143' TERM
trap 'on_signal HUP 129' HUP

# Every log directory first, so a bad path fails before any job starts.
for ((i = first; i <= last; i++)); do
  expand_job "$i"
  mkdir -p -- "$(dirname -- "$job_log")"
done

# Job control gives each job its own process group, so a signal reaches the
# whole pipeline of a job and not just its wrapper.
set -m
running=0
for ((i = first; i <= last; i++)); do
  while ((running >= max_jobs)); do
    wait -n || true
    running=$((running - 1))
  done
  expand_job "$i"
  run_one_job "$job_log" "$job_cmd" "$tmp/$i.rc" &
  pids+=("$!")
  running=$((running + 1))
done
wait || true
set +m

failed=0
codes=()
first_failed_log=
for ((i = first; i <= last; i++)); do
  rc='?'  # a wrapper that could not even record its code
  { read -r rc < "$tmp/$i.rc"; } 2> /dev/null || true
  if [[ "$rc" != 0 ]]; then
    failed=$((failed + 1))
    codes+=("$rc")
    if [[ -z "$first_failed_log" ]]; then
      expand_job "$i"
      first_failed_log=$job_log
    fi
  fi
done

if ((failed > 0)); then
  echo "$prog: $failed/$num_jobs jobs failed (exit codes ${codes[*]}); log: $first_failed_log" >&2
  tail -n 20 -- "$first_failed_log" >&2 || true
  exit 1
fi
exit 0
