"""Stage 4a: total-variability matrix by EM with minimum divergence (paper §4.2; SPEC B2).

    python -m deepspeaker.bin.train_ivector_extractor [--nj 4] [--device auto] \\
        data/train exp/ivector

Reads ``exp/ivector/config.yaml`` and ``models/ubm.npz``; writes
``models/extractor.npz`` and its marker ``models/.extractor.done``.  The EM
objective is logged each iteration and must not decrease beyond numerical noise.
A rerun with the same config sections (frontend, stats, extractor), training
features and UBM does nothing; with another it refuses, keeping the extractor, and
says what changed: ``rm -r exp/ivector`` and rerun to redo it.

The Baum-Welch statistics of the training set are computed first, in ``--nj`` jobs
(logs ``exp/ivector/log/ivector_stats_<set>.JOB.log``), each writing the float64 N
and F of its share to ``exp/ivector/stats/<set>/`` (``N.JOB.npy``, ``F.JOB.npy``;
C x (D + 1) x 8 bytes per utterance: 0.5 GB per 1,000 utterances at the paper's
C = 1024, D = 60).  They are derived data with job markers of their own (the
signature of the frontend and stats sections, the features and the UBM, and ``--nj``):
a crash during the EM does not redo them, and they are removed once the extractor
and its marker are written.  The EM runs in this process on the merged statistics,
the same arrays whatever ``--nj`` (the shares start on whole batches,
:mod:`deepspeaker.ivector.stage_jobs`).  ``--nj`` and ``--device`` are how, not what.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from ..data import DataDir
from ..data.ark import require_readable_features
from ..devices import resolve_device
from ..ivector.extractor import train_extractor
from ..ivector.pipeline import (IvectorConfig, block_stats, feature_files, listed_utts,
                                load_exp_config, load_ubm, stage_signature, write_failed)
from ..ivector.stage_jobs import (JobSet, concat_arrays, open_job, plan_shares, save_array,
                                  stage_or_job)
from ..jobs import JobProgress
from ..marker import Marker
from ..utils import DeepSpeakerError
from ._cli import run_main

logger = logging.getLogger(__name__)

SECTIONS = ("frontend", "stats", "extractor")
STATS_SECTIONS = ("frontend", "stats")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m deepspeaker.bin.train_ivector_extractor",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--nj", type=int, default=1, help="jobs for the statistics (default 1: "
                   "no job runner, in this process); the EM is one process")
    p.add_argument("--job", type=int, help="internal: compute only this job's statistics")
    p.add_argument("--stats-only", action="store_true", help="stop after the statistics "
                   "(the recipes run them as --nj jobs from here, then the EM as one job)")
    p.add_argument("--device", default="auto", help="auto (CUDA when torch sees a GPU), "
                   "cpu, cuda or cuda:N")
    p.add_argument("data", type=Path)
    p.add_argument("exp", type=Path)
    return p


def run(data: Path, exp: Path, nj: int = 1, device: str = "auto", stats_only: bool = False
        ) -> Path:
    cfg = load_exp_config(exp)
    out = exp / "models" / "extractor.npz"
    ubm_path = exp / "models" / "ubm.npz"
    marker = Marker(exp / "models" / ".extractor.done")
    sig = stage_signature(cfg, SECTIONS, exp, feature_files(data), [ubm_path])
    if marker.model_current(sig, [out], str(out), exp):
        logger.info("%s is up to date (same config, features and UBM, %s); nothing to do", out,
                    marker.path)
        return out
    ubm = load_ubm(exp, cfg)
    dev = resolve_device(device)
    # a header check of every entry: stop before any work on a damaged ark
    require_readable_features(data)
    t0 = time.time()
    jobs, keys, n, f, failed = training_stats(data, exp, cfg, nj, device)
    write_failed(exp / "log" / f"extractor_failed_utts_{data.name}", failed)
    if not keys:
        raise DeepSpeakerError(f"{data}: no utterance has voiced frames")
    logger.info("stats of %d utterances (%.0f frames) in %.1f s", len(keys), n.sum(), time.time() - t0)
    if stats_only:
        logger.info("--stats-only: statistics in %s; the EM is the next run", jobs.work_dir)
        return jobs.work_dir
    e = cfg.extractor
    ext = train_extractor(ubm, n, f, rank=e.rank, num_iters=e.num_iters, seed=e.seed,
                          min_divergence=e.min_divergence, device=dev)
    ext.save(out, meta={"ubm": str(ubm_path), "data": str(data)})
    marker.write(sig)
    jobs.remove()
    logger.info("wrote %s in %.1f s", out, time.time() - t0)
    return out


def stats_jobs(data: Path, exp: Path, cfg: IvectorConfig, num_utts: int, nj: int) -> JobSet:
    name = data.resolve().name
    return JobSet(f"statistics of {name}", exp / "stats" / name,
                  exp / "log" / f"ivector_stats_{name}.JOB.log",
                  plan_shares(num_utts, cfg.stats.batch_utts, nj))


def training_stats(data: Path, exp: Path, cfg: IvectorConfig, nj: int, device: str):
    """(jobs, keys, N, F, failed) of the training set: the jobs' statistics, merged in order."""
    listed = listed_utts(DataDir.load(data))
    jobs = stats_jobs(data, exp, cfg, len(listed), nj)
    sig = stage_signature(cfg, STATS_SECTIONS, exp, feature_files(data),
                          [exp / "models" / "ubm.npz"])
    todo = jobs.start(sig, cfg.stats.batch_utts)
    cmd = [sys.executable, "-m", "deepspeaker.bin.train_ivector_extractor", "--nj",
           str(jobs.nj), "--job", "JOB", "--device", device, str(data.resolve()),
           str(exp.resolve())]
    jobs.run(todo, cmd, lambda job: run_stats_job(data, exp, jobs.nj, job, device),
             "train_ivector_extractor", data)
    keys, failed = [], {}
    for job in range(1, jobs.nj + 1):
        record = jobs.read_done(job)
        keys += record["keys"]
        failed.update(record["failed"])
    nums = range(1, jobs.nj + 1)
    n = concat_arrays([jobs.work_dir / f"N.{j}.npy" for j in nums])
    f = concat_arrays([jobs.work_dir / f"F.{j}.npy" for j in nums])
    return jobs, keys, n, f, failed


def run_stats_job(data: Path, exp: Path, nj: int, job: int, device: str) -> None:
    """N and F (float64) of job ``job``'s share: ``stats/<set>/{N,F}.JOB.npy`` and its marker."""
    opened = open_job(exp, data, job, lambda cfg, num: stats_jobs(data, exp, cfg, num, nj))
    if opened is None:
        return
    cfg, d, jobs, share = opened
    ubm = load_ubm(exp, cfg)
    failed: dict[str, str] = {}
    progress = JobProgress(len(share))
    keys, n, f = block_stats(d, share, ubm, cfg, failed, resolve_device(device), progress=progress)
    progress.finish()
    save_array(jobs.work_dir / f"N.{job}.npy", n)
    save_array(jobs.work_dir / f"F.{job}.npy", f)
    jobs.write_done(job, {"keys": keys, "failed": failed})
    logger.info("job %d: statistics of %d utterances, %d failed", job, len(keys), len(failed))


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    return run_main(lambda: stage_or_job(
        args.job, args.nj, lambda: run(args.data, args.exp, args.nj, args.device, args.stats_only),
        lambda job: run_stats_job(args.data, args.exp, args.nj, job, args.device)),
        argv, outputs=[args.exp] if args.job is None else [])


if __name__ == "__main__":
    sys.exit(main())
