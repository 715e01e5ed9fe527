"""Length normalisation and Kaldi-style LDA of i-vectors (paper §4.2; SPEC B2, B3).

The i-vector back end of the paper follows Kaldi's recipes: i-vectors have the
global mean removed, are projected by LDA (``ivector-compute-lda``) and
length-normalised (``ivector-normalize-length``) before two-covariance PLDA
(:mod:`deepspeaker.ivector.plda`).

LDA as ``ivector-compute-lda`` computes it:

* the global mean of all training i-vectors is subtracted first (and is kept in the
  transform, so :meth:`LdaTransform.apply` subtracts it again);
* the within-class covariance is the scatter of each utterance around its
  speaker's mean, summed over speakers and divided by the number of utterances
  (so a speaker counts in proportion to its utterances);
* the between-class covariance is total minus within, i.e. the speaker means'
  scatter weighted by each speaker's utterance count, over the number of utterances;
* the generalised eigenproblem ``S_b v = lambda S_w v`` is solved by first whitening
  ``S_w`` (eigenvalues floored relative to the largest, Kaldi's
  ``--covariance-floor``, so a rank-deficient ``S_w`` does not blow up) and then
  diagonalising the whitened ``S_b``; the rows of the result are normalised so
  that the within-class covariance of the projected data is the identity, and
  ordered by decreasing between-class variance.

``total_covariance_factor`` mixes the total covariance into the matrix that is
whitened (Kaldi's ``--total-covariance-factor``: 0 whitens the within-class
covariance, 1 the total covariance).

This module also holds the small versioned ``.npz`` format that the back-end
models (:class:`LdaTransform`, :class:`~deepspeaker.ivector.plda.TwoCovPLDA`) are
stored in.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import scipy.linalg

from ..utils import SizeMismatchError, UnusableDataError
from .model_file import ModelFileError, load_model_npz, require_arrays, save_model_npz

logger = logging.getLogger(__name__)

LDA_KIND = "deepspeaker.ivector.LdaTransform"
LDA_FORMAT_VERSION = 1


# --------------------------------------------------------------------------------------
# Length normalisation


def length_normalize(x, scale_to_sqrt_dim: bool = True) -> np.ndarray:
    """Scale each row of ``x`` to norm ``sqrt(dim)`` (Kaldi's ``ivector-normalize-length``) or 1.

    ``sqrt(dim)`` is Kaldi's default (``--scaleup=true``): a standard-normal vector
    has roughly that norm, so the scale of the data does not change much.  A zero
    row is left as it is (Kaldi warns and copies it), rather than becoming NaN.
    Accepts one vector (D,) or a matrix (N, D); returns float64 of the same shape.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim not in (1, 2):
        raise ValueError(f"expected a vector (D,) or a matrix (N, D), got shape {x.shape}")
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    target = np.sqrt(x.shape[-1]) if scale_to_sqrt_dim else 1.0
    scale = np.divide(target, norms, out=np.ones_like(norms), where=norms > 0)
    return x * scale


# --------------------------------------------------------------------------------------
# LDA


def _as_matrix(x, what: str = "x") -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{what}: expected a matrix (N, D), got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise UnusableDataError(f"{what}: {int(np.sum(~np.all(np.isfinite(x), axis=1)))} rows "
                                "contain NaN or infinite values")
    return x


def _class_index(labels, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(inverse index into the sorted unique labels, counts per label)."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != n:
        raise ValueError(f"{labels.size} labels for {n} vectors; need one label per row")
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    return inverse.reshape(-1), counts


@dataclass(eq=False)
class LdaTransform:
    """An affine LDA projection: ``y = matrix @ (x - mean)``, i.e. Kaldi's ``transform.mat``."""

    mean: np.ndarray      # (D,) global mean subtracted first
    matrix: np.ndarray    # (K, D)
    # Where the transform was loaded from, so errors can name the file.
    source: str | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.mean = np.asarray(self.mean, dtype=np.float64).reshape(-1)
        self.matrix = np.asarray(self.matrix, dtype=np.float64)
        if self.matrix.ndim != 2 or self.matrix.shape[1] != self.mean.shape[0]:
            raise SizeMismatchError(f"LDA matrix {self.matrix.shape} does not fit a mean of "
                                    f"dim {self.mean.shape[0]}")

    @property
    def input_dim(self) -> int:
        return int(self.matrix.shape[1])

    @property
    def output_dim(self) -> int:
        return int(self.matrix.shape[0])

    def apply(self, x) -> np.ndarray:
        """Project (N, D) -> (N, K), or (D,) -> (K,)."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim not in (1, 2):
            raise ValueError(f"expected a vector (D,) or a matrix (N, D), got shape {x.shape}")
        if x.shape[-1] != self.input_dim:
            raise SizeMismatchError(f"LDA transform expects {self.input_dim}-dim input but the "
                                    f"data are {x.shape[-1]}-dim", path=self.source)
        return (x - self.mean) @ self.matrix.T

    def as_affine(self) -> np.ndarray:
        """The (K, D+1) matrix ``[A, -A mean]`` that Kaldi's ``transform-vec`` applies."""
        return np.hstack([self.matrix, -(self.matrix @ self.mean)[:, None]])

    @classmethod
    def from_affine(cls, affine, mean=None, source: str | None = None) -> LdaTransform:
        """The LDA that Kaldi applies as ``ivector-subtract-global-mean mean`` + ``transform-vec affine``.

        ``affine`` is (K, D+1) ``[A, b]`` (``x -> A x + b``, as ``ivector-compute-lda``
        writes it) or, with a ``mean``, (K, D) ``A`` (linear: ``transform-vec`` tells the
        two apart by the input's dim); ``mean`` (D,) is subtracted first (none: 0).
        ``A (x - mean) + b`` is written as ``A (x - mean')`` with ``mean' = mean - c``,
        ``A c = b``: exact when the K <= D rows of ``A`` are independent, as an LDA's are.
        """
        affine = np.asarray(affine, dtype=np.float64)
        if affine.ndim != 2 or affine.shape[0] == 0:
            raise SizeMismatchError(f"an LDA transform must be a non-empty matrix, got shape "
                                    f"{affine.shape}", path=source)
        dim = affine.shape[1] - 1 if mean is None else np.asarray(mean).reshape(-1).shape[0]
        if affine.shape[1] not in (dim, dim + 1):
            raise SizeMismatchError(f"LDA transform has {affine.shape[1]} columns, but a "
                                    f"{dim}-dim mean needs {dim} (linear) or {dim + 1} (affine)",
                                    path=source)
        matrix = affine[:, :dim]
        mean = np.zeros(dim) if mean is None else np.asarray(mean, dtype=np.float64).reshape(-1)
        if affine.shape[1] == dim + 1:
            offset = affine[:, dim]
            if matrix.shape[0] > dim or np.linalg.matrix_rank(matrix) < matrix.shape[0]:
                # The offset may then lie outside the span of A: no mean reproduces it.
                raise SizeMismatchError(f"LDA transform {affine.shape}: its {matrix.shape[0]} "
                                        f"rows are not independent, so its offset column "
                                        f"cannot be folded into a mean", path=source)
            mean = mean - np.linalg.lstsq(matrix, offset, rcond=None)[0]
        return cls(mean=mean, matrix=matrix, source=source)

    def save(self, path: str | os.PathLike, meta: Mapping[str, Any] | None = None) -> None:
        meta = dict(meta or {})
        meta.setdefault("input_dim", self.input_dim)
        meta.setdefault("output_dim", self.output_dim)
        save_model_npz(path, LDA_KIND, LDA_FORMAT_VERSION,
                       {"mean": self.mean, "matrix": self.matrix}, meta)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "LdaTransform":
        data, _ = load_model_npz(path, LDA_KIND, (LDA_FORMAT_VERSION,))
        require_arrays(data, ("mean", "matrix"), path, LDA_KIND)
        try:
            return cls(mean=data["mean"], matrix=data["matrix"], source=str(path))
        except ValueError as e:
            raise ModelFileError(f"{path}: {e}") from e


def within_between_covariance(x, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Kaldi's LDA statistics: (mean, within-class covariance, between-class covariance).

    Both covariances are normalised by the number of utterances and taken about the
    utterance-weighted global mean; within + between = total covariance.
    """
    x = _as_matrix(x)
    inverse, counts = _class_index(labels, x.shape[0])
    n_utt, dim = x.shape
    mean = x.mean(axis=0)
    xc = x - mean
    spk_sum = np.zeros((counts.size, dim))
    np.add.at(spk_sum, inverse, xc)
    spk_mean = spk_sum / counts[:, None]
    total = xc.T @ xc / n_utt
    between = (spk_mean * counts[:, None]).T @ spk_mean / n_utt
    within = total - between
    # Symmetrise: the subtraction leaves rounding-level asymmetry.
    within = 0.5 * (within + within.T)
    return mean, within, between


def train_lda(x, labels, dim: int, total_covariance_factor: float = 0.0,
              covariance_floor: float = 1e-6) -> LdaTransform:
    """Estimate an LDA projection to ``dim`` dimensions as ``ivector-compute-lda`` does.

    ``x`` (N, D) are the training i-vectors, ``labels`` (N,) their speakers.  The
    result maps the training data to a space where the within-class covariance (or,
    with ``total_covariance_factor`` > 0, that mixture with the total covariance) is
    the identity and the between-class covariance is diagonal, decreasing.
    """
    x = _as_matrix(x)
    n_utt, in_dim = x.shape
    inverse, counts = _class_index(labels, n_utt)
    num_spk = counts.size
    if not 0.0 <= total_covariance_factor <= 1.0:
        raise ValueError(f"total_covariance_factor must be in [0, 1], got {total_covariance_factor}")
    if num_spk < 2:
        raise UnusableDataError(f"LDA needs at least 2 speakers, got {num_spk}")
    max_dim = min(in_dim, num_spk - 1)
    if not 1 <= dim <= max_dim:
        # Between-class covariance of S speaker means has rank <= S-1: directions past
        # that carry no speaker information, only noise.
        raise SizeMismatchError(f"LDA dim {dim} is not possible with {in_dim}-dim input and "
                                f"{num_spk} speakers: it must be between 1 and min(input dim, "
                                f"speakers - 1) = {max_dim}")
    if n_utt == num_spk and total_covariance_factor < 1.0:
        raise UnusableDataError("every speaker has a single utterance, so the within-class "
                                "covariance is zero; LDA needs speakers with several utterances")

    mean, within, between = within_between_covariance(x, labels)
    total = within + between
    to_normalize = total_covariance_factor * total + (1.0 - total_covariance_factor) * within

    # Whitening transform of `to_normalize`, eigenvalues floored as Kaldi does.
    s, u = scipy.linalg.eigh(to_normalize)
    floor = covariance_floor * s.max()
    num_floored = int(np.sum(s < floor))
    if num_floored:
        # Learned embeddings often span fewer dims than they have (a narrow GRU's 512-d
        # embeddings span ~129): LDA past that rank adds floored, speaker-free directions.
        logger.warning("LDA: floored %d of %d eigenvalues of the covariance to normalise: "
                       "the vectors span about %d dims%s", num_floored, in_dim,
                       in_dim - num_floored,
                       f", fewer than LDA dim {dim}" if dim > in_dim - num_floored else "")
    s = np.maximum(s, floor)
    whiten = (u / np.sqrt(s)).T                      # whiten @ to_normalize @ whiten.T = I

    between_proj = whiten @ between @ whiten.T
    evals, evecs = scipy.linalg.eigh(between_proj)
    order = np.argsort(evals)[::-1]
    evals, evecs = evals[order], evecs[:, order]
    matrix = evecs[:, :dim].T @ whiten
    # Eigenvectors have arbitrary sign; make the largest-magnitude entry of each row
    # positive so that retraining on the same data gives the same transform.
    rows = np.arange(dim)
    signs = np.sign(matrix[rows, np.argmax(np.abs(matrix), axis=1)])
    matrix *= np.where(signs == 0, 1.0, signs)[:, None]
    logger.info("LDA: %d utterances, %d speakers, %d -> %d dims; between-class variances "
                "after projection (top %d): %s", n_utt, num_spk, in_dim, dim, min(dim, 10),
                np.array2string(evals[:min(dim, 10)], precision=3))
    return LdaTransform(mean=mean, matrix=matrix)
