"""A stage's parallel jobs (``utils/run_jobs.sh``): started clean, and gone when the stage is.

Stage 1 (``compute_fbank_vad``) and augmentation (``augment_data_dir``) run their work as
``--nj`` jobs of ``utils/run_jobs.sh``, each job in its own process group so that a
signal reaches its whole pipeline.  What must hold around them:

* **The jobs die with the stage.**  Killing only the stage's main process (SIGKILL, the
  OOM killer, a closed terminal) used to leave ``run_jobs.sh`` and its jobs running as
  orphans, and an immediate rerun started a second copy of each job beside the orphan,
  writing the same files.  ``run_jobs.sh`` is started with ``PR_SET_PDEATHSIG`` (Linux,
  through ``prctl``): the kernel sends it SIGTERM the moment its parent dies, and its trap
  stops every job's process group and waits for them.  A stage that stops for any other
  reason (Ctrl-C, an error) sends that SIGTERM itself and waits (:func:`run_jobs`).
  Why this and not a lock that a rerun waits on: a lock keeps the orphans running to
  the end of their work, which nobody will read (the rerun redoes unfinished jobs), and
  a lock file on a shared file system is only as good as its locking; with the jobs
  dying, the rerun has nothing to wait for.  (Where ``prctl`` does not exist, only
  SIGKILL of the main process still leaves orphans.)
* **A job that is stopped removes its temp files**: a SIGTERM is an interrupt in every
  entry point (``bin/_cli.install_signal_handlers``), so the writers' cleanup runs.
* **A rerun removes what killed jobs left** (``.<name>.tmp<pid>`` of pids that are gone,
  :func:`deepspeaker.utils.remove_stale_temps`) and checks that the output dirs are
  writable before any job starts (:func:`prepare_outputs`).
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

from .utils import remove_stale_temps, require_writable

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1      # <linux/prctl.h>
STOP_WAIT_S = 60          # how long a stopped run_jobs.sh may take to stop its jobs


def run_jobs_script() -> Path:
    root = os.environ.get("DS_ROOT") or str(Path(__file__).resolve().parents[1])
    return Path(root) / "utils" / "run_jobs.sh"


def prepare_outputs(writable, temps_in=(), temps_under=()) -> None:
    """Before any job: the dirs ``writable`` can be written; dead jobs' temp files removed.

    ``temps_in`` are searched for temp files directly, ``temps_under`` recursively (the
    wav tree of augmentation).
    """
    require_writable(*writable)
    for d in temps_in:
        remove_stale_temps(d)
    for d in temps_under:
        remove_stale_temps(d, recursive=True)


def _die_with_parent_fn():
    """A ``preexec_fn`` that makes the child get SIGTERM when this process dies (Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:      # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


def run_jobs(args: list[str]) -> int:
    """``bash utils/run_jobs.sh ARGS...``; its exit code.  It never outlives this process.

    Any exception here (Ctrl-C, SIGTERM) first stops ``run_jobs.sh`` with SIGTERM, which
    stops its jobs and waits for them, so that nothing of this run is left writing when
    the exception reaches the user (``subprocess.run`` would SIGKILL ``run_jobs.sh`` and
    leave its jobs running).
    """
    # preexec_fn only calls prctl and getppid, which are safe between fork and exec.
    proc = subprocess.Popen(["bash", str(run_jobs_script()), *args],
                            preexec_fn=_die_with_parent_fn())  # noqa: PLW1509
    try:
        return proc.wait()
    except BaseException:
        _stop(proc)
        raise


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_WAIT_S)
    except subprocess.TimeoutExpired:
        logger.error("run_jobs.sh did not stop its jobs within %d s; killing it", STOP_WAIT_S)
        proc.kill()
        proc.wait()


__all__ = ["prepare_outputs", "run_jobs", "run_jobs_script"]
