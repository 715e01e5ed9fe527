"""Stage 3: diagonal GMM-UBM on a seeded subset of voiced MFCC frames (paper §4.2; SPEC B1).

    python -m deepspeaker.bin.train_ubm --config conf/ivector.yaml data/train exp/ivector

Writes ``exp/ivector/config.yaml`` (the merged config every later i-vector stage
reads), ``exp/ivector/models/ubm.npz`` and its marker ``models/.ubm.done``.  A rerun
with the same config and training features does nothing; with another config (any
section: config.yaml is the experiment's one config) or other features it refuses,
keeping the UBM, and says what changed: ``rm -r exp/ivector`` and rerun to redo it.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from ..ivector.pipeline import (feature_files, iter_frontend, read_config, save_exp_config,
                                stage_signature, write_failed)
from ..ivector.ubm import sample_frames, train_ubm
from ..data.ark import require_readable_features
from ..marker import Marker
from ._cli import run_main

logger = logging.getLogger(__name__)

# Every section: a changed backend refuses here, before anything runs, not at stage 5.
SECTIONS = ("frontend", "ubm", "stats", "extractor", "backend")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m deepspeaker.bin.train_ubm",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, help="i-vector config YAML (unknown keys are errors)")
    p.add_argument("data", type=Path, help="training data dir with feats.scp and vad.scp")
    p.add_argument("exp", type=Path, help="experiment dir")
    return p


def run(data: Path, exp: Path, config: Path | None) -> Path:
    cfg = read_config(config)
    out = exp / "models" / "ubm.npz"
    marker = Marker(exp / "models" / ".ubm.done")
    sig = stage_signature(cfg, SECTIONS, exp, feature_files(data))
    current = marker.model_current(sig, [out], str(out), exp)  # or refuses
    save_exp_config(exp, cfg)
    if current:
        logger.info("%s is up to date (same config and features, %s); nothing to do", out,
                    marker.path)
        return out
    # a header check of every entry: stop before any work on a damaged ark
    require_readable_features(data)
    t0 = time.time()
    failed: dict[str, str] = {}
    try:
        frames = sample_frames((x for _, x in iter_frontend(data, cfg.frontend, failed=failed)),
                               cfg.ubm.max_frames, cfg.ubm.seed)
    finally:
        # Also when no utterance was usable: the list says why.
        write_failed(exp / "log" / f"ubm_failed_utts_{data.name}", failed)
    logger.info("training a %d-component diagonal UBM on %d x %d frames",
                cfg.ubm.num_components, *frames.shape)
    ubm = train_ubm(frames, cfg.ubm.num_components, max_iter=cfg.ubm.max_iter, seed=cfg.ubm.seed)
    ubm.save(out, meta={"frontend": cfg.to_dict()["frontend"], "data": str(data)})
    marker.write(sig)
    logger.info("wrote %s in %.1f s", out, time.time() - t0)
    return out


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    return run_main(lambda: run(args.data, args.exp, args.config), argv, outputs=[args.exp])


if __name__ == "__main__":
    sys.exit(main())
