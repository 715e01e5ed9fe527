"""Write ``EXP_DIR/system.yaml``: what an experiment is, for the report to read.

    python -m deepspeaker.bin.describe_system exp/gru_softmax_triplet --kind deepspeaker \\
        --model gru --strategy softmax_triplet --train-set data/train [--fraction 0.25] \\
        [--source ../mini/exp/gru_softmax_triplet] [--init exp/gru_softmax/best.pt]
    python -m deepspeaker.bin.describe_system exp/fusion --kind fusion \\
        --members "rescnn_softmax_triplet gru_softmax_triplet"
    python -m deepspeaker.bin.describe_system exp/gru_softmax_triplet --show train_set

Fields: see :mod:`deepspeaker.scoring.experiment`.  A deepspeaker system without
``--model`` takes it from ``EXP_DIR/config.yaml`` (the training config);
``--no-augmentation`` marks the ablation twin trained without data augmentation.
``--show FIELD`` prints one field of an existing ``system.yaml`` (nothing when it is
unset), for the shell stages: stage 9 trains a system's PLDA on its ``train_set``.

A network or i-vector system also gets ``EXP_DIR/feature.yaml``: a copy of the stage-1
config its training set was made with (of its ``--source``'s, for a model of another
recipe), so that the experiment carries its front end when it is moved or shared
(``deepspeaker.load`` reads it first).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from ..scoring.experiment import (FEATURE_FILE, KINDS, STRATEGIES, SYSTEM_FILE, SystemInfo,
                                  locate_feature_config, read_system_info, write_system_info)
from ..utils import ConfigError, atomic_write, dataclass_from_dict, load_yaml
from ._cli import run_main


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m deepspeaker.bin.describe_system",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("exp_dir", type=Path)
    p.add_argument("--kind", choices=KINDS, help="what the experiment is (required but with --show)")
    p.add_argument("--model", default=None)
    p.add_argument("--strategy", default=None, choices=STRATEGIES)
    p.add_argument("--train-set", default=None)
    p.add_argument("--fraction", type=float, default=1.0)
    p.add_argument("--source", default=None)
    p.add_argument("--init", default=None)
    p.add_argument("--members", default="", help="space-separated experiment tags (fusion)")
    p.add_argument("--no-augmentation", action="store_true",
                   help="trained without data augmentation (the ablation twin)")
    p.add_argument("--show", default=None, metavar="FIELD",
                   choices=[f.name for f in dataclasses.fields(SystemInfo)],
                   help="print FIELD of EXP_DIR/system.yaml instead of writing it")
    return p


def show(exp_dir: Path, name: str) -> None:
    info = read_system_info(exp_dir)
    if info is None:
        raise ConfigError(f"{exp_dir / SYSTEM_FILE}: missing; describe the experiment first")
    value = getattr(info, name)
    if value not in (None, []):
        print(" ".join(value) if isinstance(value, list) else value)


def describe(args: argparse.Namespace) -> Path:
    model = args.model
    cfg = args.exp_dir / "config.yaml"
    if args.kind == "deepspeaker" and model is None:
        if not cfg.is_file():
            raise ConfigError(f"{cfg}: missing; give --model or train the experiment first")
        model = (load_yaml(cfg).get("model") or {}).get("name")
    values = {"kind": args.kind, "model": model, "strategy": args.strategy,
              "train_set": args.train_set, "fraction": args.fraction, "source": args.source,
              "init": args.init, "members": args.members.split(),
              "augmented": False if args.no_augmentation else None}
    info = dataclass_from_dict(SystemInfo, values, where=f"{args.exp_dir}/system.yaml")
    if info.kind in ("deepspeaker", "ivector"):
        copy_feature_config(args.exp_dir, info)
    return write_system_info(args.exp_dir, info)


def copy_feature_config(exp_dir: Path, info: SystemInfo) -> None:
    """``exp_dir/feature.yaml`` from the config the system's features were made with."""
    if info.source and not info.train_set:
        source = Path(info.source)
        src_info = read_system_info(source)
        found, _ = locate_feature_config(source, src_info.train_set if src_info else None)
    else:
        (exp_dir / FEATURE_FILE).unlink(missing_ok=True)  # the training set's, not an old copy
        found, _ = locate_feature_config(exp_dir, info.train_set)
    if found is None or found == exp_dir / FEATURE_FILE:
        return
    with atomic_write(exp_dir / FEATURE_FILE) as f:
        f.write(found.read_text())


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    if args.show is not None:
        return run_main(lambda: show(args.exp_dir, args.show), argv, echo=False)
    if args.kind is None:
        get_parser().error("--kind is required (but with --show)")
    return run_main(lambda: describe(args), argv, echo=False)


if __name__ == "__main__":
    sys.exit(main())
