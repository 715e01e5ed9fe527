"""The two halves of a trained system: features -> vector, and vectors -> a score.

*Embedders* turn stage 1's features of one utterance into the vector the recipe's
extraction stage writes for it, by the same code path:

* :class:`NetworkEmbedder` (``kind: deepspeaker``): ``prepare_features`` then
  ``nnet.extract.embed_block`` with the experiment's ``best.pt`` (stage 8);
* :class:`IvectorEmbedder` (``kind: ivector``): the i-vector front end, zeroth and
  first order stats against the UBM, the posterior-mean i-vector (stage 4b);
* :class:`FusionEmbedder` (``kind: fusion``): the members' unit embeddings summed and
  renormalised, the recipe's *embedding* fusion (paper §5.1.3).  The recipe's score
  fusion z-normalises each member over all the scores of a trial list, which one trial
  alone does not define; the embedding fusion needs nothing but the two files, so it is
  the fusion a single ``verify`` uses (method ``embedding``, scored by cosine).

*Scorers* build the speaker model of k utterances and score it against one test
vector as the recipe's scorers do:

* :class:`CosineScorer` on embeddings (``score_embeddings``): the model is the mean of
  the unit embeddings, renormalised (paper T8);
* :class:`BackendScorer` on vectors through ``lda.npz`` (mean subtraction, LDA, length
  normalisation; ``score_plda``): method ``plda`` scores the mean of the k projected
  vectors with ``ivector-plda-scoring --num-utts`` semantics, method ``cosine`` the
  cosine between the mean and the test vector.

:class:`AsNormScorer` wraps either for the methods ``<method>_asnorm``: the scores AS-
normalised against the cohort the scoring stage saved (``exp/<tag>/asnorm/<method>.npz``,
``--asnorm-save``), each side scored against it as ``deepspeaker.scoring.asnorm`` does
for a trial list, so one ``verify`` gives the number the recipe's normalised score file
has for that trial.

A speaker model is ``(vector, k)``: what the enrolled-speaker store keeps.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..features import prepare_features
from ..ivector.lda import LdaTransform, length_normalize
from ..ivector.plda import TwoCovPLDA, cosine_scores
from ..scoring.asnorm import (DEFAULT_TOP_N, Cohort, asnorm_scores, cosine_cohort_scores,
                              plda_score_matrix)
from ..scoring.embedding import unit
from ..scoring.operating_points import ASNORM_SUFFIX
from ..utils import DeepSpeakerError


class NetworkEmbedder:
    """A Deep Speaker network of an experiment dir (``config.yaml`` + ``best.pt``)."""

    def __init__(self, exp_dir: Path, device: str = "cpu"):
        from ..nnet.extract import ExtractOptions, load_embedder, resolve_device

        self.device = resolve_device(device)
        self.opts = ExtractOptions(device=str(self.device))
        self.model, self.checkpoint = load_embedder(exp_dir, self.opts.checkpoint, self.device)
        self.dim = self.model.options.embedding_dim
        self.files = [self.checkpoint]

    def embed_many(self, items: list[tuple[np.ndarray, np.ndarray, str]]) -> list[np.ndarray]:
        """Vectors of ``(fbank, vad, name)`` items, batched as stage 8 batches a block."""
        from ..nnet.extract import embed_block

        block = [(name, np.ascontiguousarray(prepare_features(f, v), dtype=np.float32))
                 for f, v, name in items]
        try:
            return embed_block(self.model, block, self.opts, self.device)
        except (RuntimeError, ValueError) as e:  # too few frames for the network's strides
            short = min(block, key=lambda b: b[1].shape[0])
            raise DeepSpeakerError(f"{short[0]}: {short[1].shape[0]} voiced frames cannot be "
                                   f"embedded ({str(e).splitlines()[0]})") from None


class IvectorEmbedder:
    """The i-vector extractor of an experiment dir (``config.yaml``, ``models/``)."""

    def __init__(self, exp_dir: Path):
        from ..ivector.extractor import IvectorExtractor
        from ..ivector.pipeline import load_exp_config, load_ubm

        self.cfg = load_exp_config(exp_dir)
        self.ubm = load_ubm(exp_dir, self.cfg)
        path = exp_dir / "models" / "extractor.npz"
        if not path.is_file():
            raise DeepSpeakerError(f"{path} not found: train the i-vector extractor first "
                                   f"(train_ivector_extractor)")
        self.extractor = IvectorExtractor.load(path)
        self.extractor.check_ubm(self.ubm)
        self.dim = self.extractor.ivector_dim
        self.files = [exp_dir / "models" / "ubm.npz", path]

    def embed_many(self, items: list[tuple[np.ndarray, np.ndarray, str]]) -> list[np.ndarray]:
        """I-vectors of ``(fbank, vad, name)`` items: one batch of stats, one E-step."""
        from ..ivector.frontend import compute_frontend
        from ..ivector.stats import compute_stats_batch

        frames = []
        for fbank, vad, name in items:
            try:
                frames.append(compute_frontend(fbank, vad, self.cfg.frontend))
            except ValueError as e:
                raise DeepSpeakerError(f"{name}: {e}") from None
        n, f = compute_stats_batch(self.ubm, frames, top_k=self.cfg.stats.top_k)
        return list(self.extractor.extract(n, f).astype(np.float32))


class FusionEmbedder:
    """Embedding fusion of member embedders: ``unit(sum_s unit(e_s))``."""

    def __init__(self, members: list):
        self.members = members
        dims = {m.dim for m in members}
        if len(dims) != 1:
            raise DeepSpeakerError(f"fusion members embed in different sizes ({sorted(dims)}); "
                                   f"embedding fusion needs one size")
        self.dim = dims.pop()
        self.files = [f for m in members for f in m.files]

    def embed_many(self, items: list[tuple[np.ndarray, np.ndarray, str]]) -> list[np.ndarray]:
        per_member = [m.embed_many(items) for m in self.members]
        return [unit(sum(unit(v) for v in vs)).astype(np.float32) for vs in zip(*per_member)]


class CosineScorer:
    """Cosine on unit embeddings; the model of k is their renormalised mean (paper T8)."""

    method = "cosine"

    def __init__(self) -> None:
        self.files: list = []  # no model file of its own

    def project(self, vectors: np.ndarray) -> np.ndarray:
        return unit(vectors)

    def model(self, projected: np.ndarray) -> np.ndarray:
        return unit(np.mean(projected, axis=0))

    def score(self, model: np.ndarray, count: int, tests: np.ndarray) -> np.ndarray:
        return np.atleast_2d(tests) @ unit(model)


class BackendScorer:
    """``lda.npz`` (+ ``plda.npz`` for method ``plda``) of a models dir, as score_plda."""

    def __init__(self, models_dir: Path, method: str):
        self.method = method
        lda_path = models_dir / "lda.npz"
        if not lda_path.is_file():
            raise DeepSpeakerError(f"{lda_path} not found: train the back end first "
                                   f"(python -m deepspeaker.bin.train_plda)")
        self.lda = LdaTransform.load(lda_path)
        self.files = [lda_path]
        self.plda = None
        if method == "plda":
            self.plda = TwoCovPLDA.load(models_dir / "plda.npz")
            self.files.append(models_dir / "plda.npz")

    def project(self, vectors: np.ndarray) -> np.ndarray:
        return length_normalize(self.lda.apply(np.atleast_2d(np.asarray(vectors, np.float64))))

    def model(self, projected: np.ndarray) -> np.ndarray:
        return np.mean(projected, axis=0)

    def score(self, model: np.ndarray, count: int, tests: np.ndarray) -> np.ndarray:
        tests = np.atleast_2d(tests)
        if self.plda is None:
            return cosine_scores(np.broadcast_to(model, tests.shape), tests)
        e = self.plda.transform_ivectors(model[None, :], np.array([count]))
        t = self.plda.transform_ivectors(tests, 1)
        return self.plda.log_likelihood_ratio(np.broadcast_to(e, t.shape), t, count)


ASNORM_DIR = "asnorm"


def cohort_path(exp_dir: str | os.PathLike, method: str) -> Path:
    """Where the scoring stage saves the AS-norm cohort of ``method``'s scores."""
    return Path(exp_dir) / ASNORM_DIR / f"{method}.npz"


