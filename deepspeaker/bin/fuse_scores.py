"""Stage 10a: score fusion (paper §5.1.3, E3): z-normalise each system's scores, add.

    python -m deepspeaker.bin.fuse_scores TRIALS OUT SCORES_1 SCORES_2 [SCORES_3 ...]

Each system's scores are normalised with the mean and standard deviation of all its
scores on TRIALS, then summed trial by trial.  A trial some system left out on
purpose (its ``SCORES_i.skipped``) is left out of the fusion and listed in
``OUT.skipped``; any other trial without a score is an error naming it, and so is a
score that is not a finite number (naming ``file:line``); nothing is written then.
TRIALS may be labelled or Kaldi's unlabelled ``enroll test``: fusion needs no labels.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ..scoring.embedding import fuse_scores
from ..scoring.trials import (read_scores, read_skipped, read_trials, scores_for_trials,
                              write_scores, write_skipped)
from ._cli import run_main

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m deepspeaker.bin.fuse_scores",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("trials", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("scores", type=Path, nargs="+", help="score files of two or more systems")
    return p


def run(trials_path: Path, out: Path, score_paths: list[Path]) -> None:
    trials = read_trials(trials_path, need_labels=False)  # fusion needs no labels
    systems, skipped_by = [], {}
    for path in score_paths:
        skip = read_skipped(path)
        kept = [t for t in trials if (t.enroll, t.test) not in skip]
        # Every trial not listed as skipped must have a score (an error names it).
        values = scores_for_trials(kept, read_scores(path), trials_path, path)
        systems.append({(t.enroll, t.test): v for t, v in zip(kept, values)})
        for key in skip:
            skipped_by.setdefault(key, []).append(str(path))
    kept, fused = fuse_scores(systems, trials, [str(p) for p in score_paths])
    out.parent.mkdir(parents=True, exist_ok=True)
    write_scores(out, kept, fused)
    left_out = [(t, ["a score in " + " and ".join(skipped_by[(t.enroll, t.test)])])
                for t in trials if (t.enroll, t.test) in skipped_by]
    write_skipped(out, left_out, "fusion")
    logger.info("%s: %d fused scores of %d systems", out, len(kept), len(score_paths))


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    if len(args.scores) < 2:
        get_parser().error("score fusion needs at least two score files")
    return run_main(lambda: run(args.trials, args.out, args.scores), argv,
                    outputs=[args.out.parent])


if __name__ == "__main__":
    sys.exit(main())
