"""Stage 4b: posterior-mean i-vectors of a data dir (paper §4.2; SPEC B2).

    python -m deepspeaker.bin.extract_ivectors [--nj 4] [--device auto] exp/ivector data/eval

Writes ``exp/ivector/<set>/ivector.scp`` + ark (float32 vectors, readable with
kaldiio or Kaldi's copy-vector) and ``<set>/failed_utts`` for utterances without
voiced frames or whose feats.scp / vad.scp entries point into a truncated or damaged
ark (each line names the scp file and line and the ark), which get no i-vector and
are never scored as zeros; the rest are written.

I-vectors are derived data: the marker ``<set>/.ivector.done`` records the config
sections (frontend, stats), the set's features and the UBM and extractor they came
from.  A rerun with all of these unchanged does nothing; any change extracts again.

``--nj`` jobs (logs ``exp/ivector/log/extract_ivectors_<set>.JOB.log``) each compute
the statistics and i-vectors of a share of the sorted utterances into
``<set>/jobs/``; a rerun after a crash redoes only the unfinished jobs, and the
merged ark, scp and failed_utts are the same bytes whatever ``--nj``: the shares start
on blocks of listed utterances that are whole batches of both the statistics and the
extraction (:mod:`deepspeaker.ivector.stage_jobs`).  ``--nj`` and ``--device`` are how,
not what: changing them on a finished set redoes nothing.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np

from ..data import DataDir
from ..data.ark import ArkWriter, scan_feature_entries
from ..devices import resolve_device
from ..ivector.extractor import EXTRACT_BATCH, IvectorExtractor, model_terms
from ..ivector.pipeline import (IvectorConfig, block_stats, feature_files, listed_utts,
                                load_exp_config, load_ubm, stage_signature, write_failed)
from ..ivector.stage_jobs import JobSet, merge_arks, open_job, plan_shares, stage_or_job
from ..jobs import JobProgress
from ..marker import Marker
from ..utils import DeepSpeakerError, SizeMismatchError
from ._cli import run_main

logger = logging.getLogger(__name__)

SECTIONS = ("frontend", "stats")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m deepspeaker.bin.extract_ivectors",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--nj", type=int, default=1, help="number of jobs (default 1: no job "
                   "runner, in this process)")
    p.add_argument("--job", type=int, help="internal: run only this job (1-based) of --nj")
    p.add_argument("--device", default="auto", help="auto (CUDA when torch sees a GPU), "
                   "cpu, cuda or cuda:N")
    p.add_argument("exp", type=Path)
    p.add_argument("data", type=Path)
    return p


def block_size(cfg: IvectorConfig) -> int:
    """Listed utterances per block of the job plan: whole stats and extraction batches."""
    return math.lcm(cfg.stats.batch_utts, EXTRACT_BATCH)


def job_set(exp: Path, data: Path, cfg: IvectorConfig, num_utts: int, nj: int) -> JobSet:
    name = data.resolve().name
    return JobSet(f"i-vectors of {name}", exp / name / "jobs",
                  exp / "log" / f"extract_ivectors_{name}.JOB.log",
                  plan_shares(num_utts, block_size(cfg), nj))


def load_models(exp: Path, cfg: IvectorConfig):
    ubm = load_ubm(exp, cfg)
    ext_path = exp / "models" / "extractor.npz"
    ext = IvectorExtractor.load(ext_path)
    if ext.means.shape != ubm.means.shape:
        raise SizeMismatchError(f"{ext_path} is for a {ext.means.shape} UBM, "
                                f"{exp / 'models' / 'ubm.npz'} is {ubm.means.shape}")
    return ubm, ext


def run(exp: Path, data: Path, nj: int = 1, device: str = "auto") -> Path:
    cfg = load_exp_config(exp)
    out_dir = exp / data.resolve().name
    scp = out_dir / "ivector.scp"
    ubm_path, ext_path = exp / "models" / "ubm.npz", exp / "models" / "extractor.npz"
    marker = Marker(out_dir / ".ivector.done")
    sig = stage_signature(cfg, SECTIONS, exp, feature_files(data), [ubm_path, ext_path])
    if marker.outputs_current(sig, [scp, out_dir / "ivector.ark"]):
        logger.info("%s is up to date (same features, UBM and extractor, %s); nothing to do",
                    scp, marker.path)
        return scp
    load_models(exp, cfg)          # a bad model or device fails before any job
    resolve_device(device)
    t0 = time.time()
    d = DataDir.load(data)
    listed = listed_utts(d)
    jobs = job_set(exp, data, cfg, len(listed), nj)
    todo = jobs.start(sig, block_size(cfg))
    cmd = [sys.executable, "-m", "deepspeaker.bin.extract_ivectors", "--nj", str(jobs.nj),
           "--job", "JOB", "--device", device, str(exp.resolve()), str(data.resolve())]
    jobs.run(todo, cmd, lambda job: run_job(exp, data, jobs.nj, job, device),
             "extract_ivectors", data)
    num, dim = merge(jobs, d, listed, out_dir)
    marker.write(sig)
    jobs.remove()
    logger.info("%s: %d i-vectors of dim %d in %.1f s", scp, num, dim, time.time() - t0)
    return scp


def run_job(exp: Path, data: Path, nj: int, job: int, device: str) -> None:
    """The i-vectors of job ``job``'s share: ``jobs/ivector.JOB.{ark,scp}`` and its marker."""
    opened = open_job(exp, data, job, lambda cfg, num: job_set(exp, data, cfg, num, nj))
    if opened is None:
        return
    cfg, d, jobs, share = opened
    ubm, ext = load_models(exp, cfg)
    dev = resolve_device(device)
    terms = model_terms(ext, dev)
    failed = damaged_utterances(d, share)
    progress = JobProgress(len(share))
    writer = ArkWriter(jobs.work_dir / f"ivector.{job}.ark", jobs.work_dir / f"ivector.{job}.scp")
    num = 0
    try:
        for b0 in range(0, len(share), EXTRACT_BATCH):
            batch = share[b0:b0 + EXTRACT_BATCH]
            keys, n, f = block_stats(d, batch, ubm, cfg, failed, dev, skip=failed)
            if keys:
                ivectors = ext.extract(n, f, terms=terms)
                for utt, v in zip(keys, ivectors.astype(np.float32)):
                    writer.write(utt, v)
                num += len(keys)
            progress.add(len(batch))
        progress.finish()
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    jobs.write_done(job, {"ok": num, "dim": ext.ivector_dim, "failed": failed})
    logger.info("job %d: %d i-vectors, %d failed", job, num, len(failed))


