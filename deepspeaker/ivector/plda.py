"""Two-covariance PLDA as Kaldi's ``ivector/plda.cc`` (paper §4.2; SPEC B3), and cosine scoring.

The model: an i-vector ``x`` of speaker ``s`` is ``x = mu + y_s + e`` with the speaker
variable ``y_s ~ N(0, B)`` (between-class covariance, Kaldi's ``between_var_``) and the
residual ``e ~ N(0, W)`` (within-class covariance, ``within_var_``), independent across
utterances.  After training, a transform ``A`` is computed with ``A W A^T = I`` and
``A B A^T = diag(psi)``: in that space every dimension is independent and scoring is
a sum of 1-d Gaussian log-likelihoods.

Training (``ivector-compute-plda``): the sufficient statistics are each speaker's
mean and utterance count plus the scatter of utterances around their speaker's mean.
``mu`` is the average of the speaker means (each speaker counts once, as in Kaldi).
EM treats ``y_s`` as hidden; with ``n`` utterances the speaker mean is ``y_s`` plus
noise of covariance ``W/n``, so speakers are grouped by ``n`` and the posterior of
``y_s`` is shared within a group.  The objective (log-likelihood per vector) cannot
decrease under EM, and is logged every iteration.  Kaldi starts EM from ``B = W = I``;
we start from the moment estimates (``W`` from the within-speaker scatter, ``B`` from
the scatter of speaker means minus the average ``W/n``), which are already consistent
estimates, so the default 10 iterations land much closer to the maximum-likelihood
point when the data are far from unit scale.  ``PldaEstimator(..., init="identity")``
gives Kaldi's start.

Scoring (``ivector-plda-scoring``): an enrollment model built from ``n`` utterances is
the mean of their raw i-vectors (``ivector-mean``), transformed with
``TransformIvector(num_examples=n)``, and scored with ``LogLikelihoodRatio(.., n, ..)``.
Under "same speaker" the test vector is Gaussian with mean ``n psi / (n psi + 1) * u``
and variance ``1 + psi / (n psi + 1)``; under "different speaker" with mean 0 and
variance ``1 + psi``.  The score is the log ratio of the two densities.

Length normalisation inside the transform (Kaldi's ``PldaConfig``): with
``normalize_length`` (default) the transformed vector is scaled so that its squared
Mahalanobis norm under the covariance of an average of ``n`` vectors,
``sum(u^2 / (psi + 1/n))``, equals the dimension; with ``simple_length_norm`` it is
scaled to Euclidean norm ``sqrt(dim)`` regardless of ``n``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import scipy.linalg

from ..utils import DeepSpeakerError, SizeMismatchError, UnusableDataError
from .lda import _as_matrix, _class_index
from .model_file import ModelFileError, load_model_npz, require_arrays, save_model_npz

logger = logging.getLogger(__name__)

PLDA_KIND = "deepspeaker.ivector.TwoCovPLDA"
PLDA_FORMAT_VERSION = 1
LOG_2PI = math.log(2.0 * math.pi)


class CovarianceError(DeepSpeakerError, np.linalg.LinAlgError):
    """A covariance that is not positive definite: i-vectors too few or too alike for their dim."""


class MissingIvectorsError(DeepSpeakerError, KeyError):
    """Trials that name ids without an i-vector (a KeyError too, for callers that catch that)."""


@dataclass
class PldaConfig:
    """Training (``num_em_iters``) and scoring (length normalisation) options, as Kaldi's."""

    num_em_iters: int = 10
    normalize_length: bool = True
    simple_length_norm: bool = False

    def __post_init__(self) -> None:
        if int(self.num_em_iters) != self.num_em_iters or self.num_em_iters < 0:
            raise ValueError(f"num_em_iters must be a non-negative integer, got {self.num_em_iters}")
        self.num_em_iters = int(self.num_em_iters)


def _symmetric(m: np.ndarray) -> np.ndarray:
    return 0.5 * (m + m.T)


def _inv_logdet(m: np.ndarray, what: str) -> tuple[np.ndarray, float]:
    """Inverse and log-determinant of a symmetric positive definite matrix (via Cholesky)."""
    try:
        c, lower = scipy.linalg.cho_factor(m, lower=True)
    except np.linalg.LinAlgError:
        raise CovarianceError(f"{what} is not positive definite") from None
    inv = scipy.linalg.cho_solve((c, lower), np.eye(m.shape[0]))
    return _symmetric(inv), 2.0 * float(np.sum(np.log(np.diag(c))))


