"""The union of data dirs, as Kaldi's ``utils/combine_data.sh``.

    python -m deepspeaker.bin.combine_data_dir [--prefix P ...] <dest-dir> <src-dir> [<src-dir> ...]

Per-utterance and per-speaker files are unioned, spk2utt rebuilt; a file that not
every source has is dropped with a warning (segments excepted: whole-recording
segments are made for the sources without); an utterance in two sources is an error
naming both.  ``--prefix``, once per source in the same order, puts a corpus prefix in
front of its utterance and speaker ids (Kaldi's ``copy_data_dir.sh --utt-prefix
--spk-prefix``), so that several corpora's speakers stay apart.  See
``deepspeaker.data.combine``.
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
    p.add_argument("--prefix", action="append", default=None, metavar="P",
                   help="id prefix of the next source (once per source, in order)")
    p.add_argument("dest", type=Path)
    p.add_argument("sources", type=Path, nargs="+")
    return p


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    return run_main(lambda: combine_data_dirs(args.dest, args.sources, args.prefix) and None, argv,
                    outputs=[args.dest])


if __name__ == "__main__":
    sys.exit(main())
