"""The union of data dirs, as Kaldi's ``utils/combine_data.sh``.

    python -m deepspeaker.bin.combine_data_dir <dest-dir> <src-dir> [<src-dir> ...]

Per-utterance and per-speaker files are unioned, spk2utt rebuilt; a file that not
every source has is dropped with a warning (segments excepted: whole-recording
segments are made for the sources without); an utterance in two sources is an error
naming both.  See ``deepspeaker.data.combine``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..data.combine import combine_data_dirs
from ._cli import run_main


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m deepspeaker.bin.combine_data_dir",
                                description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dest", type=Path)
    p.add_argument("sources", type=Path, nargs="+")
    return p


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    return run_main(lambda: combine_data_dirs(args.dest, args.sources) and None, argv,
                    outputs=[args.dest])


if __name__ == "__main__":
    sys.exit(main())
