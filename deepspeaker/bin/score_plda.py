"""Stage 5b / 9b: score a trial list with PLDA (or cosine) on i-vectors or embeddings (SPEC B3).

    python -m deepspeaker.bin.score_plda [--method plda|cosine] [--enroll2utt FILE] \\
        exp/ivector data/eval TRIALS SCORES
    python -m deepspeaker.bin.score_plda --vectors exp/gru_softmax_triplet/eval/embedding.scp \\
        [--enroll2utt FILE] exp/gru_softmax_triplet data/eval TRIALS SCORES [TRIALS SCORES ...]
    python -m deepspeaker.bin.score_plda --asnorm-cohort exp/ivector/train/ivector.scp \\
        --asnorm-data data/train [--asnorm-top-n 300] exp/ivector data/eval TRIALS SCORES

Without ``--vectors``: the i-vectors ``EXP/<set>/ivector.scp`` and the models of
``EXP/models`` (train_plda).  With ``--vectors``: those vectors and the back end that
``train_plda --vectors`` trained in ``EXP/backend``.  Vectors pass the training global mean subtraction, LDA and length normalisation.
An enrollment id listed in ``--enroll2utt`` is a model of k utterances: with PLDA it
is scored the way ``ivector-plda-scoring --num-utts`` does (the k vectors are
averaged and the model's uncertainty shrinks with k), not as one plain average; with
cosine the k vectors are averaged and renormalised.  TRIALS is ``enroll test
target|nontarget`` or Kaldi's unlabelled ``enroll test``.

With ``--asnorm-cohort`` (the training set's vectors, of the same kind as the scored
ones) the scores written are AS-normalised (``deepspeaker.scoring.asnorm``), the
cohort in the back end's space (after LDA and length normalisation) and scored as the
trials are: for PLDA every utterance of ``--asnorm-data``'s utt2spk, for cosine one
mean vector per speaker (``--asnorm-level`` chooses otherwise).

A trial naming an utterance the
data dir does not have is an error; one naming an utterance that has no i-vector (no
voiced frames) is left out and listed in ``SCORES.skipped`` with the reason (the one
rule of every scorer: :func:`deepspeaker.scoring.embedding.trials_with_vectors`); so is
one whose vector cannot be scored (NaN or infinite values, all zeros), with a warning.
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
from ..scoring.asnorm import (DEFAULT_LEVEL, DEFAULT_TOP_N, add_asnorm_options, asnorm_plda_trials,
                              asnorm_trials, build_cohort, check_asnorm_options,
                              cosine_cohort_scores, effective_top_n, read_cohort_vectors)
from ..scoring.embedding import trials_with_vectors, usable_vectors
from ..scoring.trials import (check_trial_ids, read_enroll2utt, read_trials, write_scores,
                              write_skipped)
from ..utils import DeepSpeakerError
from ._cli import run_main
from .train_plda import BACKEND_DIR

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m deepspeaker.bin.score_plda",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--method", choices=("plda", "cosine"), default="plda")
    p.add_argument("--enroll2utt", type=Path, help="model -> utterances for k-utterance enrollment")
    p.add_argument("--vectors", type=Path, default=None,
                   help="the vectors' scp (embeddings, back end in EXP/backend); "
                        "default: EXP's i-vectors")
    p.add_argument("exp", type=Path)
    p.add_argument("data", type=Path)
    p.add_argument("trials", type=Path)
    p.add_argument("scores", type=Path)
    p.add_argument("more", type=Path, nargs="*", metavar="TRIALS SCORES",
                   help="more (trial list, score file) pairs, scored in the same run")
    add_asnorm_options(p)
    return p


def run(exp: Path, data: Path, trials_path: Path, scores_path: Path, method: str,
        enroll2utt_path: Path | None, vectors: Path | None = None,
        cohort_inputs: tuple[dict, dict, Path] | None = None, top_n: int = DEFAULT_TOP_N,
        cohort_level: str | None = None):
    """Score one list; ``cohort_inputs``: (training vectors, their utt2spk, scp) for AS-norm.

    Returns the AS-norm cohort it built (in the back end's space), or None."""
    if vectors is None:
        load_exp_config(exp)
        models_dir, what = exp / "models", "i-vector"
        vectors_scp = exp / data.resolve().name / "ivector.scp"
    else:
        models_dir, what, vectors_scp = exp / BACKEND_DIR, "embedding", vectors
    # Checked before LDA: a zero vector would come out of it as a plausible one.
    vecs, unusable = usable_vectors(read_vectors(vectors_scp), vectors_scp)
    known = set(DataDir.load(data).utt2spk)
    trials = read_trials(trials_path, need_labels=False)
    models = read_enroll2utt(enroll2utt_path) if enroll2utt_path else {}
    check_trial_ids(trials, trials_path, known, data, models, enroll2utt_path)

    if vectors is not None and not (models_dir / "lda.npz").is_file():
        raise DeepSpeakerError(f"{models_dir}/lda.npz not found: train the back end first "
                               f"(python -m deepspeaker.bin.train_plda --vectors ... {exp} ...)")
    lda = LdaTransform.load(models_dir / "lda.npz")

    def project(v: dict) -> dict:
        keys = sorted(v)
        return dict(zip(keys, length_normalize(lda.apply(np.stack([v[k] for k in keys]))))) \
            if keys else {}

    proj = project(vecs)

    kept, skipped = trials_with_vectors(trials, proj, models, unusable)
    enroll = {e: np.stack([proj[u] for u in models.get(e, [e])]) for e in {t.enroll for t in kept}}
    test = {t.test: proj[t.test] for t in kept}
    if method == "plda":
        plda = TwoCovPLDA.load(models_dir / "plda.npz")
        scores = plda.score(enroll, test, kept)
    elif kept:
        e = np.stack([enroll[t.enroll].mean(0) for t in kept])
        scores = cosine_scores(e, np.stack([test[t.test] for t in kept]))
    else:
        scores = np.zeros(0)
    cohort = None
    if cohort_inputs is not None:
        cohort = build_cohort(project(cohort_inputs[0]), cohort_inputs[1],
                              unit_length=method == "cosine", source=cohort_inputs[2],
                              level=cohort_level or DEFAULT_LEVEL[method], top_n=top_n)
        scores = _asnorm(method, models_dir, proj, enroll, test, kept, scores, models, cohort,
                         top_n)
        method = f"{method} + AS-norm (top {effective_top_n(top_n, len(cohort))} of a cohort " \
                 f"of {len(cohort)})"
    Path(scores_path).parent.mkdir(parents=True, exist_ok=True)
    write_scores(scores_path, kept, scores)
    write_skipped(scores_path, skipped, what)
    logger.info("%s: %d %s scores", scores_path, len(kept), method)
    return cohort


def _asnorm(method, models_dir, proj, enroll, test, kept, scores, models, cohort, top_n):
    """AS-norm of one list's scores, each side scored against the cohort as the trials were."""
    if method == "plda":
        plda = TwoCovPLDA.load(models_dir / "plda.npz")
        return asnorm_plda_trials(plda, proj, kept, scores, cohort, models, top_n)

    def enroll_side(ids):  # the trials' cosine: the mean of the model's vectors, any length
        return cosine_cohort_scores(np.stack([enroll[e].mean(0) for e in ids]), cohort)

    def test_side(ids):
        return cosine_cohort_scores(np.stack([test[t] for t in ids]), cohort)

    return asnorm_trials(kept, scores, enroll_side, test_side, top_n)


def main(argv=None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    if len(args.more) % 2:
        parser.error(f"TRIALS SCORES come in pairs; {args.more[-1]} has no score file")
    check_asnorm_options(parser, args)
    pairs = [(args.trials, args.scores)] + list(zip(args.more[::2], args.more[1::2]))

    def work():
        cohort_inputs = None
        if args.asnorm_cohort is not None:
            vectors, utt2spk = read_cohort_vectors(args.asnorm_cohort, args.asnorm_data)
            cohort_inputs = (vectors, utt2spk, args.asnorm_cohort)
        # One process for every list of a system: each start pays for the imports.
        for trials, scores in pairs:
            cohort = run(args.exp, args.data, trials, scores, args.method, args.enroll2utt,
                         args.vectors, cohort_inputs, args.asnorm_top_n, args.asnorm_level)
        if cohort is not None and args.asnorm_save is not None:
            cohort.save(args.asnorm_save)
    outputs = {s.parent for _, s in pairs} | ({args.asnorm_save.parent} if args.asnorm_save else set())
    return run_main(work, argv, outputs=sorted(outputs))


if __name__ == "__main__":
    sys.exit(main())
