"""Stage 5a: LDA + length normalisation + two-covariance PLDA on training i-vectors (SPEC B3).

    python -m deepspeaker.bin.train_plda exp/ivector data/train

Reads ``exp/ivector/<train-set>/ivector.scp`` and the data dir's ``utt2spk``;
writes ``models/lda.npz`` (global mean subtraction + LDA to ``backend.lda_dim``),
``models/plda.npz`` (trained on the LDA-projected, length-normalised i-vectors) and
their marker ``models/.plda.done``.  A rerun with the same ``backend`` config,
training i-vectors and ``utt2spk`` does nothing; with another it refuses, keeping
both models, and says what changed: ``rm -r exp/ivector`` and rerun to redo them.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

from ..data import DataDir
from ..ivector.lda import length_normalize, train_lda
from ..data.ark import read_vectors
from ..ivector.pipeline import load_exp_config, stage_signature
from ..ivector.plda import train_plda
from ..marker import Marker
from ..utils import DeepSpeakerError
from ._cli import run_main

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m deepspeaker.bin.train_plda",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("exp", type=Path)
    p.add_argument("data", type=Path, help="the training data dir (for utt2spk)")
    return p


def run(exp: Path, data: Path) -> None:
    cfg = load_exp_config(exp)
    lda_path, plda_path = exp / "models" / "lda.npz", exp / "models" / "plda.npz"
    scp = exp / data.resolve().name / "ivector.scp"
    marker = Marker(exp / "models" / ".plda.done")
    sig = stage_signature(cfg, ("backend",), exp, [data / "utt2spk"], [scp])
    if marker.model_current(sig, [lda_path, plda_path], f"{lda_path} + {plda_path.name}",
                        exp):
        logger.info("%s and %s are up to date (same backend config, i-vectors and utt2spk, "
                    "%s); nothing to do", lda_path, plda_path, marker.path)
        return
    vecs = read_vectors(scp)
    utt2spk = DataDir.load(data).utt2spk
    unknown = sorted(set(vecs) - set(utt2spk))
    if unknown:
        raise DeepSpeakerError(f"{len(unknown)} i-vectors name utterances not in {data}/utt2spk, "
                               f"e.g. {unknown[0]}")
    keys = sorted(vecs)
    x = np.stack([vecs[k] for k in keys])
    labels = [utt2spk[k] for k in keys]
    lda = train_lda(x, labels, cfg.backend.lda_dim)
    lda.save(lda_path, meta={"data": str(data)})
    y = length_normalize(lda.apply(x))
    plda = train_plda(y, labels, cfg.backend.plda)
    plda.save(plda_path, meta={"lda_dim": cfg.backend.lda_dim, "data": str(data)})
    marker.write(sig)
    logger.info("LDA %d -> %d and PLDA on %d i-vectors of %d speakers", x.shape[1],
                cfg.backend.lda_dim, len(keys), len(set(labels)))


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    return run_main(lambda: run(args.exp, args.data), argv)


if __name__ == "__main__":
    sys.exit(main())
