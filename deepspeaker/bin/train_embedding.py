"""Train a Deep Speaker embedding network: softmax pre-training or triplet fine-tuning.

Paper §3.4, §4.3.  One rank::

    python -m deepspeaker.bin.train_embedding --config conf/rescnn_softmax.yaml \\
        data/train data/dev exp/rescnn_softmax

N ranks (gloo on CPU, nccl on GPU)::

    torchrun --nproc_per_node 2 -m deepspeaker.bin.train_embedding --config conf/X.yaml \\
        [--init exp/rescnn_softmax/best.pt] data/train data/dev exp/<tag>

Writes exp/<tag>/{config.yaml,last.pt,best.pt,train_log.tsv} (rank 0 only) and one log
per rank under exp/<tag>/log/.  Rerunning the same command continues from last.pt, or
does nothing when training has finished.  A rerun with another config (other than
device, amp, channels_last, max_memory_gb, save/log_every_steps), other training or
dev data or another --init checkpoint is refused, naming what differs: to train
again, ``rm -r exp/<tag>`` and rerun.
"""

from __future__ import annotations

import argparse
import logging
import sys

from deepspeaker.bin._cli import run_main
from deepspeaker.nnet.distributed import cleanup, init_distributed, rank_log_file
from deepspeaker.nnet.trainer import train, train_config_from_dict
from deepspeaker.utils import load_yaml, setup_logging


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="training YAML (unknown keys are errors)")
    p.add_argument("--init", default=None,
                   help="checkpoint of another experiment to start the embedding network from "
                        "(overrides the config's init)")
    p.add_argument("--max-steps", type=int, default=None,
                   help="stop after this many optimizer steps in total (resumable)")
    p.add_argument("--device", default=None, help="auto | cpu | cuda (overrides the config)")
    p.add_argument("train_dir")
    p.add_argument("dev_dir", help="dev data dir for the per-epoch EER; '-' for none")
    p.add_argument("exp_dir")
    return p


def train_embedding(args: argparse.Namespace) -> int:
    values = load_yaml(args.config)
    if args.init is not None:
        values["init"] = args.init
    if args.device is not None:
        values["device"] = args.device
    config = train_config_from_dict(values, where=args.config)
    info = init_distributed(config.device)
    try:
        setup_logging(log_file=rank_log_file(f"{args.exp_dir}/log", info))
        logging.getLogger(__name__).info("rank %d of %d on %s: %s", info.rank, info.world_size,
                                         info.device, " ".join(sys.argv))
        train(config, args.train_dir, None if args.dev_dir == "-" else args.dev_dir,
              args.exp_dir, info, max_steps=args.max_steps)
    finally:
        cleanup(info)
    return 0


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    return run_main(lambda: train_embedding(args), argv)


if __name__ == "__main__":
    sys.exit(main())
