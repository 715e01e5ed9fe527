"""Filter a Kaldi data dir to the utterances every file agrees on (in place or into a new dir).

Keeps the utterances present in each per-utterance file that exists (utt2spk,
wav.scp or segments, feats.scp, vad.scp, utt2num_frames, utt2dur), drops recordings
no segment uses, filters the per-speaker files, rebuilds spk2utt and sorts
everything.  With one argument it works in place as Kaldi's ``utils/fix_data_dir.sh
DIR`` does, keeping the files it changes in ``DIR/.backup/``; with two, SRC is left
untouched (so a rerun gives the same DST).

What it cannot fix it refuses, naming ``file:line``, before anything is written: an
unparsable line, a duplicate id, an id that is not valid UTF-8 (convert the file, e.g.
``iconv -f latin1 -t utf-8``, and rename the ids; ``wav.scp`` paths may hold any bytes
and are written back as read).

    python -m deepspeaker.bin.fix_data_dir DIR
    python -m deepspeaker.bin.fix_data_dir SRC DST
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ..data import fix_data_dir
from ._cli import run_main

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m deepspeaker.bin.fix_data_dir",
                                description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", type=Path, help="data dir to read (and fix, when DST is not given)")
    p.add_argument("dst", type=Path, nargs="?", default=None,
                   help="data dir to write; default: fix SRC in place, with a backup")
    return p


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    return run_main(lambda: fix_data_dir(args.src, args.dst), argv)

if __name__ == "__main__":
    sys.exit(main())
