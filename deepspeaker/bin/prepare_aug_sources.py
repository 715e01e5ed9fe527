"""Make the source lists of offline augmentation: RIRs, noise, music (and MUSAN speech).

Writes OUT/rirs/, OUT/noise/, OUT/music/ and, with --musan-dir, OUT/speech/: each a
``wav.scp`` and ``utt2dur`` (RIRs also ``rir2info``; files that could not be used are
listed in ``failed``).  RIRs come from a RIRS_NOISES tree (--rirs-dir) or are simulated
(shoebox rooms, image-source method); noise, music and speech come from a MUSAN tree
(--musan-dir) or noise and music are generated.  --num-* set how many are made and
count only for what is generated.  Seeded and deterministic; a rerun with the same
arguments does nothing (OUT/.sources.done), another seed or option redoes it.

    python -m deepspeaker.bin.prepare_aug_sources [--rirs-dir DIR] [--musan-dir DIR] \\
        [--seed 0] [--sample-rate 16000] [--num-rirs 200] [--num-noises 100] \\
        [--num-music 50] [--rooms small,medium] OUT
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..augment.prep import RIR_SETS, prepare_aug_sources
from ._cli import run_main


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m deepspeaker.bin.prepare_aug_sources",
                                description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path, help="directory of the source lists")
    p.add_argument("--rirs-dir", type=Path, default=None,
                   help="RIRS_NOISES folder (or its parent); default: simulate the RIRs")
    p.add_argument("--musan-dir", type=Path, default=None,
                   help="musan folder (or its parent); default: generate noise and music")
    p.add_argument("--seed", type=int, default=0, help="seed of everything generated")
    p.add_argument("--sample-rate", type=int, default=16000,
                   help="sample rate made, and required of corpus files (others are refused)")
    p.add_argument("--num-rirs", type=int, default=200, help="simulated RIRs")
    p.add_argument("--num-noises", type=int, default=100, help="generated noises (5-20 s)")
    p.add_argument("--num-music", type=int, default=50, help="generated music pieces (5-20 s)")
    p.add_argument("--rooms", default="small,medium",
                   help=f"room kinds, comma-separated: small, medium, large; with --rirs-dir "
                        f"the RIRS_NOISES sets ({', '.join(RIR_SETS)}); default: %(default)s "
                        "(as Kaldi's v2 recipe)")
    return p


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    rooms = [r for r in args.rooms.split(",") if r]
    return run_main(lambda: prepare_aug_sources(
        args.out, rirs_dir=args.rirs_dir, musan_dir=args.musan_dir, seed=args.seed,
        sample_rate=args.sample_rate, num_rirs=args.num_rirs, num_noises=args.num_noises,
        num_music=args.num_music, rooms=rooms) and None, argv)


if __name__ == "__main__":
    sys.exit(main())