def merge(jobs: JobSet, d: DataDir, listed: list[str], out_dir: Path) -> tuple[int, int]:
    """The jobs' arks into ``ivector.{ark,scp}``, their failures into ``failed_utts``.

    Damaged entries of utterances outside the listed ones (in feats.scp but not vad.scp,
    say) are listed too, as when one process scanned every entry.
    """
    others = (set(d.feats_scp) | set(d.vad_scp)) - set(listed)
    failed = damaged_utterances(d, sorted(others)) if others else {}
    records = [jobs.read_done(j) for j in range(1, jobs.nj + 1)]
    for r in records:
        failed.update(r["failed"])
    if not any(r["ok"] for r in records):
        raise DeepSpeakerError(f"{d.path}: no utterance could be used ({len(failed)} listed in "
                               f"{out_dir / 'failed_utts'}, e.g. {next(iter(failed.items()), '')})")
    parts = [(jobs.work_dir / f"ivector.{j}.ark", jobs.work_dir / f"ivector.{j}.scp")
             for j in range(1, jobs.nj + 1)]
    num = merge_arks(parts, out_dir / "ivector.ark", out_dir / "ivector.scp")
    write_failed(out_dir / "failed_utts", failed)
    return num, records[0]["dim"]


def damaged_utterances(d: DataDir, utts: list[str]) -> dict[str, str]:
    """``{utt: reason}`` of those of ``utts`` whose feats.scp / vad.scp entries are damaged.

    A header check of every entry (:func:`~deepspeaker.data.ark.scan_feature_entries`)
    before any work: a truncated or overwritten ark costs only the utterances that
    point into the damage, listed in ``failed_utts``; the others get their i-vectors.
    """
    bad = scan_feature_entries(d, utts)
    for e in bad.values():
        logger.warning("%s; no i-vector", e)
    return {utt: e.listing for utt, e in bad.items()}


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    out = args.exp / args.data.resolve().name
    return run_main(lambda: stage_or_job(
        args.job, args.nj, lambda: run(args.exp, args.data, args.nj, args.device),
        lambda job: run_job(args.exp, args.data, args.nj, job, args.device)),
        argv, outputs=[out] if args.job is None and args.exp.is_dir() else [])


if __name__ == "__main__":
    sys.exit(main())
