"""Stage 3: diagonal GMM-UBM on a seeded subset of voiced MFCC frames (paper §4.2; SPEC B1).

    python -m deepspeaker.bin.train_ubm --config conf/ivector.yaml data/train exp/ivector

Writes ``exp/ivector/config.yaml`` (the merged config every later i-vector stage
reads) and ``exp/ivector/models/ubm.npz``.  Skips the work when the UBM exists.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from ..ivector.pipeline import init_exp, iter_frontend, write_failed
from ..ivector.ubm import DiagGmm, sample_frames, train_ubm
from ._cli import run_main

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m deepspeaker.bin.train_ubm",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, help="i-vector config YAML (unknown keys are errors)")
    p.add_argument("data", type=Path, help="training data dir with feats.scp and vad.scp")
    p.add_argument("exp", type=Path, help="experiment dir")
    return p


def run(data: Path, exp: Path, config: Path | None) -> Path:
    cfg = init_exp(exp, config)
    out = exp / "models" / "ubm.npz"
    if out.exists():
        ubm = DiagGmm.load(out)
        logger.info("%s exists (%d components, %d-d); nothing to do", out, ubm.num_components, ubm.dim)
        return out
    t0 = time.time()
    failed: dict[str, str] = {}
    frames = sample_frames((x for _, x in iter_frontend(data, cfg.frontend, failed=failed)),
                           cfg.ubm.max_frames, cfg.ubm.seed)
    write_failed(exp / "log" / f"ubm_failed_utts_{data.name}", failed)
    logger.info("training a %d-component diagonal UBM on %d x %d frames",
                cfg.ubm.num_components, *frames.shape)
    ubm = train_ubm(frames, cfg.ubm.num_components, max_iter=cfg.ubm.max_iter, seed=cfg.ubm.seed)
    ubm.save(out, meta={"frontend": cfg.to_dict()["frontend"], "data": str(data)})
    logger.info("wrote %s in %.1f s", out, time.time() - t0)
    return out


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    return run_main(lambda: run(args.data, args.exp, args.config), argv)


if __name__ == "__main__":
    sys.exit(main())