class AsNormScorer:
    """A scorer whose scores are AS-normalised against a saved cohort (its top-N with it)."""

    def __init__(self, base, path: Path):
        self.base = base
        self.method = base.method + ASNORM_SUFFIX
        if not path.is_file():
            raise DeepSpeakerError(f"{path} not found: the AS-norm cohort is saved by the scoring "
                                   f"stage (--asnorm-save); rerun it, or use method {base.method!r}")
        self.cohort = Cohort.load(path)
        self.top_n = self.cohort.top_n or DEFAULT_TOP_N
        self.files = list(base.files) + [path]
        self.plda = getattr(base, "plda", None)
        self._cohort_t = (self.plda.transform_ivectors(self.cohort.vectors, 1)
                          if self.plda is not None else None)

    def project(self, vectors: np.ndarray) -> np.ndarray:
        return self.base.project(vectors)

    def model(self, projected: np.ndarray) -> np.ndarray:
        return self.base.model(projected)

    def score(self, model: np.ndarray, count: int, tests: np.ndarray) -> np.ndarray:
        tests = np.atleast_2d(tests)
        raw = self.base.score(model, count, tests)
        if self.plda is None:
            enroll_side = cosine_cohort_scores(model, self.cohort)[0]
            test_side = cosine_cohort_scores(tests, self.cohort)
        else:
            counts = np.array([count], dtype=np.float64)
            e = self.plda.transform_ivectors(np.asarray(model, np.float64)[None, :], counts)
            enroll_side = plda_score_matrix(self.plda, e, self._cohort_t, counts)[0]
            test_side = plda_score_matrix(self.plda, self._cohort_t,
                                          self.plda.transform_ivectors(tests, 1), 1).T
        return asnorm_scores(raw, enroll_side, test_side, self.top_n)


def has_backend(models_dir: str | os.PathLike) -> bool:
    """Whether ``models_dir`` holds a trained LDA + PLDA back end."""
    d = Path(models_dir)
    return (d / "lda.npz").is_file() and (d / "plda.npz").is_file()


__all__ = ["ASNORM_DIR", "AsNormScorer", "BackendScorer", "CosineScorer", "FusionEmbedder",
           "IvectorEmbedder", "NetworkEmbedder", "cohort_path", "has_backend"]
