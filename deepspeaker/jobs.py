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
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from .utils import DeepSpeakerError, remove_stale_temps, require_writable

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1      # <linux/prctl.h>
STOP_WAIT_S = 60          # how long a stopped run_jobs.sh may take to stop its jobs


# The job runner, as Kaldi's cmd.sh: shell words, its first a runner with run_jobs.sh's
# interface (utils/run_jobs.sh, utils/slurm_jobs.sh or the user's own); the recipes export
# their --cmd here.
CMD_ENV = "DS_CMD"
DEFAULT_CMD = "run_jobs.sh"
PROGRESS_ENV = "DS_PROGRESS_INTERVAL"   # seconds between a job's progress lines (default 10)
PROGRESS_RE = re.compile(r"progress: (\d+)/(\d+) ")


def utils_dir() -> Path:
    root = os.environ.get("DS_ROOT") or str(Path(__file__).resolve().parents[1])
    return Path(root) / "utils"


def run_jobs_script() -> Path:
    return utils_dir() / DEFAULT_CMD


def runner_command(cmd: str | None = None) -> list[str]:
    """The argv that starts the job runner ``cmd`` (default: ``$DS_CMD``, else run_jobs.sh).

    A bare first word naming a script of ``utils/`` (``run_jobs.sh``, ``slurm_jobs.sh``) is
    that script; a ``.sh`` file runs under bash (no executable bit needed); anything else
    is run as it is and must be on PATH.
    """
    text = os.environ.get(CMD_ENV, "") if cmd is None else cmd
    try:
        words = shlex.split(text) or [DEFAULT_CMD]
    except ValueError as e:
        raise DeepSpeakerError(f"the job runner {CMD_ENV}={text!r} (a recipe's --cmd) does "
                               f"not parse: {e}") from None
    first = words[0]
    if "/" not in first and (utils_dir() / first).is_file():
        first = str(utils_dir() / first)
    if first.endswith(".sh"):
        if not Path(first).is_file():
            raise DeepSpeakerError(f"the job runner {first} (from {CMD_ENV}={text!r}, a "
                                   f"recipe's --cmd) does not exist")
        return ["bash", first, *words[1:]]
    return [first, *words[1:]]


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


def run_jobs(args: list[str], watch: "JobWatch | None" = None) -> int:
    """``<runner> ARGS...`` (:func:`runner_command`); its exit code.  It never outlives us.

    With ``watch`` the jobs' progress lines are followed while they run (:class:`JobWatch`).

    Any exception here (Ctrl-C, SIGTERM) first stops ``run_jobs.sh`` with SIGTERM, which
    stops its jobs and waits for them, so that nothing of this run is left writing when
    the exception reaches the user (``subprocess.run`` would SIGKILL ``run_jobs.sh`` and
    leave its jobs running).
    """
    # preexec_fn only calls prctl and getppid, which are safe between fork and exec.
    argv = runner_command() + list(args)
    try:
        proc = subprocess.Popen(argv, preexec_fn=_die_with_parent_fn())  # noqa: PLW1509
    except OSError as e:
        raise DeepSpeakerError(f"cannot start the job runner {argv[0]} ({CMD_ENV}, a "
                               f"recipe's --cmd): {e.strerror}") from None
    try:
        if watch is None:
            return proc.wait()
        with watch:
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


class JobProgress:
    """A job's progress, as lines ``progress: DONE/TOTAL WHAT`` in its log (its stderr).

    One line every ``$DS_PROGRESS_INTERVAL`` seconds (default 10) and one at the end: a log
    keeps a line per interval, and the stage that started the jobs reads the last line of
    each log to show the whole stage's progress (:class:`JobWatch`), whatever back end ran
    them (the logs are where the runner puts them, also on a cluster).
    """

    def __init__(self, total: int, what: str = "utterances", interval: float | None = None):
        self.total, self.what, self.done = int(total), what, 0
        self.interval = progress_interval(10.0) if interval is None else interval
        self._last = time.monotonic()

    def add(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self._emit()

    def finish(self) -> None:
        self._emit()

    def _emit(self) -> None:
        logger.info("progress: %d/%d %s", self.done, self.total, self.what)


def progress_interval(default: float) -> float:
    try:
        return max(0.0, float(os.environ.get(PROGRESS_ENV, default)))
    except ValueError:
        return default


def last_progress(log: Path) -> int:
    """DONE of the last progress line of ``log`` (0 without one, or no log yet)."""
    try:
        with open(log, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4096))
            tail = f.read().decode("utf-8", "replace")
    except OSError:
        return 0
    found = PROGRESS_RE.findall(tail)
    return int(found[-1][0]) if found else 0


class JobWatch:
    """The progress of a stage's jobs, from their logs: a bar on a terminal, else log lines.

    On a terminal (stderr a tty) a tqdm bar of utterances done, rate and ETA, refreshed
    every second; otherwise one log line per ``$DS_PROGRESS_INTERVAL`` seconds (default 60)
    with the same figures, so a stage's own log does not fill up.  ``done_before`` counts
    the work of jobs that finished in an earlier run (not started again).
    """

    def __init__(self, logs: list[Path], total: int, label: str, what: str = "utterances",
                 done_before: int = 0):
        self.logs, self.total, self.label, self.what = list(logs), int(total), label, what
        self.done_before = done_before
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def of_jobs(cls, log_pattern: Path, nj: int, todo: list[int], total: int, label: str,
                what: str = "utterances") -> "JobWatch":
        """The watch of jobs ``todo`` of ``nj`` (logs ``log_pattern`` with JOB), each with its
        contiguous, near-equal share of ``total`` items (np.array_split's, as the stages
        split); the shares of the other jobs are done already."""
        import numpy as np

        shares = [len(s) for s in np.array_split(np.arange(total), nj)]
        logs = [Path(str(log_pattern).replace("JOB", str(j))) for j in todo]
        before = sum(n for j, n in enumerate(shares, 1) if j not in todo)
        return cls(logs, total, label, what, before)

    def done(self) -> int:
        return self.done_before + sum(last_progress(p) for p in self.logs)

    def __enter__(self) -> "JobWatch":
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        if sys.stderr.isatty():
            self._bar()
        else:
            self._lines(progress_interval(60.0))

    def _bar(self) -> None:
        from tqdm import tqdm

        bar = tqdm(total=self.total, initial=self.done_before, desc=self.label,
                   unit=" " + self.what[:3], file=sys.stderr, leave=False)
        try:
            while not self._stop.wait(1.0):
                bar.update(max(0, self.done() - bar.n))
        finally:
            bar.close()

    def _lines(self, interval: float) -> None:
        t0, start = time.monotonic(), self.done_before
        while not self._stop.wait(max(interval, 1.0)):
            n, dt = self.done(), time.monotonic() - t0
            rate = (n - start) / dt if dt > 0 else 0.0
            eta = f"{(self.total - n) / rate:.0f} s" if rate > 0 else "unknown"
            logger.info("%s: %d/%d %s (%.0f%%), %.1f/s, ETA %s", self.label, n, self.total,
                        self.what, 100.0 * n / max(self.total, 1), rate, eta)


__all__ = ["JobProgress", "JobWatch", "prepare_outputs", "run_jobs", "run_jobs_script",
           "runner_command"]
