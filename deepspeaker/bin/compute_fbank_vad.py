"""Stage 1: 64-d log mel fbank and energy VAD for a data dir (paper §4.3; SPEC F1, F2).

    python -m deepspeaker.bin.compute_fbank_vad [--config conf/fbank_vad.yaml] [--nj 4] \\
        [--vad-from <clean-dir>] \\
        <data-dir> [<log-dir> [<feat-dir>]]

Writes ``feats.scp`` (float32 matrices), ``vad.scp`` (0/1 float vectors, Kaldi's
``compute-vad-energy`` output), ``utt2num_frames`` and, if any utterance failed,
``failed_utts`` (``utt reason``) into the data dir.  The arks go to ``<feat-dir>``
(default ``<data-dir>/data``), logs to ``<log-dir>`` (default ``<data-dir>/log``), one
per job as ``make_fbank_vad.JOB.log``.

Rerunning: the data dir's marker ``.fbank_vad.done``, written last, records the
parsed config, the inputs (``wav.scp``, ``segments``, ``utt2spk``) and the feature
dir.  A rerun with the same signature does nothing, without starting a job; another
config or input recomputes the set.  ``--nj`` is how, not what: changing it on a
finished set redoes nothing.

The work is split into ``--nj`` jobs run by ``utils/run_jobs.sh``; each job writes
its arks under temp names, renames them when complete and leaves a ``.done``
marker, so a rerun after a crash or Ctrl-C redoes only the jobs that had not
finished (as long as the signature and ``--nj`` are those the jobs started with).
A bad utterance (missing, corrupt, empty, too short, wrong rate, several channels,
NaN) is listed with its reason and the others finish; the stage fails only if more
than ``--max-failed-fraction`` of the utterances failed.

VAD of augmented copies (Kaldi v2): with ``--vad-from <clean-dir>``, an utterance
whose ``utt2uniq`` source has a VAD in ``<clean-dir>/vad.scp`` of the same frame
count gets that VAD instead of the one of its own (noisy) audio: on 5-15 dB copies
the energy VAD marks nearly every frame voiced.  Copies of another length (speed
copies) keep their own.  The option, ``utt2uniq`` and the clean ``vad.scp`` are part
of the signature; each job logs how many VADs it took from the clean dir.

Features are stored raw: per-utterance mean/variance normalisation over voiced
frames (F3) is applied when they are read (``deepspeaker.features.prepare_features``),
so the same ark serves the i-vector front end and the networks.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data.ark import ArkWriter, load_scp_table
from ..data import DataDir, iter_audio, read_kaldi_map, require_valid_data_dir, write_kaldi_map
from ..features import FbankOptions, VadOptions, compute_fbank_batch, compute_vad_energy
from ..jobs import JobProgress, JobWatch, prepare_outputs, run_jobs
from ..marker import Marker, signature
from ..utils import DeepSpeakerError, atomic_write, dataclass_from_dict, load_yaml, save_yaml
from ._cli import run_main

logger = logging.getLogger(__name__)

MARKER = ".fbank_vad.done"
# What the features of an utterance depend on, besides the config (utt2spk: which utterances).
INPUTS = ("wav.scp", "segments", "utt2spk")
OUTPUTS = ("feats.scp", "vad.scp", "utt2num_frames")


@dataclass
class FeatureConfig:
    """The stage's config file: ``fbank:`` and ``vad:`` sections, nothing else."""

    fbank: FbankOptions = field(default_factory=FbankOptions)
    vad: VadOptions = field(default_factory=VadOptions)

    @classmethod
    def from_dict(cls, d: dict, where: str | None = None) -> "FeatureConfig":
        """The checked config; a ConfigError names ``where`` (default: the file ``d`` was
        read from, see ``load_yaml``) and the dotted key, e.g. ``fbank.dither``."""
        return dataclass_from_dict(cls, d, where)

    def to_dict(self) -> dict:
        return {"fbank": dataclasses.asdict(self.fbank), "vad": dataclasses.asdict(self.vad)}


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m deepspeaker.bin.compute_fbank_vad",
                                description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, help="YAML with fbank: and vad: sections "
                   "(unknown keys are errors); defaults are Kaldi's with 64 mel bins")
    p.add_argument("--nj", type=int, default=4, help="number of jobs")
    p.add_argument("--job", type=int, help="internal: run only this job (1-based) of --nj")
    p.add_argument("--batch-size", type=int, default=32,
                   help="utterances per batched fbank call")
    p.add_argument("--max-failed-fraction", type=float, default=0.05,
                   help="fail the stage when more than this fraction of utterances failed")
    p.add_argument("--vad-from", type=Path, metavar="CLEAN_DIR",
                   help="take each utterance's VAD from its utt2uniq source in "
                   "CLEAN_DIR/vad.scp when the frame counts agree (augmented copies)")
    p.add_argument("data", type=Path)
    p.add_argument("log_dir", type=Path, nargs="?")
    p.add_argument("feat_dir", type=Path, nargs="?")
    return p


