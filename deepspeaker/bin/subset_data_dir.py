"""Keep a seeded fraction of the speakers of a data dir (training-size study, paper T7, E4),
or the utterances of a list.

    python -m deepspeaker.bin.subset_data_dir [--seed 0] --speaker-fraction 0.25 SRC DST
    python -m deepspeaker.bin.subset_data_dir --utt-list LIST SRC DST

The speakers kept are the first ``round(fraction * n)`` of one seeded permutation, so
the subsets for different fractions are nested.  ``--utt-list`` (Kaldi's
``subset_data_dir.sh --utt-list``): the utterances named by the first field of each line
of LIST; an id that SRC does not have is an error naming LIST:line (Kaldi would keep the
rest silently).  Features and VAD entries are kept, not recomputed.  SRC is left
untouched; DST must be another dir.

Rerun rule (:mod:`deepspeaker.marker`): ``DST/.subset.done`` holds the signature of
the subset (seed, fraction and every data-dir file of SRC).  The same signature is a
no-op; another one redoes the subset, since it is derived data, not a trained model.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ..data import DataDir
from ..data.fix import restrict, subset_speakers
from ..data.table import KNOWN_FILES, iter_lines
from ..marker import Marker, signature
from ..utils import DeepSpeakerError
from ._cli import run_main

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m deepspeaker.bin.subset_data_dir",
                                description=__doc__.split("\n\n")[0])
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--speaker-fraction", type=float)
    how.add_argument("--utt-list", type=Path, help="keep the utterances named in this file")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("src", type=Path)
    p.add_argument("dst", type=Path)
    return p


def subset_data_dir(src: Path, dst: Path, fraction: float | None, seed: int,
                    utt_list: Path | None = None) -> None:
    """Write the subset unless ``DST/.subset.done`` already records this signature.

    A subset is derived data: another signature redoes it (``Marker.outputs_current``,
    which clears the marker first; it is written last).
    """
    if utt_list is None:
        sig = signature(inputs=[src / name for name in KNOWN_FILES],
                        options={"seed": seed, "speaker_fraction": fraction})
    else:
        sig = signature(inputs=[src / name for name in KNOWN_FILES] + [utt_list],
                        options={"utt_list": str(utt_list)})
    marker = Marker(dst / ".subset.done")
    if marker.outputs_current(sig, [dst / "utt2spk"]):
        logger.info("%s: up to date (same seed, fraction and source), nothing to do", dst)
        return
    if utt_list is None:
        subset_speakers(src, dst, fraction, seed)
    else:
        subset_utterances(src, dst, utt_list)
    marker.write(sig)


def subset_utterances(src: Path, dst: Path, utt_list: Path) -> None:
    """Write to ``dst`` the utterances of ``src`` that ``utt_list`` names."""
    if dst.resolve() == src.resolve():
        raise DeepSpeakerError(f"{dst}: the subset is a new dir; it must differ from {src}")
    data = DataDir.load(src)
    keep = set()
    for ln in iter_lines(utt_list):
        fields = ln.fields()
        if not fields:
            continue
        if fields[0] not in data.utt2spk:
            raise DeepSpeakerError(f"utterance '{fields[0]}' is not in {src}/utt2spk",
                                   path=utt_list, line=ln.lineno)
        keep.add(fields[0])
    if not keep:
        raise DeepSpeakerError("names no utterance", path=utt_list)
    restrict(data, keep, dst, filter_failed=True).write(dst)
    logger.info("%s: %d of %d utterances of %s (%s)", dst, len(keep), len(data.utt2spk), src,
                utt_list)


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    return run_main(lambda: subset_data_dir(args.src, args.dst, args.speaker_fraction,
                                            args.seed, args.utt_list), argv,
                    outputs=[args.dst])


if __name__ == "__main__":
    sys.exit(main())
