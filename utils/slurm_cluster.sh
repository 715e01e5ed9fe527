#!/usr/bin/env bash
# A private one-node Slurm cluster on 127.0.0.1, for the tests of slurm_jobs.sh and for
# trying a recipe's --cmd "slurm_jobs.sh ..." on one machine.
#
# Usage: slurm_cluster.sh install | start DIR | stop DIR | status DIR
#   install     apt-get install Debian's slurm-wlm and munge unless their commands are
#               already there (needs root and a reachable package registry).
#   start DIR   generate a munge key, a slurm.conf and every state, spool, log and pid
#               file inside DIR; start munged, slurmctld and slurmd there; wait (at most
#               DS_SLURM_START_TIMEOUT s, default 60) until sinfo shows the node idle.
#   stop DIR    cancel the cluster's jobs, then stop exactly the daemons started in DIR
#               (by their pid files).
#   status DIR  the daemons' pids and sinfo; exit 0 only when all three are running.
#
# Nothing system-wide is read or written: clients use SLURM_CONF=DIR/slurm.conf (source
# DIR/env.sh), the conf points at DIR's own munge socket (AuthInfo), the ports are free
# ones chosen at start (not Slurm's 6817/6818), and the node needs no cgroups
# (proctrack/linuxproc, task/none), so it runs in containers and beside a real install.
# Exit codes: 0 done, 1 failed (with the reason and the daemons' log tails),
# 3 cannot be done on this machine (not root, no apt-get, registry unreachable): a
# caller such as tests/test_slurm.py skips on 3.
set -euo pipefail

prog=slurm_cluster.sh
CANNOT=3
# The daemons live in sbin, which a non-root PATH often lacks.
export PATH="$PATH:/usr/sbin:/sbin"

die() {
  echo "$prog: $*" >&2
  exit 1
}

cannot() {
  echo "$prog: $*" >&2
  exit "$CANNOT"
}

have_slurm() {
  local c
  for c in sbatch squeue scontrol scancel sinfo slurmctld slurmd munged munge; do
    command -v "$c" > /dev/null || return 1
  done
}

install_packages() {
  local log
  if have_slurm; then
    echo "$prog: slurm and munge are installed"
    return 0
  fi
  ((EUID == 0)) || cannot "slurm-wlm and munge are not installed and installing them needs root"
  command -v apt-get > /dev/null || cannot "slurm-wlm and munge are not installed and there is no apt-get"
  log=$(mktemp "${TMPDIR:-/tmp}/slurm_install.XXXXXX")
  echo "$prog: installing slurm-wlm and munge with apt-get (log: $log)"
  export DEBIAN_FRONTEND=noninteractive
  # A clean machine may have no package lists yet: update only when the install fails.
  if ! apt-get install -y -q slurm-wlm munge >> "$log" 2>&1; then
    if ! apt-get update -q >> "$log" 2>&1; then
      tail -n 5 "$log" >&2
      cannot "apt-get update failed (is the package registry reachable?); log: $log"
    fi
    if ! apt-get install -y -q slurm-wlm munge >> "$log" 2>&1; then
      tail -n 5 "$log" >&2
      cannot "apt-get install slurm-wlm munge failed; log: $log"
    fi
  fi
  have_slurm || die "slurm-wlm and munge were installed but a command is missing; log: $log"
  echo "$prog: installed slurm-wlm and munge"
}

# A TCP port on 127.0.0.1 that nothing listens on, not $1 (the other port).
free_port() {
  local port tries
  for ((tries = 0; tries < 100; tries++)); do
    port=$((20000 + RANDOM % 40000))
    [[ "$port" != "${1:-}" ]] || continue
    if ! (exec 3<> "/dev/tcp/127.0.0.1/$port") 2> /dev/null; then
      echo "$port"
      return 0
    fi
  done
  die "found no free TCP port on 127.0.0.1"
}