def split_utts(utts: list[str], nj: int) -> list[list[str]]:
    """Contiguous, near-equal shares of the sorted utterance list (as Kaldi's split_scp)."""
    return [list(part) for part in np.array_split(np.array(utts, dtype=object), nj)]


def job_paths(feat_dir: Path, name: str, job: int) -> dict[str, Path]:
    return {
        "feats_ark": feat_dir / f"raw_fbank_{name}.{job}.ark",
        "feats_scp": feat_dir / f"raw_fbank_{name}.{job}.scp",
        "vad_ark": feat_dir / f"vad_{name}.{job}.ark",
        "vad_scp": feat_dir / f"vad_{name}.{job}.scp",
        "utt2num_frames": feat_dir / f"utt2num_frames_{name}.{job}",
        "failed": feat_dir / f"failed_utts_{name}.{job}",
        "done": feat_dir / f".done_{name}.{job}",
    }


def clean_vads(data: DataDir, vad_from: Path | None):
    """``(utt2uniq, lazy clean vad.scp)`` for ``--vad-from``, or ``({}, {})`` without it."""
    if vad_from is None:
        return {}, {}
    scp = vad_from / "vad.scp"
    if not scp.is_file():
        raise DeepSpeakerError("--vad-from needs the clean dir's VAD (run this stage on it "
                               "first)", path=scp)
    if data.utt2uniq is None:
        raise DeepSpeakerError("--vad-from needs utt2uniq (copy -> clean utterance)",
                               path=data.path / "utt2uniq")
    return data.utt2uniq, load_scp_table(scp)


def run_job(data_dir: Path, feat_dir: Path, cfg: FeatureConfig, nj: int, job: int,
            batch_size: int, vad_from: Path | None = None) -> None:
    """Compute fbank + VAD for one share of the utterances; bad ones are listed, not fatal."""
    import torch

    torch.set_num_threads(1)  # nj jobs already run side by side
    d = DataDir.load(data_dir)
    name = data_dir.resolve().name
    utts = split_utts(d.utts, nj)[job - 1]
    utt2uniq, clean_vad = clean_vads(d, vad_from)
    taken = 0
    paths = job_paths(feat_dir, name, job)
    if paths["done"].exists():
        logger.info("job %d: already complete (%s); nothing to do", job, paths["done"])
        return
    logger.info("job %d/%d: %d utterances of %s", job, nj, len(utts), data_dir)
    t0 = time.time()
    feats_w = ArkWriter(paths["feats_ark"], paths["feats_scp"])
    vad_w = ArkWriter(paths["vad_ark"], paths["vad_scp"])
    num_frames: dict[str, str] = {}
    failed: dict[str, str] = {}
    seconds = 0.0
    progress = JobProgress(len(utts))
    try:
        batch: list[tuple[str, np.ndarray]] = []

        def flush() -> None:
            nonlocal seconds, taken
            if not batch:
                return
            results = compute_fbank_batch([x for _, x in batch], cfg.fbank)
            for (utt, samples), (fbank, log_energy) in zip(batch, results):
                if not np.all(np.isfinite(fbank)):
                    failed[utt] = "fbank has NaN or infinite values"
                    logger.error("%s: fbank has NaN or infinite values; skipped", utt)
                    continue
                vad = compute_vad_energy(log_energy, **dataclasses.asdict(cfg.vad))
                src = utt2uniq.get(utt)
                if src is not None and src != utt and src in clean_vad:
                    clean = np.asarray(clean_vad[src])
                    if clean.shape == vad.shape:
                        vad = clean
                        taken += 1
                if vad.sum() == 0:
                    logger.warning("%s: no voiced frames (%d frames); later stages will skip it",
                                   utt, len(vad))
                feats_w.write(utt, fbank.astype(np.float32, copy=False))
                vad_w.write(utt, vad.astype(np.float32, copy=False))
                num_frames[utt] = str(fbank.shape[0])
                seconds += len(samples) / cfg.fbank.sample_rate
            progress.add(len(batch))
            batch.clear()

        for utt, samples, err in iter_audio(d, utts, sample_rate=cfg.fbank.sample_rate,
                                            min_samples=cfg.fbank.frame_length_samples):
            if err is not None:
                failed[utt] = str(err).replace("\n", " ")
                logger.error("%s", err)
                progress.add()
                continue
            batch.append((utt, samples))
            if len(batch) >= batch_size:
                flush()
        flush()
        progress.finish()
        feats_w.commit()
        vad_w.commit()
    except BaseException:
        feats_w.abort()
        vad_w.abort()
        raise
    write_kaldi_map(paths["utt2num_frames"], num_frames)
    write_kaldi_map(paths["failed"], failed)
    with atomic_write(paths["done"]) as f:
        f.write(f"{len(num_frames)} ok {len(failed)} failed {taken} vad_from\n")
    if vad_from is not None:
        logger.info("job %d: VAD of %d of %d utterances taken from %s (the others: their own)",
                    job, taken, len(num_frames), vad_from / "vad.scp")
    dt = time.time() - t0
    logger.info("job %d: %d utterances done, %d failed, %.1f s of audio in %.1f s (%.0fx real time)",
                job, len(num_frames), len(failed), seconds, dt, seconds / max(dt, 1e-9))


