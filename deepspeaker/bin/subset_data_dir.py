"""Keep a seeded fraction of the speakers of a data dir (training-size study, paper T7, E4).

    python -m deepspeaker.bin.subset_data_dir [--seed 0] --speaker-fraction 0.25 SRC DST

The speakers kept are the first ``round(fraction * n)`` of one seeded permutation, so
the subsets for different fractions are nested.  Features and VAD entries are kept,
not recomputed.  SRC is left untouched; DST must be another dir.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..data.fix import subset_speakers
from ._cli import run_main


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m deepspeaker.bin.subset_data_dir",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--speaker-fraction", type=float, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("src", type=Path)
    p.add_argument("dst", type=Path)
    return p


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    return run_main(lambda: subset_speakers(args.src, args.dst, args.speaker_fraction, args.seed),
                    argv)


if __name__ == "__main__":
    sys.exit(main())
