"""Stage 8: Deep Speaker embeddings of every utterance of a data dir (SPEC layout).

    python -m deepspeaker.bin.extract_embeddings [--checkpoint best.pt] [--max-frames 3000] \\
        [--batch-size 32] [--device auto] [--force] exp/rescnn_softmax_triplet data/eval

writes ``EXP/<set>/embedding.{ark,scp}`` (512-d unit vectors, float32) and
``EXP/<set>/failed`` for utterances that could not be embedded.  The network comes
from ``EXP/config.yaml`` (the training config) and the checkpoint's weights; a rerun
with the same checkpoint, features and options does nothing.  Uses CUDA when present
(``--device auto``).  See :mod:`deepspeaker.nnet.extract`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..nnet.extract import ExtractOptions, extract_embeddings
from ._cli import run_main


def get_parser() -> argparse.ArgumentParser:
    d = ExtractOptions()
    p = argparse.ArgumentParser(prog="python -m deepspeaker.bin.extract_embeddings",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default=d.checkpoint,
                   help="checkpoint file in EXP (or a path); default %(default)s")
    p.add_argument("--max-frames", type=int, default=d.max_frames,
                   help="longer utterances (voiced frames) are embedded in chunks and averaged")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--device", default=d.device, help="auto | cpu | cuda[:N]")
    p.add_argument("--force", action="store_true", help="extract again even if up to date")
    p.add_argument("exp", type=Path)
    p.add_argument("data", type=Path)
    return p


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)

    def work():
        opts = ExtractOptions(checkpoint=args.checkpoint, max_frames=args.max_frames,
                              batch_size=args.batch_size, device=args.device)
        extract_embeddings(args.exp, args.data, opts, force=args.force)
    return run_main(work, argv, outputs=[args.exp / args.data.resolve().name] if args.exp.is_dir() else [])


if __name__ == "__main__":
    sys.exit(main())
