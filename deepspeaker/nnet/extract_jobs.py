"""Stage 8 as ``--nj`` jobs: each embeds whole blocks of the plan, the stage concatenates.

* **The same files whatever ``--nj``.**  The plan is the sorted utterance list in
  blocks of ``block_size`` listed utterances (:func:`~deepspeaker.nnet.extract.plan_blocks`);
  job ``j`` of ``nj`` embeds the ``j``-th of ``np.array_split``'s contiguous shares of
  the blocks, each block exactly as one process would.  Its outputs, in ``<out>/jobs/``,
  are ``embedding.j.{ark,scp}``, ``failed.j`` and, written last, ``.done.j``; the stage
  concatenates the arks in job order into ``<out>/embedding.ark`` and shifts the
  offsets of the scp (:func:`~deepspeaker.data.ark.concat_arks`): byte for byte what
  one process writes.  The job files are removed once the set's marker is written.
* **Reruns redo only unfinished jobs.**  ``<out>/jobs/.jobs.done`` holds the set's
  signature with ``nj`` and the options that change the bits (``batch_size``,
  ``block_size``, ``device``); under it a job with its ``.done`` and outputs is not
  run again, under any other (or ``--force``) every job starts again.
* **Logs** ``<out>/log/extract.JOB.log``, with the jobs' progress lines, which the
  stage follows (:class:`~deepspeaker.jobs.JobWatch`).  Each job's threads are its
  share of the stage's (``run_jobs.sh`` divides ``DS_NUM_THREADS``).
* **GPUs.**  ``--device auto`` or ``cuda`` (no index) puts job ``j`` on
  ``cuda:(j - 1) % device_count``: the jobs spread over the GPUs of the machine they run
  on, and with more jobs than GPUs several share one (each holds its own model and
  CUDA context), which still lets one job read and normalise features while another
  runs the network.  ``cuda:N`` puts every job on GPU N.  cuDNN runs deterministically,
  so the bits are those of one process on the same kind of GPU.  Not clamped to one
  job: on a cluster (``$DS_CMD``) the jobs run on other machines than the stage.
"""

from __future__ import annotations

import logging
import shlex
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

from ..data import DataDir
from ..data.ark import ArkWriter, concat_arks
from ..jobs import JobProgress, JobWatch, prepare_outputs, run_jobs
from ..marker import Marker
from ..utils import DeepSpeakerError, atomic_write
from .extract import (ExtractOptions, embed_blocks, load_embedder, nothing_embedded,
                      plan_blocks, read_failed, resolve_device, use_deterministic_kernels,
                      write_failed)

logger = logging.getLogger(__name__)

LOG_NAME = "extract.JOB.log"


def job_share(blocks: list[list[str]], nj: int, job: int) -> list[list[str]]:
    """The blocks of job ``job`` (1-based) of ``nj``: contiguous, near-equal in blocks."""
    return [blocks[i] for i in np.array_split(np.arange(len(blocks)), nj)[job - 1]]


def job_paths(out_dir: Path, job: int) -> dict[str, Path]:
    jobs = out_dir / "jobs"
    return {"ark": jobs / f"embedding.{job}.ark", "scp": jobs / f"embedding.{job}.scp",
            "failed": jobs / f"failed.{job}", "done": jobs / f".done.{job}"}


def job_finished(out_dir: Path, job: int) -> bool:
    return all(p.exists() for p in job_paths(out_dir, job).values())


def job_device(name: str, job: int) -> torch.device:
    """The device of job ``job``: ``cuda`` without an index is GPU ``(job - 1) % count``."""
    dev = resolve_device(name)
    if dev.type == "cuda" and dev.index is None:
        return torch.device("cuda", (job - 1) % torch.cuda.device_count())
    return dev


def run_job(exp_dir: Path, data_dir: Path, out_dir: Path, opts: ExtractOptions, nj: int,
            job: int) -> None:
    """Embed job ``job``'s share of the blocks into ``<out>/jobs/``; ``.done.JOB`` last."""
    paths = job_paths(out_dir, job)
    if job_finished(out_dir, job):
        logger.info("job %d: already complete (%s); nothing to do", job, paths["done"])
        return
    device = job_device(opts.device, job)
    model, _ = load_embedder(exp_dir, opts.checkpoint, device)
    data = DataDir.load(data_dir)
    blocks = job_share(plan_blocks(data.utts, opts.block_size), nj, job)
    use_deterministic_kernels(device)
    failed: dict[str, str] = {}
    progress = JobProgress(sum(map(len, blocks)))
    logger.info("job %d/%d: %d blocks, %d utterances of %s on %s", job, nj, len(blocks),
                progress.total, data_dir, device)
    with ArkWriter(paths["ark"], paths["scp"]) as writer:
        num = embed_blocks(model, data, blocks, opts, device, writer, failed, progress)
    progress.finish()
    write_failed(paths["failed"], failed, keep_empty=True)
    with atomic_write(paths["done"]) as f:
        f.write(f"{num} embedded {len(failed)} failed\n")
    logger.info("job %d: %d embedded, %d failed", job, num, len(failed))


