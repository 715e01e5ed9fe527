"""Augmented copies of a data dir before features (Kaldi's egs/voxceleb/v2, stage 2).

    python -m deepspeaker.bin.augment_data_dir --config conf/augment.yaml --sources SRC \\
        --seed 0 --nj 2 <data-dir> <out-dir> [<log-dir>]

For ``<data-dir>`` named ``<x>`` writes the data dirs ``<out-dir>/<x>_reverb``,
``<x>_noise``, ``<x>_music``, ``<x>_babble`` (the kinds the config enables),
``<x>_sp`` (speed copies, when ``speed:`` lists factors) and ``<x>_aug``, all the
copies combined (not the clean set: the recipe combines that after features, whose
VAD the copies take with ``compute_fbank_vad --vad-from``).  The wavs are under
``<out-dir>/wav/<kind>/``.  ``SRC`` holds the source lists ``rirs/``, ``noise/``,
``music/`` and optionally ``speech/`` (each a ``wav.scp`` + ``utt2dur``); babble
without ``speech/`` is mixed from the data dir's other speakers.  See
``deepspeaker.augment.augment_dir`` for ids, ``utt2aug`` and what a copy depends on.

Rerunning: each output dir has a marker ``.augment.done`` holding the signature of
the config, the seed, the data dir's ``wav.scp``/``segments``/``utt2spk`` and the
source lists' ``wav.scp``.  The same signature everywhere: nothing is done.  Jobs
(``utils/run_jobs.sh``, log ``<log-dir>/augment.JOB.log``, default
``<out-dir>/log``) leave a ``.done`` each under ``<out-dir>/.augment_<x>/``, so a rerun
after a crash redoes only the unfinished ones.  An unreadable utterance, RIR or noise
file fails the copies that need it (listed in each dir's ``failed_utts``); the stage
fails when more than ``--max-failed-fraction`` of the copies failed.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

import numpy as np

from ..augment.augment_dir import (
    SOURCE_DIRS,
    SPEED,
    augment_utts,
    load_sources,
    read_records,
    write_copy_dir,
    write_records,
)
from ..augment.config import (
    KINDS,
    AugmentConfig,
    augment_config_from_dict,
    load_augment_config,
)
from ..data import DataDir, require_valid_data_dir
from ..data.combine import combine_data_dirs
from ..jobs import JobProgress, JobWatch, prepare_outputs, run_jobs
from ..marker import Marker, signature
from ..utils import DeepSpeakerError, atomic_write, save_yaml
from ._cli import run_main

logger = logging.getLogger(__name__)

MARKER = ".augment.done"
INPUTS = ("wav.scp", "segments", "utt2spk")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m deepspeaker.bin.augment_data_dir",
                                description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, help="augmentation YAML (conf/augment.yaml); "
                   "default: Kaldi v2's four kinds, no speed copies")
    p.add_argument("--sources", type=Path, help="dir with rirs/, noise/, music/ [speech/] lists")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--nj", type=int, default=4, help="number of jobs")
    p.add_argument("--job", type=int, help="internal: run only this job (1-based) of --nj")
    p.add_argument("--max-failed-fraction", type=float, default=0.05,
                   help="fail when more than this fraction of the copies failed")
    p.add_argument("data", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("log_dir", type=Path, nargs="?")
    return p


def enabled_kinds(cfg: AugmentConfig) -> list[str]:
    return [k for k in KINDS if k in cfg.kinds] + ([SPEED] if cfg.speed else [])


def work_dir(out: Path, name: str) -> Path:
    return out.resolve() / f".augment_{name}"


def run_job(data_dir: Path, out: Path, cfg: AugmentConfig, sources: Path | None, seed: int,
            nj: int, job: int) -> None:
    """Write the copies of one contiguous share of the sorted utterances."""
    d = DataDir.load(data_dir)
    work = work_dir(out, data_dir.resolve().name)
    done_path = work / f".done.{job}"
    if done_path.exists():
        logger.info("job %d: already complete (%s)", job, done_path)
        return
    utts = [list(p) for p in np.array_split(np.array(d.utts, dtype=object), nj)][job - 1]
    logger.info("job %d/%d: %d utterances of %s", job, nj, len(utts), data_dir)
    srcs = load_sources(sources, cfg, cfg.kinds, d)
    progress = JobProgress(len(utts))
    done, failed = augment_utts(d, utts, out.resolve(), cfg, srcs, seed, progress)
    progress.finish()
    write_records(work / f"copies.{job}.jsonl", done, failed)
    with atomic_write(done_path) as f:
        f.write(f"{len(done)} ok {len(failed)} failed\n")
    logger.info("job %d: %d copies written, %d failed", job, len(done), len(failed))


def augment_signature(data_dir: Path, sources: Path | None, cfg: AugmentConfig,
                      seed: int) -> dict:
    lists = [] if sources is None else [sources.resolve() / s / "wav.scp"
                                        for s in sorted(set(SOURCE_DIRS.values()))]
    return signature(config=cfg.to_dict(),
                     inputs=[data_dir.resolve() / f for f in INPUTS] + lists,
                     options={"seed": seed,
                              "sources": None if sources is None else str(sources.resolve())})


def augment_data_dir(data_dir: Path, out: Path, sources: Path | None = None,
                     cfg: AugmentConfig | None = None, seed: int = 0, nj: int = 4,
                     log_dir: Path | None = None, max_failed_fraction: float = 0.05
                     ) -> tuple[int, dict[str, str]]:
    """Make (or keep, when current) every copy dir; returns ``(num copies, failed)``."""
    cfg = cfg or AugmentConfig()
    kinds = enabled_kinds(cfg)
    if not kinds:
        raise DeepSpeakerError("the config enables no kind of copy (kinds: [] and no speed:)")
    require_valid_data_dir(data_dir)
    d = DataDir.load(data_dir)
    name = data_dir.resolve().name
    load_sources(sources, cfg, cfg.kinds, d)  # a missing list fails before any job
    sig = augment_signature(data_dir, sources, cfg, seed)
    dirs = {k: out / f"{name}_{k}" for k in kinds + ["aug"]}
    current = [Marker(p / MARKER).outputs_current(sig, [p / "wav.scp", p / "utt2spk"])
               for p in dirs.values()]
    if all(current):
        logger.info("%s: copies of %s are current (%s); nothing to do", out, data_dir,
                    ", ".join(str(p) for p in dirs.values()))
        failed = {}
        for k in kinds:
            failed.update(DataDir.load(dirs[k]).failed_utts or {})
        return len(DataDir.load(dirs["aug"]).utt2spk), failed
    nj = max(1, min(nj, len(d.utts)))
    _run_jobs(data_dir, out, log_dir or out / "log", cfg, sources, seed, sig, nj)
    done, failed = [], []
    for job in range(1, nj + 1):
        dn, fl = read_records(work_dir(out, name) / f"copies.{job}.jsonl")
        done += dn
        failed += fl
    for k in kinds:
        write_copy_dir(d, dirs[k], k, done, failed)
    combine_data_dirs(dirs["aug"], [dirs[k] for k in kinds])
    total = len(done) + len(failed)
    if total and len(failed) / total > max_failed_fraction:
        raise DeepSpeakerError(f"{out}: {len(failed)} of {total} copies failed "
                               f"({100 * len(failed) / total:.1f}% > "
                               f"{100 * max_failed_fraction:.1f}%); reasons in the failed_utts "
                               f"of {', '.join(str(dirs[k]) for k in kinds)}")
    for p in dirs.values():
        Marker(p / MARKER).write(sig)
    logger.info("%s: %d copies of %d utterances in %s%s", out, len(done), len(d.utts),
                ", ".join(p.name for p in dirs.values()),
                f"; {len(failed)} failed" if failed else "")
    return len(done), {r["utt"]: r["reason"] for r in failed}


def _run_jobs(data_dir: Path, out: Path, log_dir: Path, cfg: AugmentConfig,
              sources: Path | None, seed: int, sig: dict, nj: int) -> None:
    """Run the jobs that have not finished under this signature and ``nj``.

    First the output dirs are checked writable and the temp files of killed jobs are
    removed (:mod:`deepspeaker.jobs`; the wavs' under ``<out>/wav`` too).
    """
    work = work_dir(out, data_dir.resolve().name)
    copy_dirs = sorted(out.glob(f"{data_dir.resolve().name}_*"))
    prepare_outputs([out, work, log_dir], temps_in=[work, *copy_dirs], temps_under=[out / "wav"])
    jobs = Marker(work / ".jobs.done")
    jobs_sig = {**sig, "options": {**sig["options"], "nj": nj}}
    if not jobs.matches(jobs_sig):
        for path in work.glob(".done.*"):
            path.unlink()
        jobs.write(jobs_sig)
    saved = work / "augment.yaml"
    save_yaml(saved, cfg.to_dict())
    todo = [j for j in range(1, nj + 1) if not (work / f".done.{j}").exists()]
    if not todo:
        logger.info("%s: all %d jobs already complete", work, nj)
        return
    logger.info("%s: augmenting in %d jobs (%d to run)", data_dir, nj, len(todo))
    cmd = [sys.executable, "-m", "deepspeaker.bin.augment_data_dir", "--config", str(saved),
           "--seed", str(seed), "--nj", str(nj), "--job", "JOB"]
    if sources is not None:
        cmd += ["--sources", str(sources.resolve())]
    cmd += [str(data_dir.resolve()), str(out.resolve())]
    # run_jobs.sh joins its arguments and runs them with bash (as run.pl): quote them.
    full = [f"JOB=1:{nj}", str(log_dir / "augment.JOB.log")] + [shlex.quote(c) for c in cmd]
    watch = JobWatch.of_jobs(log_dir / "augment.JOB.log", nj, todo,
                             len(DataDir.load(data_dir).utts),
                             f"augmenting {data_dir.resolve().name}")
    if run_jobs(full, watch) != 0:
        raise DeepSpeakerError(f"{data_dir}: augmentation jobs failed (see {log_dir}); rerun "
                               f"the same command to redo only the unfinished jobs")


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)

    def work() -> None:
        if args.job is None:
            cfg = load_augment_config(args.config)
            augment_data_dir(args.data, args.out, args.sources, cfg, args.seed, args.nj,
                             args.log_dir, args.max_failed_fraction)
            return
        if not 1 <= args.job <= args.nj:
            raise DeepSpeakerError(f"--job {args.job} outside 1..{args.nj}")
        from ..utils import load_yaml

        cfg = augment_config_from_dict(load_yaml(args.config), str(args.config))
        run_job(args.data, args.out, cfg, args.sources, args.seed, args.nj, args.job)

    return run_main(work, argv)


if __name__ == "__main__":
    sys.exit(main())