def feature_signature(data_dir: Path, feat_dir: Path, cfg: FeatureConfig,
                      vad_from: Path | None = None) -> dict:
    """What made a data dir's features: the parsed config, the inputs, where the arks are.

    With ``--vad-from`` also the clean dir, its vad.scp and the copies' utt2uniq (without
    it the signature is what it always was, so existing markers stay valid).
    """
    inputs = [data_dir.resolve() / f for f in INPUTS]
    options = {"feat_dir": str(feat_dir)}
    if vad_from is not None:
        inputs += [data_dir.resolve() / "utt2uniq", vad_from.resolve() / "vad.scp"]
        options["vad_from"] = str(vad_from.resolve())
    return signature(config=cfg.to_dict(), inputs=inputs, options=options)


def compute_fbank_vad(data_dir: Path, log_dir: Path | None = None, feat_dir: Path | None = None,
                      config: dict | None = None, nj: int = 4, batch_size: int = 32,
                      max_failed_fraction: float = 0.05, vad_from: Path | None = None
                      ) -> tuple[int, dict[str, str]]:
    """Run all jobs (skipping finished ones), merge their outputs into the data dir.

    Does nothing when the data dir's marker holds this signature.  Returns
    ``(num_ok, failed)`` where ``failed`` maps utterance to reason.
    """
    log_dir = log_dir or data_dir / "log"
    feat_dir = (feat_dir or data_dir / "data").resolve()
    cfg = FeatureConfig.from_dict(config or {})
    marker = Marker(data_dir / MARKER)
    sig = feature_signature(data_dir, feat_dir, cfg, vad_from)
    if marker.outputs_current(sig, [data_dir / f for f in OUTPUTS]):
        d = DataDir.load(data_dir)
        logger.info("%s already has features made from this config and these inputs (%s); "
                    "nothing to do", data_dir, marker.path)
        return len(d.feats_scp or {}), dict(d.failed_utts or {})
    require_valid_data_dir(data_dir)
    d = DataDir.load(data_dir)
    clean_vads(d, vad_from)  # a missing clean vad.scp or utt2uniq fails before any job
    nj = max(1, min(nj, len(d.utts)))
    feat_dir.mkdir(parents=True, exist_ok=True)
    _run_jobs(data_dir, log_dir, feat_dir, cfg, sig, nj, batch_size, vad_from, len(d.utts))
    result = _merge(data_dir, feat_dir, d.utts, nj, max_failed_fraction)
    marker.write(sig)
    return result