# The memory slurmd will see, in MB, a little under MemTotal so the node is never
# drained for having less than its conf says.
real_memory_mb() {
  local kb
  kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
  echo $((kb * 95 / 100 / 1024))
}

write_conf() {
  local dir=$1 ctld_port slurmd_port
  ctld_port=$(free_port)
  slurmd_port=$(free_port "$ctld_port")
  : > "$dir/plugstack.conf"
  cat > "$dir/slurm.conf" << EOF
# A one-node cluster written by $prog start $dir
ClusterName=deepspeaker
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket.2
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
PlugStackConfig=$dir/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
# Finished jobs stay readable by scontrol for 30 s (slurm_jobs.sh reads their state);
# a cancelled job gets SIGKILL 2 s after SIGTERM, not Slurm's default 30.
MinJobAge=30
KillWait=2
# Schedule at once on submission and when a job ends, not after Slurm's 3 s batching.
SchedulerParameters=batch_sched_delay=0
InactiveLimit=0
SlurmctldDebug=info
SlurmdDebug=info
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=$(real_memory_mb) State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
  printf 'export SLURM_CONF=%q\n' "$dir/slurm.conf" > "$dir/env.sh"
}

start_munge() {
  local dir=$1 m=$1/munge i
  mkdir -p "$m"
  chmod 755 "$m"   # clients of any user reach the socket; the key stays 0600
  (umask 077 && head -c 1024 /dev/urandom > "$m/munge.key")
  # --force: the tests' DIR lies under a world-writable /tmp, which munged distrusts.
  munged --force --socket="$m/munge.socket.2" --key-file="$m/munge.key" \
    --pid-file="$m/munged.pid" --log-file="$m/munged.log" --seed-file="$m/munged.seed" \
    > "$m/munged.out" 2>&1 || fail_start "$dir" "munged did not start"
  for ((i = 0; i < 50; i++)); do
    if munge -n -S "$m/munge.socket.2" 2> /dev/null | unmunge -S "$m/munge.socket.2" > /dev/null 2>&1; then
      return 0
    fi
    sleep 0.1
  done
  fail_start "$dir" "munged does not answer on $m/munge.socket.2"
}

# The start failed: the daemons' log tails, whatever was started stopped, exit 1.
fail_start() {
  local dir=$1 f
  shift
  echo "$prog: $*" >&2
  for f in munge/munged.out munge/munged.log log/slurmctld.out log/slurmctld.log \
           log/slurmd.out log/slurmd.log; do
    if [[ -s "$dir/$f" ]]; then
      echo "--- last lines of $dir/$f" >&2
      tail -n 15 "$dir/$f" >&2
    fi
  done
  stop_daemons "$dir" > /dev/null 2>&1 || true
  exit 1
}

start_cluster() {
  local dir=$1 timeout=${DS_SLURM_START_TIMEOUT:-60} start state=
  ((EUID == 0)) || cannot "start needs root (slurmd runs each job as its user)"
  have_slurm || cannot "slurm and munge are not installed (run: $prog install)"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if daemon_pid "$dir" slurmctld > /dev/null; then
    die "a cluster is already running in $dir (stop it first: $prog stop $dir)"
  fi
  mkdir -p "$dir/state" "$dir/spool" "$dir/log" "$dir/run"
  write_conf "$dir"
  start_munge "$dir"
  export SLURM_CONF=$dir/slurm.conf
  slurmctld -f "$SLURM_CONF" > "$dir/log/slurmctld.out" 2>&1 \
    || fail_start "$dir" "slurmctld did not start"
  slurmd -f "$SLURM_CONF" -N localhost > "$dir/log/slurmd.out" 2>&1 \
    || fail_start "$dir" "slurmd did not start"
  printf -v start '%(%s)T' -1
  while true; do
    state=$(sinfo -h -N -n localhost -o %T 2> /dev/null) || state=
    [[ "$state" != idle ]] || break
    if (($(printf '%(%s)T' -1) - start >= timeout)); then
      fail_start "$dir" "the node is not idle after $timeout s (sinfo: ${state:-no answer})"
    fi
    sleep 0.2
  done
  echo "$prog: one-node cluster running in $dir; use it with: . $dir/env.sh"
}

