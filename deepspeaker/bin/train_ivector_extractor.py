"""Stage 4a: total-variability matrix by EM with minimum divergence (paper §4.2; SPEC B2).

    python -m deepspeaker.bin.train_ivector_extractor data/train exp/ivector

Reads ``exp/ivector/config.yaml`` and ``models/ubm.npz``; writes
``models/extractor.npz`` and its marker ``models/.extractor.done``.  The EM
objective is logged each iteration and must not decrease beyond numerical noise.
A rerun with the same config sections (frontend, stats, extractor), training
features and UBM does nothing; with another it refuses, keeping the extractor, and
says what changed: ``rm -r exp/ivector`` and rerun to redo it.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from ..ivector.extractor import train_extractor
from ..ivector.pipeline import (feature_files, load_exp_config, load_ubm, set_stats,
                                stage_signature, write_failed)
from ..data.ark import require_readable_features
from ..marker import Marker
from ._cli import run_main

logger = logging.getLogger(__name__)

SECTIONS = ("frontend", "stats", "extractor")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m deepspeaker.bin.train_ivector_extractor",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("data", type=Path)
    p.add_argument("exp", type=Path)
    return p


def run(data: Path, exp: Path) -> Path:
    cfg = load_exp_config(exp)
    out = exp / "models" / "extractor.npz"
    ubm_path = exp / "models" / "ubm.npz"
    marker = Marker(exp / "models" / ".extractor.done")
    sig = stage_signature(cfg, SECTIONS, exp, feature_files(data), [ubm_path])
    if marker.model_current(sig, [out], str(out), exp):
        logger.info("%s is up to date (same config, features and UBM, %s); nothing to do", out,
                    marker.path)
        return out
    ubm = load_ubm(exp, cfg)
    # a header check of every entry: stop before any work on a damaged ark
    require_readable_features(data)
    t0 = time.time()
    failed: dict[str, str] = {}
    keys, n, f = set_stats(data, ubm, cfg, failed)
    write_failed(exp / "log" / f"extractor_failed_utts_{data.name}", failed)
    logger.info("stats of %d utterances (%.0f frames) in %.1f s", len(keys), n.sum(), time.time() - t0)
    e = cfg.extractor
    ext = train_extractor(ubm, n, f, rank=e.rank, num_iters=e.num_iters, seed=e.seed,
                          min_divergence=e.min_divergence)
    ext.save(out, meta={"ubm": str(ubm_path), "data": str(data)})
    marker.write(sig)
    logger.info("wrote %s in %.1f s", out, time.time() - t0)
    return out


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    return run_main(lambda: run(args.data, args.exp), argv, outputs=[args.exp])


if __name__ == "__main__":
    sys.exit(main())
