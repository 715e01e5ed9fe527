"""How many threads a process uses: its share of the cores it may run on, not the machine's.

On a shared 2-core machine a ``./run.sh`` beside other niced jobs took 67 min instead of
14, with the trainer at a tenth of its quiet rate: torch's intra-op pool had one thread
per core of the machine whatever else ran there, and each of the ``--nj`` jobs of a stage
had as many.  A parallel region ends only when its slowest thread does, so one thread
waiting for a core held by another process stalls every other thread, and those spin
(OpenMP's default wait policy) on the cores the late one needs.

So every entry point calls :func:`configure_threads` once (``bin/_cli.run_main`` does):

* intra-op threads = max(1, usable cores // jobs running at once), where the usable
  cores are those of the process's CPU affinity (``taskset``, a batch system's cpuset),
  capped by a cgroup v2 CPU quota (``/sys/fs/cgroup/cpu.max``, a container's
  ``--cpus``), and the jobs are those ``utils/run_jobs.sh`` runs side by side (it exports
  their share as ``DS_NUM_THREADS``) or torchrun's ``LOCAL_WORLD_SIZE``;
* inter-op threads 1: our stages never fork TorchScript work, and an idle pool of
  ``cores`` more threads only adds contention;
* a user who knows the machine decides: ``OMP_NUM_THREADS`` is the count of each
  process, ``DS_NUM_THREADS`` the budget of a process and the jobs it runs (each of
  ``run_jobs.sh``'s jobs gets ``DS_NUM_THREADS // jobs at once``, so nested job runs
  split their parent's share instead of multiplying it).

The OpenMP wait policy (``OMP_WAIT_POLICY=PASSIVE`` by default, see
``deepspeaker/__init__.py``) must be in the environment before torch loads libgomp, so it
is set on import of the package, not here.  Measured with ``bench/bench_train.py
--with-load`` on the shared 2-core machine (load 8-11 from other users' jobs): the GRU
trainer with 2 threads went 43-93 utt/s under PASSIVE against 4-9 utt/s under libgomp's
default (spin ~300k iterations before sleeping), whose spinning threads burnt the share
the scheduler gave the process; with 1 thread the policy hardly matters (65 vs 52).

Nice is no shield on most desktops and servers: with autogroup scheduling
(``/proc/sys/kernel/sched_autogroup_enabled``) each session is one scheduling group of
equal weight, so a niced job started from another terminal still takes its session's
share; the fair share of a process beside one other busy session is half the machine.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys

logger = logging.getLogger(__name__)

# The cgroup v2 CPU limit of this process's container: "<quota> <period>" or "max <period>".
CGROUP_CPU_MAX = "/sys/fs/cgroup/cpu.max"

_configured: int | None = None


def cgroup_cpu_limit(path: str = CGROUP_CPU_MAX) -> int | None:
    """Cores a cgroup v2 quota allows (rounded up, as Java's and Go's runtimes do), or None."""
    try:
        with open(path) as f:
            fields = f.read().split()
    except OSError:
        return None
    if len(fields) != 2 or fields[0] == "max":
        return None
    try:
        quota, period = int(fields[0]), int(fields[1])
    except ValueError:
        return None
    if quota <= 0 or period <= 0:
        return None
    return max(1, math.ceil(quota / period))


def usable_cores() -> int:
    """Cores this process may run on: its affinity mask, capped by a cgroup CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    limit = cgroup_cpu_limit(CGROUP_CPU_MAX)
    return max(1, min(cores, limit) if limit else cores)


def _positive(env, name: str) -> int | None:
    value = env.get(name, "").strip()
    if not value:
        return None
    # OpenMP allows a list ("4,2": one count per nesting level); the first level is ours.
    first = value.split(",")[0].strip()
    if first.isdigit() and int(first) > 0:
        return int(first)
    logger.warning("ignoring %s=%r: not a positive integer", name, value)
    return None


def thread_count(jobs: int | None = None, env=None) -> tuple[int, str]:
    """(intra-op threads, why) for a process of which ``jobs`` run at once.

    ``OMP_NUM_THREADS`` is a per-process count a user (or torchrun) set: it wins.
    Otherwise the budget is ``DS_NUM_THREADS`` (the cores this process and what it starts
    may use: a user's choice, or the share ``run_jobs.sh`` gave its job) or else the
    usable cores, divided among the ``jobs`` (None: torchrun's ``LOCAL_WORLD_SIZE``, 1
    without torchrun).
    """
    env = os.environ if env is None else env
    omp = _positive(env, "OMP_NUM_THREADS")
    if omp is not None:
        return omp, f"OMP_NUM_THREADS={omp}"
    if jobs is None:
        jobs = _positive(env, "LOCAL_WORLD_SIZE") or 1
    jobs = max(1, jobs)
    budget, where = core_budget(env)
    return max(1, budget // jobs), f"{where} / {jobs} job(s)"


def core_budget(env=None) -> tuple[int, str]:
    """(cores this process and what it starts may use, why): ``DS_NUM_THREADS`` when set
    (a user's choice, or the share ``run_jobs.sh`` or a recipe running several trainings
    at once gave it), else the usable cores.  Thread counts and the loader's worker count
    both come from it, so that two trainings side by side do not each take every core."""
    env = os.environ if env is None else env
    budget = _positive(env, "DS_NUM_THREADS")
    if budget is not None:
        return budget, f"DS_NUM_THREADS={budget}"
    cores = usable_cores()
    return cores, f"{cores} usable cores"


def configure_threads(jobs: int | None = None, quiet: bool = False) -> int:
    """Set torch's intra-op (and MKL's) and inter-op thread counts, once per process.

    Returns the intra-op thread count.  A second call in the same process returns the
    first call's count and changes nothing (the inter-op count cannot change once set).
    Torch must be imported already (every entry point that uses it imports it at the
    top); the environment is left alone, so child processes (``run_jobs.sh`` jobs) make
    their own share from the cores, not inherit this process's count as if a user had
    set it.  The count is logged once at INFO (``quiet``: at DEBUG, for commands whose
    output is the answer, such as ``validate_data_dir``).
    """
    global _configured
    if _configured is not None:
        return _configured
    n, why = thread_count(jobs)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # parallel work already started: leave the pool as it is
            pass
    _configured = n
    logger.log(logging.DEBUG if quiet else logging.INFO,
               "threads: %d intra-op, 1 inter-op (%s; OMP_WAIT_POLICY=%s)", n, why,
               os.environ.get("OMP_WAIT_POLICY", "unset"))
    return n


@contextlib.contextmanager
def single_thread():
    """Torch's (and MKL's) intra-op threads at 1 inside the block, restored after.

    For work whose bits must not depend on the thread count (a LAPACK factorisation
    splits its sums by threads): see "Threads" in ``deepspeaker.ivector.extractor``.
    """
    import torch

    before = torch.get_num_threads()
    if before == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
