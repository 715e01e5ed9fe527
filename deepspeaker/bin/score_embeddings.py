"""Stage 9: cosine scores of a trial list from one embedding set, or several fused (E2, E3).

    python -m deepspeaker.bin.score_embeddings [--enroll2utt FILE] \\
        [--asnorm-cohort TRAIN_SCP ... --asnorm-data TRAIN_DATA [--asnorm-top-n 300]] \\
        DATA TRIALS SCORES EMBEDDING_SCP [EMBEDDING_SCP ...]

One scp: cosine between unit embeddings.  Several: embedding fusion (paper §5.1.3):
per utterance the unit embeddings of the systems are summed and renormalised, then
scored by cosine.  An enrollment id listed in ``--enroll2utt`` is a model of k
utterances: their embeddings averaged and renormalised (paper T8).

TRIALS is ``enroll test target|nontarget`` or Kaldi's unlabelled ``enroll test``.
With ``--asnorm-cohort`` (the training set's embeddings, once per EMBEDDING_SCP) the
scores written are AS-normalised (``deepspeaker.scoring.asnorm``): the cohort is one
vector per speaker of ``--asnorm-data``'s utt2spk, fused like the trials' vectors;
``--asnorm-save NPZ`` keeps that cohort for the Python API and ``deepspeaker verify``.

A trial (or enrollment model) naming an id that is not an utterance of DATA is an
error naming file and line, and nothing is written.  A trial whose utterances are in
DATA but have no embedding (listed in the extraction's ``failed``) is left out and
listed with the reason in ``SCORES.skipped``; so is one whose embedding cannot be
scored (NaN or infinite values, all zeros: warned, naming the utterance and the scp).
Output: Kaldi's ``enroll test score``.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from ..data import DataDir
from ..data.ark import read_vectors
from ..scoring.asnorm import (DEFAULT_LEVEL, DEFAULT_TOP_N, Cohort, add_asnorm_options, asnorm_cosine_trials,
                              build_cohort, check_asnorm_options, effective_top_n,
                              read_cohort_vectors)
from ..scoring.embedding import cosine_trials, fuse_embeddings, usable_vectors
from ..scoring.trials import (check_trial_ids, read_enroll2utt, read_trials, write_scores,
                              write_skipped)
from ._cli import run_main

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m deepspeaker.bin.score_embeddings",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--enroll2utt", type=Path, help="model -> utterances for k-utterance enrollment")
    p.add_argument("data", type=Path, help="the data dir the trials are drawn from")
    p.add_argument("trials", type=Path)
    p.add_argument("scores", type=Path)
    p.add_argument("embeddings", type=Path, nargs="+",
                   help="embedding.scp of one system, or of several to fuse")
    add_asnorm_options(p, several=True)
    return p


def load_cohort(scps: list[Path], data: Path, level: str = DEFAULT_LEVEL["cosine"]) -> Cohort:
    """The AS-norm cohort of one system, or of a fusion (the same fusion as the trials')."""
    systems = []
    for scp in scps:
        vectors, utt2spk = read_cohort_vectors(scp, data)
        systems.append(vectors)
    vectors = systems[0] if len(systems) == 1 else fuse_embeddings(systems)
    return build_cohort(vectors, utt2spk, unit_length=True, source=" + ".join(map(str, scps)),
                        level=level)


def run(data: Path, trials_path: Path, scores_path: Path, scps: list[Path],
        enroll2utt_path: Path | None, cohort: Cohort | None = None,
        top_n: int = DEFAULT_TOP_N) -> None:
    known = set(DataDir.load(data).utt2spk)
    trials = read_trials(trials_path, need_labels=False)
    models = read_enroll2utt(enroll2utt_path) if enroll2utt_path else {}
    check_trial_ids(trials, trials_path, known, data, models, enroll2utt_path)
    systems, unusable = [], {}
    for scp in scps:
        emb, bad = usable_vectors(read_vectors(scp), scp)
        systems.append(emb)
        for utt, why in bad.items():
            unusable.setdefault(utt, why)
    for scp, emb in zip(scps, systems):
        extra = next((u for u in emb if u not in known), None)
        if extra is not None:
            logger.warning("%s has %s, which is not an utterance of %s: is it the right set?",
                           scp, extra, data)
    emb = systems[0] if len(systems) == 1 else fuse_embeddings(systems)
    kept, scores, skipped = cosine_trials(emb, trials, models, unusable)
    if cohort is not None:
        scores = asnorm_cosine_trials(emb, kept, scores, cohort, models, top_n)
    scores_path.parent.mkdir(parents=True, exist_ok=True)
    write_scores(scores_path, kept, scores)
    write_skipped(scores_path, skipped, "embedding")
    logger.info("%s: %d cosine scores%s%s", scores_path, len(kept),
                f" (embedding fusion of {len(scps)} systems)" if len(scps) > 1 else "",
                f", AS-norm over a cohort of {len(cohort)}, top "
                f"{effective_top_n(top_n, len(cohort))}" if cohort is not None else "")


def main(argv=None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    check_asnorm_options(parser, args, len(args.embeddings))

    def work() -> None:
        cohort = (load_cohort(args.asnorm_cohort, args.asnorm_data,
                              args.asnorm_level or DEFAULT_LEVEL["cosine"])
                  if args.asnorm_cohort else None)
        run(args.data, args.trials, args.scores, args.embeddings, args.enroll2utt, cohort,
            args.asnorm_top_n)
        if cohort is not None and args.asnorm_save is not None:
            dataclasses.replace(cohort, top_n=args.asnorm_top_n).save(args.asnorm_save)
    return run_main(work, argv, outputs=[args.scores.parent]
                    + ([args.asnorm_save.parent] if args.asnorm_save else []))


if __name__ == "__main__":
    sys.exit(main())
