"""Keep a seeded fraction of the speakers of a data dir (training-size study, paper T7, E4).

    python -m deepspeaker.bin.subset_data_dir [--seed 0] --speaker-fraction 0.25 SRC DST

The speakers kept are the first ``round(fraction * n)`` of one seeded permutation, so
the subsets for different fractions are nested.  Features and VAD entries are kept,
not recomputed.  SRC is left untouched; DST must be another dir.

Rerun rule (:mod:`deepspeaker.marker`): ``DST/.subset.done`` holds the signature of
the subset (seed, fraction and every data-dir file of SRC).  The same signature is a
no-op; another one redoes the subset, since it is derived data, not a trained model.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ..data.fix import subset_speakers
from ..data.table import KNOWN_FILES
from ..marker import Marker, signature
from ._cli import run_main

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m deepspeaker.bin.subset_data_dir",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--speaker-fraction", type=float, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("src", type=Path)
    p.add_argument("dst", type=Path)
    return p


def subset_data_dir(src: Path, dst: Path, fraction: float, seed: int) -> None:
    """Write the subset unless ``DST/.subset.done`` already records this signature.

    A subset is derived data: another signature redoes it (``Marker.outputs_current``,
    which clears the marker first; it is written last).
    """
    sig = signature(inputs=[src / name for name in KNOWN_FILES],
                    options={"seed": seed, "speaker_fraction": fraction})
    marker = Marker(dst / ".subset.done")
    if marker.outputs_current(sig, [dst / "utt2spk"]):
        logger.info("%s: up to date (same seed, fraction and source), nothing to do", dst)
        return
    subset_speakers(src, dst, fraction, seed)
    marker.write(sig)


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    return run_main(lambda: subset_data_dir(args.src, args.dst, args.speaker_fraction,
                                            args.seed), argv)


if __name__ == "__main__":
    sys.exit(main())