# The pid of daemon $2 of cluster $1 (from its pid file) if it runs, else exit 1.
daemon_pid() {
  local dir=$1 name=$2 file pid
  case "$name" in
    munged) file=$dir/munge/munged.pid ;;
    *) file=$dir/run/$name.pid ;;
  esac
  { read -r pid < "$file"; } 2> /dev/null || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  # A pid file of a daemon long gone may name a reused pid: check what runs there.
  tr '\0' ' ' < "/proc/$pid/cmdline" 2> /dev/null | grep -q "$name" || return 1
  echo "$pid"
}

any_alive() {
  local pid
  for pid in "$@"; do
    ! kill -0 "$pid" 2> /dev/null || return 0
  done
  return 1
}

# SIGTERM to daemons $2... of cluster $1, then up to 10 s for them to exit; SIGKILL after.
stop_these() {
  local dir=$1 name pid i
  local -a pids=() names=()
  shift
  for name in "$@"; do
    pid=$(daemon_pid "$dir" "$name") || continue
    kill -TERM "$pid" 2> /dev/null || true
    pids+=("$pid")
    names+=("$name")
  done
  for ((i = 0; i < 100; i++)); do
    any_alive "${pids[@]}" || break
    sleep 0.1
  done
  for i in "${!pids[@]}"; do
    if kill -0 "${pids[$i]}" 2> /dev/null; then
      echo "$prog: ${names[$i]} (${pids[$i]}) did not stop within 10 s; killing it" >&2
      kill -KILL "${pids[$i]}" 2> /dev/null || true
    fi
  done
}

# Slurm's daemons together, munged (which they talk to while stopping) last.
stop_daemons() {
  stop_these "$1" slurmd slurmctld
  stop_these "$1" munged
}

stop_cluster() {
  local dir=$1 ids i
  [[ -d "$dir" ]] || die "no cluster directory $dir"
  dir=$(cd "$dir" && pwd)
  export SLURM_CONF=$dir/slurm.conf
  # The cluster's jobs first, so that no job step outlives its slurmd.
  if daemon_pid "$dir" slurmctld > /dev/null; then
    ids=$(squeue -h -o %A 2> /dev/null | sort -u) || ids=
    if [[ -n "$ids" ]]; then
      # shellcheck disable=SC2086  # one word per job id
      scancel $ids 2> /dev/null || true
      for ((i = 0; i < 50; i++)); do
        [[ -n "$(squeue -h -o %A 2> /dev/null)" ]] || break
        sleep 0.2
      done
    fi
  fi
  stop_daemons "$dir"
  echo "$prog: stopped the cluster in $dir"
}

status_cluster() {
  local dir=$1 name pid ok=0
  [[ -d "$dir" ]] || die "no cluster directory $dir"
  dir=$(cd "$dir" && pwd)
  for name in munged slurmctld slurmd; do
    if pid=$(daemon_pid "$dir" "$name"); then
      echo "$name: running (pid $pid)"
    else
      echo "$name: not running"
      ok=1
    fi
  done
  if ((ok == 0)); then
    SLURM_CONF=$dir/slurm.conf sinfo -N -o '%N %T %c %m %P' || ok=1
  fi
  return "$ok"
}

usage="Usage: $prog install | start DIR | stop DIR | status DIR"
case "${1:-}:$#" in
  install:1) install_packages ;;
  start:2) start_cluster "$2" ;;
  stop:2) stop_cluster "$2" ;;
  status:2) status_cluster "$2" ;;
  -h:1|--help:1) echo "$usage" ;;
  *) echo "$usage" >&2; exit 1 ;;
esac
