"""Stage 4a: total-variability matrix by EM with minimum divergence (paper §4.2; SPEC B2).

    python -m deepspeaker.bin.train_ivector_extractor data/train exp/ivector

Reads ``exp/ivector/config.yaml`` and ``models/ubm.npz``; writes
``models/extractor.npz``.  The EM objective is logged each iteration and must not
decrease beyond numerical noise.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from ..ivector.extractor import IvectorExtractor, train_extractor
from ..ivector.pipeline import load_exp_config, load_ubm, set_stats, write_failed
from ._cli import run_main

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m deepspeaker.bin.train_ivector_extractor",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("data", type=Path)
    p.add_argument("exp", type=Path)
    return p


def run(data: Path, exp: Path) -> Path:
    cfg = load_exp_config(exp)
    out = exp / "models" / "extractor.npz"
    if out.exists():
        ext = IvectorExtractor.load(out)
        logger.info("%s exists (rank %d); nothing to do", out, ext.T.shape[2])
        return out
    ubm = load_ubm(exp, cfg)
    t0 = time.time()
    failed: dict[str, str] = {}
    keys, n, f = set_stats(data, ubm, cfg, failed)
    write_failed(exp / "log" / f"extractor_failed_utts_{data.name}", failed)
    logger.info("stats of %d utterances (%.0f frames) in %.1f s", len(keys), n.sum(), time.time() - t0)
    e = cfg.extractor
    ext = train_extractor(ubm, n, f, rank=e.rank, num_iters=e.num_iters, seed=e.seed,
                          min_divergence=e.min_divergence)
    ext.save(out, meta={"ubm": str(exp / "models" / "ubm.npz"), "data": str(data)})
    logger.info("wrote %s in %.1f s", out, time.time() - t0)
    return out


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    return run_main(lambda: run(args.data, args.exp), argv)


if __name__ == "__main__":
    sys.exit(main())
