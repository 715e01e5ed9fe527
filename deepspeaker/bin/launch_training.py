"""Train on several processes or nodes through torchrun (the recipes' stages 6-7).

    python -m deepspeaker.bin.launch_training --nproc-per-node 2 [--nnodes 2 --node-rank K \\
        --rdzv-endpoint HEAD:PORT] [--rdzv-id ID] [--rdzv-timeout 900] [--what "stage 6"] \\
        exp/gru_softmax [--config conf/gru_softmax.yaml data/train data/dev exp/gru_softmax]

runs ``python -m torch.distributed.run ... -m deepspeaker.bin.train_embedding ARGS`` on
this node (every node runs the same command with its own --node-rank), torchrun's
output in EXP_DIR/log/torchrun.log (torchrun.node<K>.log with several nodes), and says
in one line what failed: a rendezvous that timed out, a node that could not reach it,
or the rank that failed and its error (deepspeaker/nnet/launch.py says why each option
is what it is).  Without EXP_DIR it only checks the options (the recipes do so before
their first stage); --dry-run prints the torchrun command instead of running it.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from deepspeaker.bin._cli import run_main
from deepspeaker.nnet.launch import LaunchError, launch, parse_launch_options, torchrun_command


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m deepspeaker.bin.launch_training",
                                description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nproc-per-node", default="1", help="processes on this node (GPUs, or CPU processes)")
    p.add_argument("--nnodes", default="1", help="nodes, each running this command")
    p.add_argument("--node-rank", default="0", help="this node's number, 0..nnodes-1 (0 serves the rendezvous)")
    p.add_argument("--rdzv-endpoint", default="", help="HOST:PORT of node 0 ('': 127.0.0.1, a free port)")
    p.add_argument("--rdzv-id", default="", help="put in front of the experiment's rendezvous id")
    p.add_argument("--rdzv-timeout", default="900", help="seconds to wait for every node")
    p.add_argument("--what", default="training", help="the step, for messages (e.g. 'stage 6')")
    p.add_argument("--dry-run", action="store_true", help="print the torchrun command, run nothing")
    p.add_argument("exp_dir", nargs="?", help="the experiment (its log/ gets torchrun's output)")
    p.add_argument("train_args", nargs=argparse.REMAINDER,
                   help="the arguments of deepspeaker.bin.train_embedding")
    return p


def launch_training(args: argparse.Namespace) -> int:
    opts = parse_launch_options(args.nproc_per_node, args.nnodes, args.node_rank,
                                args.rdzv_endpoint, args.rdzv_id, args.rdzv_timeout)
    if args.exp_dir is None:
        return 0
    if not args.train_args:
        raise LaunchError(f"{args.exp_dir}: no training arguments (those of {TRAIN_HINT})")
    if args.dry_run:
        print(shlex.join(torchrun_command(opts, args.exp_dir, args.train_args)))
        return 0
    launch(opts, args.exp_dir, args.train_args, what=args.what)
    return 0


TRAIN_HINT = "python -m deepspeaker.bin.train_embedding"


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    return run_main(lambda: launch_training(args), argv, echo=args.exp_dir is not None
                    and not args.dry_run)


if __name__ == "__main__":
    sys.exit(main())
