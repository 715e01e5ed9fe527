"""Stage 10b: ``EXP/RESULTS.md`` with the paper's tables (T5-T10), claims, DET plots.

    python -m deepspeaker.bin.make_report [--title T] [--eval-set eval] \\
        [--also-eval-set SET ...] [--strategy softmax_triplet] EXP DATA

Reads every experiment under EXP that describes itself in ``system.yaml`` (see
:mod:`deepspeaker.scoring.report`) and its score files against every trial list of
``DATA/<eval-set>``, recomputes every metric, and writes ``EXP/RESULTS.md`` plus
``EXP/report/det.png`` and one score histogram per system.  Each ``--also-eval-set``
(a recipe with several eval sets) adds a column block to the table "Every eval set",
from the systems' ``scores_<set>/``.  ``--strategy`` picks the
Deep Speaker systems of T8, T7 and T9/T10 (and of T6 when the fusion names no members).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..scoring.report import STRATEGY_LABELS, collect, write_report
from ._cli import run_main


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m deepspeaker.bin.make_report",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--title", default="Results")
    p.add_argument("--eval-set", default="eval", help="the main eval set (scores/)")
    p.add_argument("--also-eval-set", action="append", default=[], metavar="SET",
                   help="another eval set under DATA, scored into scores_SET/ (repeatable)")
    p.add_argument("--strategy", default="softmax_triplet", choices=sorted(STRATEGY_LABELS))
    p.add_argument("exp", type=Path)
    p.add_argument("data", type=Path)
    return p


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)

    def work():
        rep = collect(args.exp, args.data, args.eval_set, args.strategy)
        others = [collect(args.exp, args.data, e, args.strategy, main_eval_set=args.eval_set)
                  for e in args.also_eval_set]
        out = write_report(rep, args.title, others)
        print(out.read_text().split("\n## Corpus")[0])
    return run_main(work, argv)


if __name__ == "__main__":
    sys.exit(main())
