"""Stage 5a / 9a: global mean + LDA + length normalisation + two-covariance PLDA (SPEC B3).

    python -m deepspeaker.bin.train_plda exp/ivector data/train
    python -m deepspeaker.bin.train_plda --vectors exp/gru_softmax_triplet/train/embedding.scp \\
        --config conf/embedding_backend.yaml [--lda-dim 100] exp/gru_softmax_triplet data/train

The i-vector system (no ``--vectors``): reads ``exp/ivector/<train-set>/ivector.scp``,
the ``backend`` section of ``exp/ivector/config.yaml`` and the data dir's ``utt2spk``;
writes ``models/lda.npz``, ``models/plda.npz`` and their marker ``models/.plda.done``.

Learned embeddings (``--vectors``, Kaldi's x-vector back end): the same models trained
on the training set's embeddings with the back-end config ``--config`` (``lda_dim`` and
``plda``, :class:`deepspeaker.ivector.pipeline.BackendOptions`; ``--lda-dim`` overrides
its LDA dim), written to ``EXP/backend/{lda,plda}.npz`` with ``config.yaml`` (the
options used) and the marker ``.plda.done``.  An LDA dim beyond what the speakers allow
(speakers - 1) is lowered to that, with a warning; one beyond the rank of the
within-speaker scatter is kept and the log says how many eigenvalues were floored.

Both: a rerun with the same options, training vectors and ``utt2spk`` does nothing;
with another it refuses, keeping both models, and says what changed and what to remove.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

import numpy as np

from ..data import DataDir
from ..data.ark import read_vectors
from ..ivector.lda import length_normalize, train_lda
from ..ivector.pipeline import BackendOptions, load_exp_config, stage_signature
from ..ivector.plda import train_plda
from ..marker import Marker, file_digest, signature
from ..utils import DeepSpeakerError, dataclass_from_dict, load_yaml, save_yaml
from ._cli import run_main

logger = logging.getLogger(__name__)
BACKEND_DIR = "backend"  # EXP/backend/: the back end of a system's embeddings


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m deepspeaker.bin.train_plda",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--vectors", type=Path, default=None,
                   help="the training vectors' scp (embeddings); default: EXP's i-vectors")
    p.add_argument("--config", type=Path, default=None,
                   help="back-end config (lda_dim, plda); needed with --vectors")
    p.add_argument("--lda-dim", type=int, default=None, help="overrides lda_dim of --config")
    p.add_argument("exp", type=Path)
    p.add_argument("data", type=Path, help="the training data dir (for utt2spk)")
    return p


def training_vectors(scp: Path, data: Path, what: str) -> tuple[np.ndarray, list[str]]:
    """(vectors by sorted utterance, their speakers); every vector's utterance must be in utt2spk."""
    vecs = read_vectors(scp)
    if not vecs:
        raise DeepSpeakerError(f"no {what}s", path=scp)
    utt2spk = DataDir.load(data).utt2spk
    unknown = sorted(set(vecs) - set(utt2spk))
    if unknown:
        raise DeepSpeakerError(f"{len(unknown)} {what}s name utterances not in {data}/utt2spk, "
                               f"e.g. {unknown[0]}")
    keys = sorted(vecs)
    return np.stack([vecs[k] for k in keys]), [utt2spk[k] for k in keys]


def fit_backend(x: np.ndarray, labels: list[str], opts: BackendOptions, lda_path: Path,
                plda_path: Path, data: Path) -> None:
    """Global mean + LDA, then PLDA on the projected, length-normalised vectors; both saved."""
    lda = train_lda(x, labels, opts.lda_dim)
    lda.save(lda_path, meta={"data": str(data)})
    y = length_normalize(lda.apply(x))
    plda = train_plda(y, labels, opts.plda)
    plda.save(plda_path, meta={"lda_dim": opts.lda_dim, "data": str(data)})