# --------------------------------------------------------------------------------------
# The model


def _diagonalizing_transform(between: np.ndarray, within: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(A, psi)`` with ``A W A^T = I`` and ``A B A^T = diag(psi)``, psi descending (Kaldi's GetOutput)."""
    try:
        chol = np.linalg.cholesky(within)
    except np.linalg.LinAlgError:
        raise CovarianceError("within-class covariance is not positive definite") from None
    whiten = scipy.linalg.solve_triangular(chol, np.eye(within.shape[0]), lower=True)
    between_proj = _symmetric(whiten @ between @ whiten.T)
    psi, u = scipy.linalg.eigh(between_proj)
    order = np.argsort(psi)[::-1]
    psi, u = psi[order], u[:, order]
    num_floored = int(np.sum(psi < 0.0))
    if num_floored:
        logger.warning("PLDA: floored %d eigenvalues of the between-class covariance to zero",
                       num_floored)
    psi = np.maximum(psi, 0.0)
    transform = u.T @ whiten
    # Fix each row's sign (largest-magnitude entry positive) so retraining is reproducible;
    # the scores do not depend on it.
    signs = np.sign(transform[np.arange(transform.shape[0]), np.argmax(np.abs(transform), axis=1)])
    transform *= np.where(signs == 0, 1.0, signs)[:, None]
    return transform, psi


@dataclass(eq=False)
class TwoCovPLDA:
    """A trained two-covariance PLDA model (Kaldi's ``Plda``) with its scoring options."""

    mean: np.ndarray        # (D,)
    transform: np.ndarray   # (D, D): within-class covariance -> I, between-class -> diag(psi)
    psi: np.ndarray         # (D,) between-class variances in the transformed space, descending
    between: np.ndarray     # (D, D) between-class covariance in the input space
    within: np.ndarray      # (D, D) within-class covariance in the input space
    config: PldaConfig = field(default_factory=PldaConfig)
    # Where the model was loaded from, so that errors can name the file.
    source: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.mean = np.asarray(self.mean, dtype=np.float64).reshape(-1)
        d = self.mean.shape[0]
        self.transform = np.asarray(self.transform, dtype=np.float64)
        self.psi = np.asarray(self.psi, dtype=np.float64).reshape(-1)
        self.between = np.asarray(self.between, dtype=np.float64)
        self.within = np.asarray(self.within, dtype=np.float64)
        for name, shape in (("transform", (d, d)), ("psi", (d,)), ("between", (d, d)),
                            ("within", (d, d))):
            if getattr(self, name).shape != shape:
                raise SizeMismatchError(f"PLDA {name} has shape {getattr(self, name).shape}, "
                                        f"expected {shape} for a {d}-dim mean")
        if np.any(self.psi < 0):
            raise ValueError("PLDA psi (between-class variances) must be >= 0")

    @classmethod
    def from_covariances(cls, mean, between, within, config: PldaConfig | None = None) -> "TwoCovPLDA":
        """The model with given ``mu``, ``B`` and ``W`` (e.g. the true ones of synthetic data)."""
        between = _symmetric(np.asarray(between, dtype=np.float64))
        within = _symmetric(np.asarray(within, dtype=np.float64))
        transform, psi = _diagonalizing_transform(between, within)
        return cls(mean=mean, transform=transform, psi=psi, between=between, within=within,
                   config=config if config is not None else PldaConfig())

    @classmethod
    def from_kaldi(cls, mean, transform, psi, config: PldaConfig | None = None,
                   source: str | None = None) -> TwoCovPLDA:
        """The model Kaldi stores (``Plda::Write``: ``mean``, ``transform``, ``psi``).

        Kaldi keeps only the diagonalised form; the covariances it came from are
        ``W = T^-1 T^-T`` and ``B = T^-1 diag(psi) T^-T`` (as ``Plda::ApplyTransform``
        recovers them).  ``transform`` and ``psi`` are kept as given, not re-diagonalised,
        so the model scores exactly as Kaldi's.  ``config``: the scoring options, which a
        Kaldi PLDA file does not hold (``ivector-plda-scoring`` takes them on its command
        line); default Kaldi's.
        """
        transform = np.asarray(transform, dtype=np.float64)
        psi = np.asarray(psi, dtype=np.float64).reshape(-1)
        d = np.asarray(mean).reshape(-1).shape[0]
        if transform.shape != (d, d) or psi.shape != (d,):
            raise SizeMismatchError(f"PLDA transform {transform.shape} and psi {psi.shape} do "
                                    f"not fit a {d}-dim mean", path=source)
        try:
            inv = np.linalg.inv(transform)
        except np.linalg.LinAlgError:
            raise CovarianceError("PLDA transform is singular: it cannot come from a "
                                  "within-class covariance", path=source) from None
        within = _symmetric(inv @ inv.T)
        between = _symmetric((inv * psi) @ inv.T)
        return cls(mean=mean, transform=transform, psi=psi, between=between, within=within,
                   config=config if config is not None else PldaConfig(), source=source)

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    def _check_dim(self, x: np.ndarray, what: str) -> None:
        if x.shape[-1] != self.dim:
            raise SizeMismatchError(f"{'' if self.source else 'PLDA model (in memory): '}PLDA "
                                    f"model is for {self.dim}-dim vectors but the {what} are "
                                    f"{x.shape[-1]}-dim (was the same LDA dim used for training "
                                    f"and scoring?)", path=self.source)

    # -- scoring -------------------------------------------------------------------------

    def transform_ivectors(self, x, num_utts=1) -> np.ndarray:
        """Kaldi's ``TransformIvector``: subtract the mean, apply the transform, length-normalise.

        ``x`` is one vector (D,) or rows (N, D); a row that is the average of ``n``
        i-vectors should be passed with ``num_utts=n`` (a scalar or one count per row):
        its expected covariance in the transformed space is ``diag(psi) + I/n``, which
        the default length normalisation uses.
        """
        x = np.asarray(x, dtype=np.float64)
        if x.ndim not in (1, 2):
            raise ValueError(f"expected a vector (D,) or a matrix (N, D), got shape {x.shape}")
        self._check_dim(x, "vectors")
        y = (x - self.mean) @ self.transform.T
        if not self.config.normalize_length:
            return y
        if self.config.simple_length_norm:
            sq = np.sum(y * y, axis=-1, keepdims=True)
        else:
            n = np.asarray(num_utts, dtype=np.float64)
            if np.any(n <= 0):
                raise ValueError(f"num_utts must be > 0, got {num_utts}")
            if n.ndim == 1:
                if x.ndim != 2 or n.shape[0] != x.shape[0]:
                    raise ValueError(f"{n.shape[0]} num_utts for {x.shape[0] if x.ndim == 2 else 1} "
                                     "vectors")
                n = n[:, None]
            elif n.ndim > 1:
                raise ValueError(f"num_utts must be a scalar or a vector, got shape {n.shape}")
            sq = np.sum(y * y / (self.psi + 1.0 / n), axis=-1, keepdims=True)
        factor = np.divide(math.sqrt(self.dim), np.sqrt(sq), out=np.ones_like(sq), where=sq > 0)
        return y * factor

    def log_likelihood_ratio(self, enroll, test, num_enroll_utts=1) -> np.ndarray:
        """Kaldi's ``LogLikelihoodRatio`` for each row pair, in the transformed space.

        ``enroll`` (N, D): transformed enrollment vectors, each the (transformed) average of
        ``num_enroll_utts`` utterances (a scalar or one count per row); ``test`` (N, D):
        transformed single-utterance test vectors.  Returns (N,) natural-log ratios.
        """
        enroll = np.asarray(enroll, dtype=np.float64)
        test = np.asarray(test, dtype=np.float64)
        self._check_dim(enroll, "enrollment vectors")
        self._check_dim(test, "test vectors")
        try:
            enroll, test = np.broadcast_arrays(enroll, test)
        except ValueError:
            raise ValueError(f"enrollment {enroll.shape} and test {test.shape} vectors do not "
                             "pair up row by row") from None
        n = np.asarray(num_enroll_utts, dtype=np.float64)
        if np.any(n <= 0):
            raise ValueError(f"num_enroll_utts must be > 0, got {num_enroll_utts}")
        if n.ndim == 1:
            n = n[:, None]
        elif n.ndim > 1:
            raise ValueError(f"num_enroll_utts must be a scalar or a vector, got shape {n.shape}")
        psi = self.psi
        # Same speaker: the speaker variable's posterior given the enrollment mean is
        # N(n psi/(n psi+1) u, psi/(n psi+1)); add the test's own unit within-class variance.
        mean_same = n * psi / (n * psi + 1.0) * enroll
        var_same = 1.0 + psi / (n * psi + 1.0)
        var_diff = 1.0 + psi
        # The -D/2 log(2 pi) terms of both log-likelihoods cancel.
        ll_same = -0.5 * (np.sum(np.log(var_same), axis=-1)
                          + np.sum((test - mean_same) ** 2 / var_same, axis=-1))
        ll_diff = -0.5 * (np.sum(np.log(var_diff), axis=-1) + np.sum(test ** 2 / var_diff, axis=-1))
        return ll_same - ll_diff

    def score(self, enroll_ivectors: Mapping[str, np.ndarray | Sequence[np.ndarray]],
              test_ivectors: Mapping[str, np.ndarray],
              trials: Iterable[tuple[str, str]]) -> np.ndarray:
        """Score ``(enroll_id, test_id)`` trials as ``ivector-plda-scoring --num-utts`` does.

        An enrollment entry is one i-vector (D,), or several as a list or an (n, D)
        array: they are averaged in the input space (``ivector-mean``), transformed with
        ``num_utts=n`` and scored with ``n``.  Test entries are single i-vectors.
        Trials may be tuples or objects with ``enroll`` and ``test`` attributes
        (:class:`deepspeaker.scoring.Trial`).  Returns the LLRs in trial order.
        """
        pairs = [(t.enroll, t.test) if hasattr(t, "enroll") else (t[0], t[1]) for t in trials]
        enroll_ids = sorted({e for e, _ in pairs})
        test_ids = sorted({t for _, t in pairs})
        missing = ([f"enrollment {e}" for e in enroll_ids if e not in enroll_ivectors]
                   + [f"test {t}" for t in test_ids if t not in test_ivectors])
        if missing:
            shown = ", ".join(missing[:10]) + (f" (and {len(missing) - 10} more)" if len(missing) > 10 else "")
            raise MissingIvectorsError(f"{len(missing)} trial id(s) have no i-vector: {shown}")
        if not pairs:
            return np.zeros(0)

        means, counts = [], []
        for e in enroll_ids:
            v = enroll_ivectors[e]
            v = np.stack([np.asarray(r, dtype=np.float64) for r in v]) if isinstance(v, (list, tuple)) \
                else np.asarray(v, dtype=np.float64)
            if v.ndim == 1:
                v = v[None, :]
            if v.ndim != 2 or v.shape[0] == 0:
                raise ValueError(f"enrollment {e}: expected one or more i-vectors, got shape {v.shape}")
            means.append(v.mean(axis=0))
            counts.append(v.shape[0])
        counts_arr = np.asarray(counts)
        enroll_t = self.transform_ivectors(np.stack(means), counts_arr)
        tests = [np.asarray(test_ivectors[t], dtype=np.float64) for t in test_ids]
        for t, v in zip(test_ids, tests):
            if v.ndim != 1:
                raise ValueError(f"test {t}: expected a single i-vector (D,), got shape {v.shape}")
        test_t = self.transform_ivectors(np.stack(tests), 1)
        e_index = {e: i for i, e in enumerate(enroll_ids)}
        t_index = {t: i for i, t in enumerate(test_ids)}
        ei = np.array([e_index[e] for e, _ in pairs])
        ti = np.array([t_index[t] for _, t in pairs])
        return self.log_likelihood_ratio(enroll_t[ei], test_t[ti], counts_arr[ei])

    # -- files ---------------------------------------------------------------------------

    def save(self, path: str | os.PathLike, meta: Mapping[str, Any] | None = None) -> None:
        meta = dict(meta or {})
        meta.setdefault("dim", self.dim)
        save_model_npz(path, PLDA_KIND, PLDA_FORMAT_VERSION,
                       {"mean": self.mean, "transform": self.transform, "psi": self.psi,
                        "between": self.between, "within": self.within,
                        "dim": np.array(self.dim, dtype=np.int64),
                        "config_json": np.array(json.dumps(dataclasses.asdict(self.config)))},
                       meta)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TwoCovPLDA":
        data, _ = load_model_npz(path, PLDA_KIND, (PLDA_FORMAT_VERSION,))
        names = ("mean", "transform", "psi", "between", "within", "dim", "config_json")
        require_arrays(data, names, path, PLDA_KIND)
        try:
            config = PldaConfig(**json.loads(str(data["config_json"])))
            model = cls(mean=data["mean"], transform=data["transform"], psi=data["psi"],
                        between=data["between"], within=data["within"], config=config,
                        source=str(path))
        except (TypeError, ValueError) as e:
            raise ModelFileError(f"{path}: corrupt {PLDA_KIND} file: {e}") from e
        if int(data["dim"]) != model.dim:
            raise ModelFileError(f"{path}: records dim {int(data['dim'])} but holds a "
                                 f"{model.dim}-dim model")
        return model


# --------------------------------------------------------------------------------------
# Training


@dataclass(eq=False)
class PldaStats:
    """Per-speaker sufficient statistics (Kaldi's ``PldaStats``, every speaker weight 1)."""

    class_means: np.ndarray     # (S, D)
    counts: np.ndarray          # (S,) utterances per speaker
    offset_scatter: np.ndarray  # (D, D) sum of (x - speaker mean)(x - speaker mean)^T

    @classmethod
    def from_labels(cls, x, labels) -> "PldaStats":
        x = _as_matrix(x)
        inverse, counts = _class_index(labels, x.shape[0])
        sums = np.zeros((counts.size, x.shape[1]))
        np.add.at(sums, inverse, x)
        means = sums / counts[:, None]
        resid = x - means[inverse]
        return cls(class_means=means, counts=counts, offset_scatter=_symmetric(resid.T @ resid))

    @property
    def dim(self) -> int:
        return int(self.class_means.shape[1])

    @property
    def num_classes(self) -> int:
        return int(self.counts.size)

    @property
    def num_examples(self) -> int:
        return int(self.counts.sum())

    @property
    def mean(self) -> np.ndarray:
        """Kaldi's PLDA mean: the average of the speaker means, each speaker counted once."""
        return self.class_means.mean(axis=0)


class PldaEstimator:
    """EM for the two-covariance model (Kaldi's ``PldaEstimator``)."""

    def __init__(self, stats: PldaStats, init: str = "scatter") -> None:
        if stats.num_classes < 2:
            raise UnusableDataError(f"PLDA needs at least 2 speakers, got {stats.num_classes}")
        if stats.num_examples <= stats.num_classes:
            raise UnusableDataError("every speaker has a single utterance: the within-class "
                                    "covariance cannot be estimated; PLDA needs speakers with "
                                    "several utterances")
        if stats.num_examples - stats.num_classes < stats.dim:
            logger.warning("PLDA: only %d within-speaker degrees of freedom for %d dims; the "
                           "within-class covariance will be poorly estimated",
                           stats.num_examples - stats.num_classes, stats.dim)
        self.stats = stats
        self._centered = stats.class_means - stats.mean
        # Speakers with the same utterance count share their posterior covariance.
        self._groups = [(int(n), np.flatnonzero(stats.counts == n)) for n in np.unique(stats.counts)]
        if init == "identity":
            self.within = np.eye(stats.dim)
            self.between = np.eye(stats.dim)
        elif init == "scatter":
            self.within, self.between = self._moment_estimates()
        else:
            raise ValueError(f"init must be 'scatter' or 'identity', got {init!r}")
        self.objf_history: list[float] = [self.objective()]

    def _moment_estimates(self) -> tuple[np.ndarray, np.ndarray]:
        s = self.stats
        dim = s.dim
        within = s.offset_scatter / (s.num_examples - s.num_classes)
        evals = np.linalg.eigvalsh(within)
        if evals[0] <= 1e-10 * max(evals[-1], 1e-300):
            # Fewer within-speaker degrees of freedom than dims: start as Kaldi does.
            logger.warning("PLDA: within-speaker scatter is singular; starting EM from identity")
            return np.eye(dim), np.eye(dim)
        between = (self._centered.T @ self._centered / s.num_classes
                   - np.mean(1.0 / s.counts) * within)
        # The difference need not be positive definite; floor its eigenvalues in the
        # within-whitened space (a between-class variance of 1e-3 of the within-class one
        # is "almost no speaker information" and keeps B invertible for EM).
        chol = np.linalg.cholesky(within)
        whiten = scipy.linalg.solve_triangular(chol, np.eye(dim), lower=True)
        psi, u = scipy.linalg.eigh(_symmetric(whiten @ between @ whiten.T))
        psi = np.maximum(psi, 1e-3)
        between = _symmetric(chol @ (u * psi) @ u.T @ chol.T)
        return _symmetric(within), between

    def objective(self) -> float:
        """Log-likelihood of the training data per vector (Kaldi's ComputeObjf), mean fixed."""
        s = self.stats
        dim = s.dim
        within_inv, within_logdet = _inv_logdet(self.within, "within-class covariance")
        part1 = -0.5 * ((s.num_examples - s.num_classes) * (within_logdet + dim * LOG_2PI)
                        + float(np.sum(within_inv * s.offset_scatter)))
        part2 = 0.0
        for n, idx in self._groups:
            # The mean of n vectors of a speaker has covariance B + W/n about mu.
            inv, logdet = _inv_logdet(self.between + self.within / n, "between + within/n")
            m = self._centered[idx]
            part2 += -0.5 * (idx.size * (logdet + dim * LOG_2PI)
                             + float(np.sum((m @ inv) * m)))
        return (part1 + part2) / s.num_examples

    def em_iteration(self) -> float:
        """One EM update of ``within`` and ``between``; returns the new objective."""
        s = self.stats
        between_inv, _ = _inv_logdet(self.between, "between-class covariance")
        within_inv, _ = _inv_logdet(self.within, "within-class covariance")
        within_stats = s.offset_scatter.copy()
        within_count = float(s.num_examples - s.num_classes)
        between_stats = np.zeros((s.dim, s.dim))
        between_count = 0.0
        for n, idx in self._groups:
            # Posterior of the speaker variable given the mean m of n vectors:
            # covariance (B^-1 + n W^-1)^-1, mean that times n W^-1 m.
            post_cov, _ = _inv_logdet(between_inv + n * within_inv, "posterior precision")
            m = self._centered[idx]
            w = n * (m @ within_inv) @ post_cov
            k = idx.size
            between_stats += k * post_cov + w.T @ w
            between_count += k
            # The mean's deviation from the speaker variable counts as one more within-class
            # sample, scaled by n because its covariance is W/n.
            d = m - w
            within_stats += n * (k * post_cov + d.T @ d)
            within_count += k
        self.within = _symmetric(within_stats / within_count)
        self.between = _symmetric(between_stats / between_count)
        objf = self.objective()
        self.objf_history.append(objf)
        return objf

    def estimate(self, num_iters: int) -> None:
        for it in range(1, num_iters + 1):
            before = self.objf_history[-1]
            objf = self.em_iteration()
            logger.info("PLDA EM iteration %d/%d: objective %.6f per vector (%+.3g); trace of "
                        "within %.4g, between %.4g", it, num_iters, objf, objf - before,
                        np.trace(self.within), np.trace(self.between))
            if objf < before - 1e-9 * max(1.0, abs(before)):
                logger.warning("PLDA EM objective decreased from %.9f to %.9f: numerical "
                               "trouble (near-singular covariances?)", before, objf)

    def model(self, config: PldaConfig | None = None) -> TwoCovPLDA:
        model = TwoCovPLDA.from_covariances(self.stats.mean, self.between, self.within, config)
        logger.info("PLDA: %d dims; between-class variances in the normalised space: %s",
                    model.dim, np.array2string(model.psi[:min(model.dim, 10)], precision=3)
                    + (" ..." if model.dim > 10 else ""))
        return model


def train_plda(x, labels, config: PldaConfig | None = None) -> TwoCovPLDA:
    """Train two-covariance PLDA on i-vectors ``x`` (N, D) with speaker ``labels`` (N,).

    ``config.num_em_iters`` EM iterations as ``ivector-compute-plda``; the returned model
    carries ``config`` for scoring (its length-normalisation options).
    """
    config = config if config is not None else PldaConfig()
    stats = PldaStats.from_labels(x, labels)
    logger.info("PLDA: %d vectors of %d speakers, dim %d", stats.num_examples,
                stats.num_classes, stats.dim)
    estimator = PldaEstimator(stats)
    logger.info("PLDA EM start: objective %.6f per vector", estimator.objf_history[0])
    estimator.estimate(config.num_em_iters)
    return estimator.model(config)


def cosine_scores(enroll, test) -> np.ndarray:
    """Row-wise cosine similarity of ``enroll`` and ``test`` (N, D); a zero vector scores 0."""
    enroll = np.asarray(enroll, dtype=np.float64)
    test = np.asarray(test, dtype=np.float64)
    if enroll.shape[-1] != test.shape[-1]:
        raise SizeMismatchError(f"enrollment vectors are {enroll.shape[-1]}-dim but test vectors "
                                f"are {test.shape[-1]}-dim")
    dots = np.sum(enroll * test, axis=-1)
    norms = np.linalg.norm(enroll, axis=-1) * np.linalg.norm(test, axis=-1)
    return np.divide(dots, norms, out=np.zeros_like(dots, dtype=np.float64), where=norms > 0)
