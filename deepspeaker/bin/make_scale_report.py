"""Stage 11 of egs/mini_scale: ``EXP/RESULTS.md`` of the training-size study.

    python -m deepspeaker.bin.make_scale_report [--title T] --sizes "250 1000 4000" \\
        [--utts-per-spk 8] EXP DATA

Reads the experiments ``EXP/spk<N>`` (and ``DATA/spk<N>/eval``) of every size that has
run and ``EXP/timing.tsv``, and writes the table, the plot (``EXP/report/scale.png``),
the crossover, the paper's claims at each size and the per-stage costs
(:mod:`deepspeaker.scoring.scale_study`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..scoring.scale_study import write_study
from ..utils import DeepSpeakerError
from ._cli import run_main


def sizes(text: str) -> list[int]:
    try:
        values = [int(w) for w in text.split()]
    except ValueError:
        values = []
    if not values or any(v <= 0 for v in values) or values != sorted(set(values)):
        raise DeepSpeakerError(f"--sizes '{text}': numbers of training speakers, ascending")
    return values


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m deepspeaker.bin.make_scale_report",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--title", default="Training-size study")
    p.add_argument("--sizes", required=True, help="the sizes of the study, e.g. \"250 1000 4000\"")
    p.add_argument("--utts-per-spk", type=int, default=8)
    p.add_argument("exp", type=Path)
    p.add_argument("data", type=Path)
    return p


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)

    def work():
        out = write_study(args.exp, args.data, sizes(args.sizes), args.utts_per_spk, args.title)
        print(out.read_text())
    return run_main(work, argv, outputs=[args.exp])


if __name__ == "__main__":
    sys.exit(main())
