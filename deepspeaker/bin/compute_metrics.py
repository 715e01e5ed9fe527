"""EER, minDCF and ACC of a Kaldi score file over a trials file, or of a labelled score file.

    python -m deepspeaker.bin.compute_metrics [--p-target 0.01] [--json out.json] TRIALS SCORES
    python -m deepspeaker.bin.compute_metrics [--p-target 0.01] [--json out.json] SCORES4

TRIALS is ``enroll test target|nontarget`` (Kaldi's) and SCORES ``enroll test score``.
SCORES4 is a 4-column file ``enroll test score label`` (label ``target|nontarget`` or
``1|0``, the form many tools write), which needs no trials file.  Metrics need labels:
a 2-column trial list (``enroll test``, which the scorers accept) is refused with a
message saying so, unless the score file is a 4-column one that brings the labels;
given both a labelled list and a 4-column file, their labels must agree.

Every trial must have a score (a missing one is an error naming the trial and its
line); scores for trials not in the list are ignored, as Kaldi's tools do.  A score
that is not a finite number (``nan``, ``inf``, ``abc``) or a trial scored twice is an
error naming ``SCORES:line`` (``deepspeaker.scoring.trials.read_scores``).  ACC is
reported when the trials form the paper's anchor groups (1 positive + negatives per
test utterance), otherwise it is shown as n/a.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

import numpy as np

from ..scoring.metrics import Metrics, ScoringError, compute_metrics
from ..scoring.trials import (Trial, read_labelled_scores, read_scores, read_trials,
                              score_columns, scores_for_trials)
from ..utils import DeepSpeakerError, atomic_write
from ._cli import run_main

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m deepspeaker.bin.compute_metrics",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--p-target", type=float, default=0.01)
    p.add_argument("--c-miss", type=float, default=1.0)
    p.add_argument("--c-fa", type=float, default=1.0)
    p.add_argument("--json", type=Path, help="also write the metrics here as JSON")
    p.add_argument("trials", type=Path, nargs="?",
                   help="the trials file (not needed with a 4-column score file)")
    p.add_argument("scores", type=Path)
    return p


def _labels_agree(trials: list[Trial], labelled: list[Trial], trials_path, scores_path) -> None:
    """A labelled list and a 4-column score file must say the same of every trial."""
    label = {(t.enroll, t.test): (t.target, i) for i, t in enumerate(labelled)}
    for i, t in enumerate(trials):
        theirs = label.get((t.enroll, t.test))
        if theirs is not None and theirs[0] != t.target:
            word = {True: "target", False: "nontarget"}
            raise ScoringError(f"trial '{t.enroll} {t.test}' is {word[t.target]} in "
                               f"{trials_path}:{i + 1} but {word[theirs[0]]} here",
                               path=scores_path, line=theirs[1] + 1)


def scored_trials(trials_path: Path | None, scores_path: Path) -> tuple[list[Trial], np.ndarray]:
    """(labelled trials, their scores) from a trials file + score file, or a 4-column file."""
    four = score_columns(scores_path) == 4
    if trials_path is None:
        if not four:
            raise ScoringError("a score file without a trials file must have 4 columns, "
                               "'enroll test score target|nontarget'; for 'enroll test score' "
                               "give the trials file first (compute_metrics TRIALS SCORES)",
                               path=scores_path)
        return read_labelled_scores(scores_path)
    trials = read_trials(trials_path, need_labels=not four)
    if not four:
        return trials, scores_for_trials(trials, read_scores(scores_path), trials_path, scores_path)
    labelled, values = read_labelled_scores(scores_path)
    scores = scores_for_trials(trials, dict(zip(((t.enroll, t.test) for t in labelled), values)),
                               trials_path, scores_path)
    if trials[0].target is None:  # a 2-column list: the labels are the score file's
        label = {(t.enroll, t.test): t.target for t in labelled}
        trials = [t._replace(target=label[(t.enroll, t.test)]) for t in trials]
    else:
        _labels_agree(trials, labelled, trials_path, scores_path)
    return trials, scores


def evaluate(trials_path: Path | None, scores_path: Path, p_target=0.01, c_miss=1.0,
             c_fa=1.0) -> Metrics:
    trials, scores = scored_trials(trials_path, scores_path)
    labels = np.array([t.target for t in trials])
    anchors = [t.test for t in trials]
    return compute_metrics(scores, labels, anchors, p_target, c_miss, c_fa)


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)

    def work() -> None:
        m = evaluate(args.trials, args.scores, args.p_target, args.c_miss, args.c_fa)
        print(m.format())
        if args.json:
            with atomic_write(args.json) as f:
                json.dump(dataclasses.asdict(m), f, indent=1)

    return run_main(work, argv, echo=False, user_errors=(DeepSpeakerError, ValueError, OSError))

if __name__ == "__main__":
    sys.exit(main())
