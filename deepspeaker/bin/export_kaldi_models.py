"""Write a system's LDA and PLDA as Kaldi's files, for Kaldi's own scoring tools (issue 14).

    python -m deepspeaker.bin.export_kaldi_models exp/ivector [--binary true|false] [--out DIR]
    python -m deepspeaker.bin.export_kaldi_models exp/gru_softmax_triplet

Reads the i-vector system's ``EXP/models/{lda,plda}.npz`` (train_plda) or, for a
network, the back end of its embeddings ``EXP/backend/{lda,plda}.npz`` (train_plda
--vectors), and writes to ``DIR`` (default: ``kaldi/`` beside them):

* ``mean.vec``: the training mean, for ``ivector-subtract-global-mean``;
* ``transform.mat``: the LDA, for ``transform-vec`` (as ``ivector-compute-lda`` writes it);
* ``plda``: the PLDA, for ``ivector-plda-scoring`` (as ``ivector-compute-plda`` writes it);
* ``plda_scoring.conf``: the length-normalisation options the system scores with, for
  ``ivector-plda-scoring --config=plda_scoring.conf``.

``--binary true`` (default, as Kaldi's tools) or ``false`` (text).  The format and what
Kaldi does with each file: :mod:`deepspeaker.ivector.kaldi_format`.  Kaldi then scores
the system's vectors (our ``ivector.scp`` / ``embedding.scp`` are Kaldi tables) as
:func:`kaldi_commands` logs; the scores equal ``score_plda``'s.  A rerun with the same
models and options does nothing; with others it writes the files again.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ..ivector.kaldi_format import (
    plda_scoring_options,
    write_kaldi_lda,
    write_kaldi_plda,
)
from ..ivector.lda import LdaTransform
from ..ivector.plda import TwoCovPLDA
from ..marker import Marker, signature
from ..utils import DeepSpeakerError, SizeMismatchError, atomic_write
from ._cli import run_main
from .train_plda import BACKEND_DIR

logger = logging.getLogger(__name__)
OUTPUTS = ("mean.vec", "transform.mat", "plda", "plda_scoring.conf")
MARKER = ".export.done"


def _bool(text: str) -> bool:
    """Kaldi's spelling of a boolean option (``--binary=true``)."""
    if text.lower() in ("true", "1"):
        return True
    if text.lower() in ("false", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m deepspeaker.bin.export_kaldi_models",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("exp", type=Path, help="a trained system: exp/ivector or a network's exp dir")
    p.add_argument("--binary", type=_bool, default=True, metavar="true|false",
                   help="Kaldi binary files (default) or text")
    p.add_argument("--out", type=Path, default=None,
                   help="output dir (default: kaldi/ beside the models)")
    return p


def models_dir(exp: Path) -> Path:
    """Where ``exp`` keeps its LDA + PLDA: ``models/`` (i-vectors) or ``backend/`` (a network)."""
    if not exp.is_dir():
        raise DeepSpeakerError(f"{exp}: experiment dir not found")
    for sub in ("models", BACKEND_DIR):
        found = [n for n in ("lda.npz", "plda.npz") if (exp / sub / n).is_file()]
        if len(found) == 2:
            return exp / sub
        if found:
            missing = ({"lda.npz", "plda.npz"} - set(found)).pop()
            raise DeepSpeakerError(f"{exp / sub / missing}: missing beside {found[0]}; "
                                   f"rerun train_plda for {exp}")
    raise DeepSpeakerError(f"{exp}: not a system with an LDA + PLDA back end: neither "
                           f"models/{{lda,plda}}.npz (the i-vector system, train_plda) nor "
                           f"{BACKEND_DIR}/{{lda,plda}}.npz (a network's embeddings, "
                           f"train_plda --vectors); a fusion has none of its own")


def kaldi_commands(out: Path, vectors_scp: str = "VECTORS.scp") -> list[str]:
    """The Kaldi commands that score ``vectors_scp`` with the files in ``out`` as score_plda does.

    Enrollment models of k utterances average the utterances' vectors after the length
    normalisation, as score_plda does (Kaldi's sre10 recipe averages before it: a
    different scorer), and are scored with ``--num-utts``.
    Trials whose enrollment is one utterance (``trials``) take ``ark:vectors.ark`` as
    the models and no ``--num-utts``.
    """
    return [
        (f"ivector-subtract-global-mean {out}/mean.vec scp:{vectors_scp} ark:- | "
         f"transform-vec {out}/transform.mat ark:- ark:- | "
         f"ivector-normalize-length ark:- ark:vectors.ark"),
        "ivector-mean ark:enroll2utt ark:vectors.ark ark:models.ark ark,t:num_utts.ark",
        (f"ivector-plda-scoring --config={out}/plda_scoring.conf --num-utts=ark:num_utts.ark "
         f"{out}/plda ark:models.ark ark:vectors.ark \"cut -d' ' -f1,2 trials_enroll3 |\" scores"),
    ]


def export(exp: Path, out: Path | None, binary: bool) -> Path:
    src = models_dir(exp)
    out = out if out is not None else src / "kaldi"
    lda_path, plda_path = src / "lda.npz", src / "plda.npz"
    outputs = [out / n for n in OUTPUTS]
    marker = Marker(out / MARKER)
    sig = signature(inputs=[lda_path.resolve(), plda_path.resolve()], options={"binary": binary})
    if marker.outputs_current(sig, outputs):
        logger.info("%s: up to date (same models and --binary; %s)", out, marker.path)
        return out
    lda, plda = LdaTransform.load(lda_path), TwoCovPLDA.load(plda_path)
    if lda.output_dim != plda.dim:
        raise SizeMismatchError(f"{lda_path} projects to {lda.output_dim} dims but {plda_path} "
                                f"is for {plda.dim}-dim vectors; rerun train_plda for {exp}")
    write_kaldi_lda(lda, out / "transform.mat", out / "mean.vec", binary)
    write_kaldi_plda(plda, out / "plda", binary)
    with atomic_write(out / "plda_scoring.conf") as f:
        f.write(f"# ivector-plda-scoring options of {plda_path} (deepspeaker's PldaConfig)\n")
        f.writelines(line + "\n" for line in plda_scoring_options(plda.config))
    marker.write(sig)
    logger.info("%s: %s Kaldi files of %s (LDA %d -> %d, PLDA %d-dim): %s", out,
                "binary" if binary else "text", src, lda.input_dim, lda.output_dim, plda.dim,
                " ".join(OUTPUTS))
    logger.info("Kaldi scores a vector scp as score_plda does with:\n  %s",
                "\n  ".join(kaldi_commands(out)))
    return out


def main(argv=None) -> int:
    args = get_parser().parse_args(argv)
    # The default output dir is checked once models_dir has found the models.
    return run_main(lambda: export(args.exp, args.out, args.binary), argv,
                    outputs=[args.out] if args.out is not None else [])


if __name__ == "__main__":
    sys.exit(main())