def run(exp: Path, data: Path) -> None:
    """The i-vector system's back end (stage 5)."""
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
    x, labels = training_vectors(scp, data, "i-vector")
    fit_backend(x, labels, cfg.backend, lda_path, plda_path, data)
    marker.write(sig)
    logger.info("LDA %d -> %d and PLDA on %d i-vectors of %d speakers", x.shape[1],
                cfg.backend.lda_dim, len(labels), len(set(labels)))


def read_backend_config(path: Path | None, lda_dim: int | None) -> BackendOptions:
    """The embedding back end's options: ``path`` (required), its LDA dim replaced by ``lda_dim``."""
    if path is None:
        raise DeepSpeakerError("--vectors needs --config (the back-end config, e.g. "
                               "conf/embedding_backend.yaml)")
    values = load_yaml(path)
    if lda_dim is not None:
        if lda_dim < 1:  # named as the user gave it, not as a key of the file
            raise DeepSpeakerError(f"--lda-dim must be >= 1, got {lda_dim}")
        values = {**values, "lda_dim": lda_dim}
    return dataclass_from_dict(BackendOptions, values, where=str(path))


def _fitting_lda_dim(opts: BackendOptions, x: np.ndarray, labels: list[str],
                     scp: Path) -> BackendOptions:
    """``opts`` with the LDA dim lowered to min(vector dim, speakers - 1) when above it."""
    most = min(x.shape[1], len(set(labels)) - 1)
    if 1 <= most < opts.lda_dim:
        logger.warning("LDA dim %d: %s has %d-dim vectors of %d speakers, so at most %d "
                       "(min(dim, speakers - 1)); using %d", opts.lda_dim, scp, x.shape[1],
                       len(set(labels)), most, most)
        return dataclasses.replace(opts, lda_dim=most)
    return opts


def run_vectors(exp: Path, data: Path, scp: Path, config: Path | None,
                lda_dim: int | None) -> None:
    """The back end of a system's embeddings (stage 9): models in ``EXP/backend``."""
    opts = read_backend_config(config, lda_dim)
    out = exp / BACKEND_DIR
    lda_path, plda_path = out / "lda.npz", out / "plda.npz"
    marker = Marker(out / ".plda.done")
    try:  # the system's own vectors by their path inside it, so a moved exp stays current
        exp_files = {str(scp.resolve().relative_to(exp.resolve())): file_digest(scp)}
        inputs = [(data / "utt2spk").resolve()]
    except ValueError:
        exp_files, inputs = {}, [(data / "utt2spk").resolve(), scp.resolve()]
    sig = signature(config={"backend": dataclasses.asdict(opts)}, inputs=inputs,
                    options={"exp_files": exp_files})
    if marker.model_current(sig, [lda_path, plda_path], f"{lda_path} + {plda_path.name}",
                            out):
        logger.info("%s and %s are up to date (same back-end config, vectors and utt2spk, "
                    "%s); nothing to do", lda_path, plda_path, marker.path)
        return
    x, labels = training_vectors(scp, data, "vector")
    used = _fitting_lda_dim(opts, x, labels, scp)
    out.mkdir(parents=True, exist_ok=True)
    fit_backend(x, labels, used, lda_path, plda_path, data)
    save_yaml(out / "config.yaml", {**dataclasses.asdict(used), "config": str(config),
                                    "vectors": str(scp), "data": str(data)})
    marker.write(sig)
    logger.info("LDA %d -> %d and PLDA on %d vectors of %d speakers (%s) -> %s", x.shape[1],
                used.lda_dim, len(labels), len(set(labels)), scp, out)


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)

    def work():
        if args.vectors is None:
            if args.config is not None or args.lda_dim is not None:
                raise DeepSpeakerError("--config and --lda-dim go with --vectors; the i-vector "
                                       f"back end reads {args.exp}/config.yaml")
            return run(args.exp, args.data)
        return run_vectors(args.exp, args.data, args.vectors, args.config, args.lda_dim)
    return run_main(work, argv, outputs=[args.exp] if args.exp.is_dir() else [])


if __name__ == "__main__":
    sys.exit(main())
