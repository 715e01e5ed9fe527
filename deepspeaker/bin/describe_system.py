"""Write ``EXP_DIR/system.yaml``: what an experiment is, for the report to read.

    python -m deepspeaker.bin.describe_system exp/gru_softmax_triplet --kind deepspeaker \\
        --model gru --strategy softmax_triplet --train-set data/train [--fraction 0.25] \\
        [--source ../mini/exp/gru_softmax_triplet] [--init exp/gru_softmax/best.pt]
    python -m deepspeaker.bin.describe_system exp/fusion --kind fusion \\
        --members "rescnn_softmax_triplet gru_softmax_triplet"

Fields: see :mod:`deepspeaker.scoring.experiment`.  A deepspeaker system without
``--model`` takes it from ``EXP_DIR/config.yaml`` (the training config).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..scoring.experiment import KINDS, STRATEGIES, SystemInfo, write_system_info
from ..utils import ConfigError, dataclass_from_dict, load_yaml
from ._cli import run_main


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m deepspeaker.bin.describe_system",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("exp_dir", type=Path)
    p.add_argument("--kind", required=True, choices=KINDS)
    p.add_argument("--model", default=None)
    p.add_argument("--strategy", default=None, choices=STRATEGIES)
    p.add_argument("--train-set", default=None)
    p.add_argument("--fraction", type=float, default=1.0)
    p.add_argument("--source", default=None)
    p.add_argument("--init", default=None)
    p.add_argument("--members", default="", help="space-separated experiment tags (fusion)")
    return p


def describe(args: argparse.Namespace) -> Path:
    model = args.model
    cfg = args.exp_dir / "config.yaml"
    if args.kind == "deepspeaker" and model is None:
        if not cfg.is_file():
            raise ConfigError(f"{cfg}: missing; give --model or train the experiment first")
        model = (load_yaml(cfg).get("model") or {}).get("name")
    values = {"kind": args.kind, "model": model, "strategy": args.strategy,
              "train_set": args.train_set, "fraction": args.fraction, "source": args.source,
              "init": args.init, "members": args.members.split()}
    info = dataclass_from_dict(SystemInfo, values, where=f"{args.exp_dir}/system.yaml")
    return write_system_info(args.exp_dir, info)


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    return run_main(lambda: describe(args), argv, echo=False)


if __name__ == "__main__":
    sys.exit(main())