def _run_jobs(data_dir: Path, log_dir: Path, feat_dir: Path, cfg: FeatureConfig, sig: dict,
              nj: int, batch_size: int, vad_from: Path | None = None, num_utts: int = 0
              ) -> None:
    """Run the jobs that have not finished under this signature and ``nj``.

    First the output dirs are checked writable (the data dir, the feature and log
    dirs) and the temp files of killed jobs are removed (:mod:`deepspeaker.jobs`).
    """
    name = data_dir.resolve().name
    prepare_outputs([data_dir, feat_dir, log_dir], temps_in=[data_dir, feat_dir])
    # The per-job .done files belong to the signature and nj recorded here; under any
    # other, every job starts again.
    jobs = Marker(feat_dir / f".jobs_{name}.done")
    jobs_sig = {**sig, "options": {**sig["options"], "nj": nj}}
    if not jobs.matches(jobs_sig):
        done = list(feat_dir.glob(f".done_{name}.*"))
        if done:
            logger.info("%s: config, inputs or --nj changed since the jobs ran; recomputing "
                        "all jobs", feat_dir)
        for path in done:
            path.unlink()
        jobs.write(jobs_sig)
    # The config the jobs read, saved beside the arks.
    saved = feat_dir / f"conf_{name}.yaml"
    save_yaml(saved, cfg.to_dict() | {"nj": nj})

    todo = [j for j in range(1, nj + 1) if not job_paths(feat_dir, name, j)["done"].exists()]
    if not todo:
        logger.info("%s: all %d jobs already complete", data_dir, nj)
        return
    logger.info("%s: computing fbank + VAD in %d jobs (%d to run)", data_dir, nj, len(todo))
    cmd = [sys.executable, "-m", "deepspeaker.bin.compute_fbank_vad", "--config", str(saved),
           "--nj", str(nj), "--job", "JOB", "--batch-size", str(batch_size)]
    if vad_from is not None:
        cmd += ["--vad-from", str(vad_from.resolve())]
    cmd += [str(data_dir.resolve()), str(log_dir.resolve()), str(feat_dir)]
    # run_jobs.sh joins its arguments and runs them with bash (as run.pl): quote them.
    watch = JobWatch.of_jobs(log_dir / "make_fbank_vad.JOB.log", nj, todo, num_utts,
                             f"fbank + VAD of {name}")
    rc = run_jobs([f"JOB=1:{nj}", str(log_dir / "make_fbank_vad.JOB.log")]
                  + [shlex.quote(c) for c in cmd], watch)
    if rc != 0:
        raise DeepSpeakerError(f"{data_dir}: feature jobs failed (see {log_dir}); rerun "
                               f"the same command to redo only the unfinished jobs")


def _merge(data_dir: Path, feat_dir: Path, utts: list[str], nj: int,
           max_failed_fraction: float) -> tuple[int, dict[str, str]]:
    """Concatenate the jobs' outputs into the data dir; check enough utterances made it."""
    name = data_dir.resolve().name
    feats, vad, frames, failed = {}, {}, {}, {}
    taken = 0
    for job in range(1, nj + 1):
        p = job_paths(feat_dir, name, job)
        feats.update(read_kaldi_map(p["feats_scp"]) if p["feats_scp"].stat().st_size else {})
        vad.update(read_kaldi_map(p["vad_scp"]) if p["vad_scp"].stat().st_size else {})
        frames.update(read_kaldi_map(p["utt2num_frames"]) if p["utt2num_frames"].stat().st_size else {})
        failed.update(read_kaldi_map(p["failed"]) if p["failed"].stat().st_size else {})
        fields = p["done"].read_text().split()
        taken += int(fields[4]) if len(fields) > 4 else 0
    write_kaldi_map(data_dir / "feats.scp", feats)
    write_kaldi_map(data_dir / "vad.scp", vad)
    write_kaldi_map(data_dir / "utt2num_frames", frames)
    failed_path = data_dir / "failed_utts"
    if failed:
        write_kaldi_map(failed_path, failed)
        for utt, reason in sorted(failed.items()):
            logger.warning("failed: %s %s", utt, reason)
    else:
        failed_path.unlink(missing_ok=True)
    missing = set(utts) - set(feats) - set(failed)
    if missing:
        raise DeepSpeakerError(f"{data_dir}: {len(missing)} utterances are neither done nor "
                               f"failed (e.g. {min(missing)}); a job output is incomplete")
    frac = len(failed) / len(utts)
    if frac > max_failed_fraction:
        raise DeepSpeakerError(f"{data_dir}: {len(failed)} of {len(utts)} utterances failed "
                               f"({100 * frac:.1f}% > {100 * max_failed_fraction:.1f}%); "
                               f"reasons in {failed_path}")
    logger.info("%s: features for %d utterances%s%s", data_dir, len(feats),
                f"; {len(failed)} failed, listed in {failed_path}" if failed else "",
                f"; VAD of {taken} taken from the clean source (--vad-from)" if taken else "")
    return len(feats), failed


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)

    def work() -> None:
        config = load_yaml(args.config) if args.config else {}
        if args.job is None:
            compute_fbank_vad(args.data, args.log_dir, args.feat_dir, config, args.nj,
                              args.batch_size, args.max_failed_fraction, args.vad_from)
            return
        if not 1 <= args.job <= args.nj:
            raise DeepSpeakerError(f"--job {args.job} outside 1..{args.nj}")
        cfg = FeatureConfig.from_dict({k: v for k, v in config.items() if k != "nj"},
                                      str(args.config))
        run_job(args.data, (args.feat_dir or args.data / "data").resolve(), cfg, args.nj,
                args.job, args.batch_size, args.vad_from)

    return run_main(work, argv)

if __name__ == "__main__":
    sys.exit(main())
