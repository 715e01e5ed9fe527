"""Stage 5b: score a trial list with PLDA (or cosine) on i-vectors (SPEC B3).

    python -m deepspeaker.bin.score_plda [--method plda|cosine] [--enroll2utt FILE] \\
        exp/ivector data/eval TRIALS SCORES

I-vectors pass the training global mean subtraction, LDA and length normalisation.
An enrollment id listed in ``--enroll2utt`` is a model of k utterances: with PLDA it
is scored the way ``ivector-plda-scoring --num-utts`` does (the k vectors are
averaged and the model's uncertainty shrinks with k), not as one plain average; with
cosine the k vectors are averaged and renormalised.  A trial naming an utterance the
data dir does not have is an error; one naming an utterance that has no i-vector (no
voiced frames) is left out and listed in ``SCORES.skipped`` with the reason (the one
rule of every scorer: :func:`deepspeaker.scoring.embedding.trials_with_vectors`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

from ..data import DataDir
from ..ivector.lda import LdaTransform, length_normalize
from ..data.ark import read_vectors
from ..ivector.pipeline import load_exp_config
from ..ivector.plda import TwoCovPLDA, cosine_scores
from ..scoring.embedding import trials_with_vectors
from ..scoring.trials import (check_trial_ids, read_enroll2utt, read_trials, write_scores,
                              write_skipped)
from ._cli import run_main

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m deepspeaker.bin.score_plda",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--method", choices=("plda", "cosine"), default="plda")
    p.add_argument("--enroll2utt", type=Path, help="model -> utterances for k-utterance enrollment")
    p.add_argument("exp", type=Path)
    p.add_argument("data", type=Path)
    p.add_argument("trials", type=Path)
    p.add_argument("scores", type=Path)
    return p


def run(exp: Path, data: Path, trials_path: Path, scores_path: Path, method: str,
        enroll2utt_path: Path | None) -> None:
    load_exp_config(exp)
    vecs = read_vectors(exp / data.resolve().name / "ivector.scp")
    known = set(DataDir.load(data).utt2spk)
    trials = read_trials(trials_path)
    models = read_enroll2utt(enroll2utt_path) if enroll2utt_path else {}
    check_trial_ids(trials, trials_path, known, data, models, enroll2utt_path)

    lda = LdaTransform.load(exp / "models" / "lda.npz")
    keys = sorted(vecs)
    y = length_normalize(lda.apply(np.stack([vecs[k] for k in keys])))
    proj = dict(zip(keys, y))

    kept, skipped = trials_with_vectors(trials, proj, models)
    enroll = {e: np.stack([proj[u] for u in models.get(e, [e])]) for e in {t.enroll for t in kept}}
    test = {t.test: proj[t.test] for t in kept}
    if method == "plda":
        plda = TwoCovPLDA.load(exp / "models" / "plda.npz")
        scores = plda.score(enroll, test, kept)
    elif kept:
        e = np.stack([enroll[t.enroll].mean(0) for t in kept])
        scores = cosine_scores(e, np.stack([test[t.test] for t in kept]))
    else:
        scores = np.zeros(0)
    write_scores(scores_path, kept, scores)
    write_skipped(scores_path, skipped, "i-vector")
    logger.info("%s: %d %s scores", scores_path, len(kept), method)


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    return run_main(lambda: run(args.exp, args.data, args.trials, args.scores, args.method,
                                args.enroll2utt), argv)


if __name__ == "__main__":
    sys.exit(main())
