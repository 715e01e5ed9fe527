"""The simple reference system: 20-MFCC mean + std per utterance, cosine scoring.

    python -m deepspeaker.bin.score_mfcc_stats <data-dir> <trials> <scores-out>

Each utterance becomes the mean and standard deviation of its voiced-frame MFCC
(20 + 20 = 40-d, cepstra taken from the stored fbank); every dimension is z-scored
over the utterances of the data dir, and a trial's score is the cosine of its two
vectors.  It is the bar the embedded corpus is calibrated against (it must not be
trivially separable) and the bar the i-vector system has to clear.  Trials may name
k-utterance models through ``--enroll2utt``; their vector is the mean of the
members' vectors.

A trial naming an id that is not an utterance of the data dir is an error naming
file and line.  A trial whose utterances have no vector (no features, fewer than 2
voiced frames) is left out and listed with the reason in ``SCORES.skipped``, as
every scorer does (:func:`deepspeaker.scoring.embedding.trials_with_vectors`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

from ..data import DataDir
from ..data.ark import read_utt_features
from ..features import select_voiced
from ..features import mfcc_from_fbank
from ..scoring.embedding import trials_with_vectors
from ..scoring.trials import (check_trial_ids, read_enroll2utt, read_trials, write_scores,
                              write_skipped)
from ..utils import DeepSpeakerError
from ._cli import run_main

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m deepspeaker.bin.score_mfcc_stats",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--num-ceps", type=int, default=20)
    p.add_argument("--enroll2utt", type=Path, help="model -> utterances map for k-utt trials")
    p.add_argument("data", type=Path)
    p.add_argument("trials", type=Path)
    p.add_argument("scores", type=Path)
    return p


def utterance_stats(data: Path, num_ceps: int = 20) -> dict[str, np.ndarray]:
    """Voiced-frame MFCC mean and std of every utterance with features, z-scored over the set."""
    d = DataDir.load(data)
    if d.feats_scp is None or d.vad_scp is None:
        raise DeepSpeakerError(f"{data}: needs feats.scp and vad.scp (run stage 1 first)")
    stats = {}
    for utt in sorted(set(d.feats_scp) & set(d.vad_scp)):
        feats = select_voiced(*read_utt_features(d, utt))
        if len(feats) < 2:
            logger.warning("%s: fewer than 2 voiced frames; no MFCC stats", utt)
            continue
        c = mfcc_from_fbank(feats, num_ceps).astype(np.float64)
        stats[utt] = np.r_[c.mean(0), c.std(0)]
    if not stats:
        raise DeepSpeakerError(f"{data}: no utterance has voiced frames")
    keys = sorted(stats)
    x = np.stack([stats[k] for k in keys])
    x = (x - x.mean(0)) / np.maximum(x.std(0), 1e-8)
    return dict(zip(keys, x))


def score(data: Path, trials_path: Path, scores_path: Path, num_ceps: int = 20,
          enroll2utt_path: Path | None = None) -> None:
    trials = read_trials(trials_path)
    models = read_enroll2utt(enroll2utt_path) if enroll2utt_path else {}
    check_trial_ids(trials, trials_path, set(DataDir.load(data).utt2spk), data, models,
                    enroll2utt_path)
    vecs = utterance_stats(data, num_ceps)
    kept, skipped = trials_with_vectors(trials, vecs, models)
    for model in sorted({t.enroll for t in kept} & set(models)):
        vecs[model] = np.mean([vecs[u] for u in models[model]], axis=0)
    unit = {k: v / np.linalg.norm(v) for k, v in vecs.items()}
    scores = [float(unit[t.enroll] @ unit[t.test]) for t in kept]
    write_scores(scores_path, kept, scores)
    write_skipped(scores_path, skipped, "MFCC stats")
    logger.info("%s: %d scores", scores_path, len(scores))


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    return run_main(lambda: score(args.data, args.trials, args.scores, args.num_ceps,
                                  args.enroll2utt), argv, user_errors=(DeepSpeakerError, ValueError),
                    outputs=[args.scores.parent])


if __name__ == "__main__":
    sys.exit(main())
