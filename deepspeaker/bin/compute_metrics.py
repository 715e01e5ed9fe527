"""EER, minDCF and ACC of a Kaldi score file over a trials file.

    python -m deepspeaker.bin.compute_metrics [--p-target 0.01] [--json out.json] TRIALS SCORES

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

from ..scoring.metrics import Metrics, compute_metrics
from ..scoring.trials import read_scores, read_trials, scores_for_trials
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
    p.add_argument("trials", type=Path)
    p.add_argument("scores", type=Path)
    return p


def evaluate(trials_path: Path, scores_path: Path, p_target=0.01, c_miss=1.0, c_fa=1.0) -> Metrics:
    trials = read_trials(trials_path)
    scores = scores_for_trials(trials, read_scores(scores_path), trials_path, scores_path)
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
