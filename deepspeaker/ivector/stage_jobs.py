"""The ``--nj`` jobs of the i-vector stages (4a statistics, 4b extraction): plan, markers, merges.

As stage 1 (``deepspeaker/bin/compute_fbank_vad.py``): the stage splits the sorted
utterances into contiguous shares, runs ``python -m ... --job JOB`` through
:func:`deepspeaker.jobs.run_jobs`, each job writes its outputs under temp names and
then its ``.done.JOB`` marker, a rerun redoes only the unfinished jobs, and the stage
merges.  Two things differ:

* **The plan is on fixed blocks of the listed utterances.**  Batched float work rounds
  by its batch (the GEMM shapes; which utterances share a frame chunk), so a share
  starts on a multiple of ``block`` listed utterances, ``block`` a multiple of every
  batch size of the stage.  A block is then computed alike in job 1 or job 3, and the
  merged outputs are the same bits whatever ``--nj`` (clamped to the number of blocks).
* **One job runs in the stage's own process**, without a runner (STYLE.md: "with one
  rank the same code runs without spawning"), so ``--nj 1`` costs no process start.

The job markers hold the stage's signature with ``nj`` and ``block``; under another,
every job starts again.  The per-job files are derived data: the stage removes them
once its merged output and marker are written.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..data import DataDir
from ..jobs import JobWatch, prepare_outputs, run_jobs
from ..marker import Marker
from ..utils import DeepSpeakerError, atomic_write
from .pipeline import IvectorConfig, listed_utts, load_exp_config

logger = logging.getLogger(__name__)


def plan_shares(num_items: int, block: int, nj: int) -> list[tuple[int, int]]:
    """Contiguous ``[start, end)`` shares of ``num_items``, each starting on a block.

    The blocks are split as ``np.array_split`` splits a list (near-equal counts);
    ``nj`` is clamped to the number of blocks (at least one share, maybe empty).
    """
    num_blocks = max(1, math.ceil(num_items / block))
    parts = np.array_split(np.arange(num_blocks), max(1, min(nj, num_blocks)))
    return [(int(p[0]) * block, min((int(p[-1]) + 1) * block, num_items)) for p in parts]


def stage_or_job(job: int | None, nj: int, stage: Callable[[], object],
                 one_job: Callable[[int], object]) -> None:
    """A stage command's work: the whole stage, or with ``--job`` that job alone."""
    if job is None:
        stage()
        return
    if not 1 <= job <= nj:
        raise DeepSpeakerError(f"--job {job} outside 1..{nj}")
    one_job(job)


def open_job(exp: Path, data: Path, job: int, jobs_of: Callable[[IvectorConfig, int], JobSet]):
    """``(cfg, data dir, jobs, share)`` of job ``job``; None (logged) when it is complete.

    ``jobs_of(cfg, num_listed)``: the stage's JobSet, made as the stage made it, so the
    job finds the share the stage planned.
    """
    cfg = load_exp_config(exp)
    d = DataDir.load(data)
    listed = listed_utts(d)
    jobs = jobs_of(cfg, len(listed))
    if jobs.done_path(job).exists():
        logger.info("job %d: already complete (%s); nothing to do", job, jobs.done_path(job))
        return None
    start, end = jobs.shares[job - 1]
    logger.info("job %d/%d: %s, %d utterances of %s", job, jobs.nj, jobs.what, end - start,
                data)
    return cfg, d, jobs, listed[start:end]


