"""Print the trial lists of an eval data dir, one name per line, in report order.

    python -m deepspeaker.bin.trial_lists data/eval

``trials``, then ``trials_enroll<k>`` by k, then any other ``trials_<name>``
(:func:`deepspeaker.scoring.experiment.trial_lists`: the same answer the report uses).
"""

from __future__ import annotations

import argparse
import sys

from ..scoring.experiment import trial_lists
from ._cli import run_main


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m deepspeaker.bin.trial_lists",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("eval_dir")
    return p


def print_lists(eval_dir: str) -> None:
    for name in trial_lists(eval_dir):
        print(name)


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    return run_main(lambda: print_lists(args.eval_dir), argv, echo=False)


if __name__ == "__main__":
    sys.exit(main())