def extract_in_jobs(exp_dir: Path, data: DataDir, ckpt_path: Path, opts: ExtractOptions,
                    out_dir: Path, sig: dict, nj: int, force: bool = False
                    ) -> tuple[int, dict[str, str]]:
    """Run the unfinished jobs, then concatenate all into ``<out>/embedding.{ark,scp}``.

    Returns ``(number embedded, failed)``; a failed job is one DeepSpeakerError naming
    the data dir and the logs, after which a rerun redoes only the unfinished jobs.
    """
    log_dir = out_dir / "log"
    prepare_outputs([out_dir / "jobs", log_dir], temps_in=[out_dir / "jobs"])
    _reset_jobs(out_dir, sig, opts, nj, force)
    shares = [sum(map(len, job_share(plan_blocks(data.utts, opts.block_size), nj, j)))
              for j in range(1, nj + 1)]
    todo = [j for j in range(1, nj + 1) if not job_finished(out_dir, j)]
    if todo:
        _run(exp_dir, data.path, ckpt_path, opts, out_dir, nj, todo, shares)
    else:
        logger.info("%s: all %d jobs already complete", out_dir, nj)
    failed: dict[str, str] = {}
    num = 0
    for j in range(1, nj + 1):
        paths = job_paths(out_dir, j)
        failed.update(read_failed(paths["failed"]))
        num += int(paths["done"].read_text().split()[0])
    if num == 0:
        raise nothing_embedded(data.path, failed)
    concat_arks([(job_paths(out_dir, j)["ark"], job_paths(out_dir, j)["scp"])
                 for j in range(1, nj + 1)], out_dir / "embedding.ark", out_dir / "embedding.scp")
    return num, failed


def _reset_jobs(out_dir: Path, sig: dict, opts: ExtractOptions, nj: int, force: bool) -> None:
    """Keep the finished jobs only if they ran under this signature, ``nj`` and batching."""
    marker = Marker(out_dir / "jobs" / ".jobs.done")
    how = {"nj": nj, "batch_size": opts.batch_size, "block_size": opts.block_size,
           "device": opts.device}
    jobs_sig = {**sig, "options": {**sig["options"], **how}}
    if force or not marker.matches(jobs_sig):
        stale = sorted((out_dir / "jobs").glob(".done.*"))
        if stale:
            logger.info("%s: %s since the jobs ran; redoing every job", out_dir,
                        "--force" if force else "inputs, options or --nj changed")
        for path in stale:
            path.unlink()
        marker.write(jobs_sig)


def _run(exp_dir: Path, data_dir: Path, ckpt_path: Path, opts: ExtractOptions, out_dir: Path,
         nj: int, todo: list[int], shares: list[int]) -> None:
    log_dir = out_dir / "log"
    device = resolve_device(opts.device)
    where = (f"cuda:(JOB-1) % {torch.cuda.device_count()} here" if device.type == "cuda"
             and device.index is None else str(device))
    logger.info("%s: %d of %d jobs to run (logs %s, devices %s)", data_dir, len(todo), nj,
                log_dir / LOG_NAME, where)
    cmd = [sys.executable, "-m", "deepspeaker.bin.extract_embeddings", "--nj", str(nj),
           "--job", "JOB", "--checkpoint", str(ckpt_path.resolve()),
           "--max-frames", str(opts.max_frames), "--batch-size", str(opts.batch_size),
           "--block-size", str(opts.block_size), "--device", opts.device,
           "--out-dir", str(out_dir.resolve()), str(exp_dir.resolve()), str(data_dir.resolve())]
    watch = JobWatch([log_dir / LOG_NAME.replace("JOB", str(j)) for j in todo], sum(shares),
                     f"embeddings of {data_dir.name}",
                     done_before=sum(n for j, n in enumerate(shares, 1) if j not in todo))
    # The runner joins its arguments and runs them with bash (as run.pl): quote them.
    rc = run_jobs([f"JOB=1:{nj}", str(log_dir / LOG_NAME)] + [shlex.quote(c) for c in cmd],
                  watch)
    unfinished = [j for j in todo if not job_finished(out_dir, j)]
    if rc != 0 or unfinished:
        what = (f"{len(unfinished)} of {nj} jobs failed" if unfinished
                else f"the job runner exited with code {rc}")
        raise DeepSpeakerError(f"extract_embeddings of {data_dir}: {what} (logs: "
                               f"{log_dir / LOG_NAME}); rerun the same command to redo only "
                               f"the unfinished jobs")


def remove_job_outputs(out_dir: Path) -> None:
    """The job files, once the set's marker holds what they made (its ark has their bytes)."""
    shutil.rmtree(out_dir / "jobs", ignore_errors=True)


__all__ = ["extract_in_jobs", "job_device", "job_share", "remove_job_outputs", "run_job"]
