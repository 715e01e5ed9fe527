"""Export a trained Deep Speaker network to TorchScript or ONNX, with its feature settings.

    python -m deepspeaker.bin.export_model [--format onnx|torchscript] [--checkpoint best.pt] \\
        [--features data/train/data/conf_train.yaml] [--out FILE] exp/gru_softmax_triplet

writes ``EXP/export/embedder.onnx`` (or ``.pt`` for TorchScript) unless ``--out``
says otherwise: inputs ``features`` (batch, frames, 64) float32 and ``lengths``
(batch,) int64, output ``embedding`` (batch, 512), unit length; batch and length are
dynamic.  The file records the fbank, VAD and normalisation the network expects (read
them with ``deepspeaker.nnet.export.read_export_metadata``).  EXP may also be a
checkpoint file.  See :mod:`deepspeaker.nnet.export`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..nnet.export import FORMATS, default_export_path, export_model
from ..nnet.extract import ExtractOptions
from ._cli import run_main


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m deepspeaker.bin.export_model",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--format", default="onnx", help=f"{' | '.join(FORMATS)}; default %(default)s")
    p.add_argument("--checkpoint", default="best.pt",
                   help="checkpoint file in EXP (or a path); default %(default)s")
    p.add_argument("--features", type=Path, metavar="CONF",
                   help="stage-1 feature config to record (default: the one the training "
                   "features were made with, found through EXP/system.yaml)")
    p.add_argument("--max-frames", type=int, default=ExtractOptions.max_frames,
                   help="chunk length (voiced frames) to record for long utterances")
    p.add_argument("--out", type=Path, help="output file (default EXP/export/embedder.{pt,onnx})")
    p.add_argument("exp", type=Path, help="experiment dir or checkpoint file")
    return p


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)

    def work():
        exp_dir = args.exp if args.exp.is_dir() else args.exp.parent
        out = args.out or default_export_path(exp_dir, args.format)
        export_model(args.exp, out, args.format, checkpoint=args.checkpoint,
                     features=args.features, max_frames=args.max_frames)
        print(out)
    return run_main(work, argv)


if __name__ == "__main__":
    sys.exit(main())
