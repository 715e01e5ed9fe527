"""Stage 8: Deep Speaker embeddings of every utterance of a data dir (SPEC layout).

    python -m deepspeaker.bin.extract_embeddings [--checkpoint best.pt] [--max-frames 3000] \\
        [--batch-size 32] [--nj 4] [--device auto] [--force] exp/rescnn_softmax_triplet data/eval

writes ``EXP/<set>/embedding.{ark,scp}`` (512-d unit vectors, float32) and
``EXP/<set>/failed`` for utterances that could not be embedded.  The network comes
from ``EXP/config.yaml`` (the training config) and the checkpoint's weights; a rerun
with the same checkpoint, features and options does nothing.  Uses CUDA when present
(``--device auto``).  With ``--nj`` > 1 the work is split into jobs (logs in
``EXP/<set>/log/extract.JOB.log``) whose outputs are merged into the same files, byte
for byte, as one process writes; a rerun after a failed job redoes only the unfinished
jobs.  See :mod:`deepspeaker.nnet.extract` and :mod:`deepspeaker.nnet.extract_jobs`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..nnet.extract import ExtractOptions, extract_embeddings
from ..utils import DeepSpeakerError
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
    p.add_argument("--block-size", type=int, default=d.block_size,
                   help="listed utterances read and batched together; jobs get whole blocks "
                   "(default %(default)s)")
    p.add_argument("--nj", type=int, default=1,
                   help="number of jobs (at most one per block); 1 embeds in this process")
    p.add_argument("--job", type=int, help="internal: run only this job (1-based) of --nj")
    p.add_argument("--device", default=d.device,
                   help="auto | cpu | cuda[:N]; jobs on cuda without N use GPU (JOB-1) %% count")
    p.add_argument("--out-dir", type=Path, help="default EXP/<name of the data dir>")
    p.add_argument("--force", action="store_true", help="extract again even if up to date")
    p.add_argument("exp", type=Path)
    p.add_argument("data", type=Path)
    return p


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    out_dir = args.out_dir or args.exp / args.data.resolve().name

    def work():
        opts = ExtractOptions(checkpoint=args.checkpoint, max_frames=args.max_frames,
                              batch_size=args.batch_size, device=args.device,
                              block_size=args.block_size)
        if args.job is None:
            extract_embeddings(args.exp, args.data, opts, out_dir, force=args.force, nj=args.nj)
            return
        if not 1 <= args.job <= args.nj:
            raise DeepSpeakerError(f"--job {args.job} outside 1..{args.nj}")
        from ..nnet.extract_jobs import run_job

        run_job(args.exp, args.data, out_dir, opts, args.nj, args.job)
    return run_main(work, argv, outputs=[out_dir] if args.exp.is_dir() else [])


if __name__ == "__main__":
    sys.exit(main())