@dataclass
class JobSet:
    """The jobs of one stage over one set: where their files, markers and logs are."""

    what: str                      # "i-vectors of eval": progress label, messages
    work_dir: Path                 # per-job outputs and markers
    log_pattern: Path              # one log per job, "JOB" in the name
    shares: list[tuple[int, int]]

    @property
    def nj(self) -> int:
        return len(self.shares)

    def done_path(self, job: int) -> Path:
        return self.work_dir / f".done.{job}"

    def read_done(self, job: int) -> dict:
        return json.loads(self.done_path(job).read_text())

    def write_done(self, job: int, record: dict) -> None:
        """The job's marker, written last: what it did (counts, failed utterances...)."""
        with atomic_write(self.done_path(job)) as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")

    def start(self, sig: dict, block: int) -> list[int]:
        """Check the dirs, clear the markers of another signature or plan; the jobs to run."""
        prepare_outputs([self.work_dir.parent, self.work_dir, self.log_pattern.parent],
                        temps_in=[self.work_dir.parent, self.work_dir])
        jobs = Marker(self.work_dir / ".jobs.done")
        jobs_sig = {**sig, "options": {**sig["options"], "nj": self.nj, "block": block}}
        if not jobs.matches(jobs_sig):
            done = list(self.work_dir.glob(".done.*"))
            if done:
                logger.info("%s: signature or --nj changed since the jobs ran; recomputing "
                            "all jobs", self.work_dir)
            for path in done:
                path.unlink()
            jobs.write(jobs_sig)
        return [j for j in range(1, self.nj + 1) if not self.done_path(j).exists()]

    def run(self, todo: list[int], cmd: list[str], in_process: Callable[[int], None],
            stage: str, data: Path) -> None:
        """Run jobs ``todo``: ``in_process(1)`` when there is one job, else ``cmd`` (with
        ``JOB``) through the job runner, following the jobs' progress lines."""
        if not todo:
            logger.info("%s: all %d jobs already complete", self.what, self.nj)
            return
        if self.nj == 1:
            in_process(1)
            return
        logger.info("%s: %d jobs (%d to run), logs %s", self.what, self.nj, len(todo),
                    self.log_pattern)
        sizes = [end - start for start, end in self.shares]
        logs = [Path(str(self.log_pattern).replace("JOB", str(j))) for j in todo]
        watch = JobWatch(logs, sum(sizes), self.what,
                         done_before=sum(n for j, n in enumerate(sizes, 1) if j not in todo))
        rc = run_jobs([f"JOB=1:{self.nj}", str(self.log_pattern)]
                      + [shlex.quote(c) for c in cmd], watch)
        if rc != 0:
            raise DeepSpeakerError(f"{stage}: {data}: jobs failed (logs {self.log_pattern}); "
                                   f"rerun the same command to redo only the unfinished jobs")

    def remove(self) -> None:
        """Remove the per-job files (after the merged output and its marker are written),
        and their parent if that is left empty (``exp/stats/``)."""
        shutil.rmtree(self.work_dir, ignore_errors=True)
        try:
            self.work_dir.parent.rmdir()
        except OSError:     # not empty: another set's statistics, or the i-vectors
            pass


def save_array(path: Path, array: np.ndarray) -> None:
    """``np.save`` under a temp name, renamed when complete."""
    with atomic_write(path, "wb") as f:
        np.save(f, array, allow_pickle=False)


def concat_arrays(paths: list[Path]) -> np.ndarray:
    """The ``.npy`` files of ``paths`` concatenated in order (memory-mapped while read)."""
    return np.concatenate([np.load(p, mmap_mode="r", allow_pickle=False) for p in paths])


def merge_arks(parts: list[tuple[Path, Path]], ark: Path, scp: Path) -> int:
    """Concatenate the job arks ``parts`` (ark, scp) into ``ark``; write ``scp`` for it.

    The bytes are what one writer of all the entries would write (``ArkWriter``): the
    arks one after another, and the scp lines naming ``ark`` at each entry's offset in
    the job ark plus the size of the arks before it, sorted.  Both atomic, ark first.
    Returns the number of entries.
    """
    lines: list[str] = []
    base = 0
    final = ark.resolve()
    with atomic_write(ark, "wb") as out:
        for part_ark, part_scp in parts:
            with open(part_ark, "rb") as f:
                shutil.copyfileobj(f, out, 1 << 20)
            for line in part_scp.read_text().splitlines():
                key, entry = line.split(" ", 1)
                offset = int(entry.rsplit(":", 1)[1])
                lines.append(f"{key} {final}:{offset + base}\n")
            base += os.path.getsize(part_ark)
    with atomic_write(scp) as f:      # as ArkWriter.commit writes it
        f.writelines(sorted(lines))
    return len(lines)


__all__ = ["JobSet", "concat_arrays", "merge_arks", "open_job", "plan_shares", "save_array",
           "stage_or_job"]
