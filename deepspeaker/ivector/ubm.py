"""The universal background model: a diagonal-covariance GMM over front-end frames (SPEC B1).

The paper trains "a 1024 diagonal component UBM" (§4.2). We fit it with
scikit-learn's EM on a seeded random subset of the voiced training frames, as
Kaldi's sid/train_diag_ubm.sh trains on a subsample rather than every frame, and
keep the result as a small ``DiagGmm`` whose frame log-likelihoods are two matrix
products, so the Baum-Welch statistics of a whole corpus are a few large GEMMs.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
import torch

from deepspeaker.ivector.model_file import (ModelFileError, load_model_npz, require_arrays,
                                            save_model_npz)
from deepspeaker.utils import SizeMismatchError, UnusableDataError

logger = logging.getLogger(__name__)

DIAG_GMM_FORMAT = "deepspeaker.DiagGmm"
DIAG_GMM_VERSION = 1


@dataclass(eq=False)
class DiagGmm:
    """A GMM with diagonal covariances: ``weights`` (C,), ``means`` and ``variances`` (C, F)."""

    weights: np.ndarray
    means: np.ndarray
    variances: np.ndarray
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.weights = np.asarray(self.weights, dtype=np.float64)
        self.means = np.asarray(self.means, dtype=np.float64)
        self.variances = np.asarray(self.variances, dtype=np.float64)
        c = self.weights.shape[0] if self.weights.ndim == 1 else -1
        if (self.weights.ndim != 1 or self.means.ndim != 2 or self.means.shape[0] != c
                or self.variances.shape != self.means.shape):
            raise SizeMismatchError(f"inconsistent GMM shapes: weights {self.weights.shape}, means "
                             f"{self.means.shape}, variances {self.variances.shape}")
        if np.any(self.variances <= 0) or np.any(self.weights < 0):
            raise ValueError("GMM variances must be > 0 and weights >= 0")

    @property
    def num_components(self) -> int:
        return self.weights.shape[0]

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def save(self, path: str | os.PathLike, meta: dict | None = None) -> None:
        """Write an npz (atomically) with a format tag, version, dims and ``meta`` as JSON.

        ``meta`` (e.g. the front-end options the frames were made with) is merged over
        ``self.meta`` (training info); it must be JSON-serialisable.
        """
        save_model_npz(path, DIAG_GMM_FORMAT, DIAG_GMM_VERSION,
                       {"num_components": np.array(self.num_components), "dim": np.array(self.dim),
                        "weights": self.weights, "means": self.means, "variances": self.variances},
                       {**self.meta, **(meta or {})})

    @classmethod
    def load(cls, path: str | os.PathLike) -> "DiagGmm":
        data, meta = load_model_npz(path, DIAG_GMM_FORMAT, (DIAG_GMM_VERSION,))
        require_arrays(data, ("num_components", "dim", "weights", "means", "variances"), path,
                       DIAG_GMM_FORMAT)
        try:
            gmm = cls(data["weights"], data["means"], data["variances"], meta=meta)
        except (KeyError, ValueError) as e:
            raise ModelFileError(f"{path}: corrupt DiagGmm: {e}") from e
        if (gmm.num_components, gmm.dim) != (int(data["num_components"]), int(data["dim"])):
            raise ModelFileError(
                f"{path}: header says {int(data['num_components'])} components of dim "
                f"{int(data['dim'])}, arrays hold {gmm.num_components} of dim {gmm.dim}")
        return gmm

    def _check_frames(self, x: torch.Tensor | np.ndarray, dtype: torch.dtype) -> torch.Tensor:
        x = torch.as_tensor(x).to(dtype)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise SizeMismatchError(f"frames of shape {tuple(x.shape)} do not match the GMM's "
                             f"feature dim {self.dim}")
        return x

    def log_likelihood_params(self, dtype: torch.dtype = torch.float64
                              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(A, B, const), (F, C), (F, C), (C,), with log(w_c N(x|c)) = x^2 @ A + x @ B + const."""
        inv_var = 1.0 / self.variances
        a = -0.5 * inv_var.T
        b = (self.means * inv_var).T
        with np.errstate(divide="ignore"):
            log_w = np.log(self.weights)
        const = log_w - 0.5 * (self.dim * math.log(2 * math.pi) + np.log(self.variances).sum(1)
                               + (self.means ** 2 * inv_var).sum(1))
        return (torch.from_numpy(a).to(dtype), torch.from_numpy(b).to(dtype),
                torch.from_numpy(const).to(dtype))

    def log_likelihoods(self, x: torch.Tensor | np.ndarray,
                        dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """(T, F) frames -> (T, C) ``log(w_c N(x_t | mu_c, diag(var_c)))``.

        Computed as ``x^2 @ A + x @ B + const`` in float64 by default: the three terms
        are each hundreds in size for 60-d MFCC and cancel to a much smaller number,
        which float32 would leave with errors of ~1e-4 in the posteriors.
        """
        x = self._check_frames(x, dtype)
        a, b, const = self.log_likelihood_params(dtype)
        return torch.addmm(const, x * x, a).addmm_(x, b)

    def posteriors(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        """(T, C) component posteriors of frames ``x`` (float64)."""
        return torch.softmax(self.log_likelihoods(x), dim=1)


def train_ubm(frames: np.ndarray, num_components: int, *, max_iter: int = 20, seed: int = 0,
              tol: float = 1e-3, reg_covar: float = 1e-4, init: str = "k-means++",
              log: logging.Logger = logger) -> DiagGmm:
    """Fit a diagonal GMM to ``frames`` (N, F) with scikit-learn's EM; returns a DiagGmm.

    Initialisation: the means are ``"k-means++"`` picks of data points (default) or
    ``"random_from_data"`` rows; every component starts with the global per-dimension
    variance and equal weight, as Kaldi's gmm-global-init-from-feats starts from the
    global Gaussian. No full k-means is run (sklearn's ``"kmeans"``): over hundreds of
    thousands of frames and 1024 centres it costs more than the EM itself, while
    k-means++ seeding costs about one EM iteration and spreads the seeds over the data
    better than random rows. (sklearn's own k-means++ init gives each component the
    covariance of its single seed point, i.e. ``reg_covar``, and a first logged
    log-likelihood of about -1e7; on the mini corpus both reach the same likelihood.)

    EM runs one iteration per ``fit`` call (``warm_start``), so that the average
    log-likelihood of every iteration is logged; it stops when that changes by less
    than ``tol`` (sklearn's own criterion) or after ``max_iter`` iterations. The cost is
    one extra E-step per iteration (sklearn's closing E-step of each ``fit``).
    ``reg_covar`` is added to every variance (a floor against collapsing components).

    Memory: sklearn keeps several (N, C) float64 arrays, about 4 * N * C * 8 bytes;
    500k frames x 1024 components is ~16 GB, so subsample (``sample_frames``) first.
    """
    from sklearn.cluster import kmeans_plusplus
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    x = np.asarray(frames, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"expected frames of shape (frames, dims), got {x.shape}")
    if x.shape[0] < num_components:
        raise UnusableDataError(f"{x.shape[0]} frames are too few for {num_components} components")
    if not np.all(np.isfinite(x)):
        raise UnusableDataError("frames contain NaN or inf")
    if init == "k-means++":
        means_init, _ = kmeans_plusplus(x, num_components, random_state=seed)
    elif init == "random_from_data":
        rng = np.random.default_rng(seed)
        means_init = x[rng.choice(x.shape[0], num_components, replace=False)]
    else:
        raise ValueError(f"init must be 'k-means++' or 'random_from_data', got {init!r}")
    global_var = x.var(axis=0) + reg_covar
    # sklearn computes (and here discards) an init of its own even when all three
    # *_init arrays are given; "random_from_data" is the cheapest one (its default,
    # "kmeans", would run the full k-means).
    gm = GaussianMixture(n_components=num_components, covariance_type="diag", tol=tol,
                         reg_covar=reg_covar, max_iter=1, random_state=seed, warm_start=True,
                         init_params="random_from_data",
                         weights_init=np.full(num_components, 1.0 / num_components),
                         means_init=means_init,
                         precisions_init=np.tile(1.0 / global_var, (num_components, 1)))
    log.info("training a %d-component diagonal UBM on %d frames of dim %d (init %s, seed %d)",
             num_components, x.shape[0], x.shape[1], init, seed)
    prev = -np.inf
    converged = False
    with warnings.catch_warnings():
        # Each one-iteration fit "did not converge"; we test convergence ourselves.
        warnings.simplefilter("ignore", ConvergenceWarning)
        for it in range(1, max_iter + 1):
            gm.fit(x)
            bound = float(gm.lower_bound_)
            log.info("UBM iteration %d: average log-likelihood %.5f (change %.3g)",
                     it, bound, bound - prev)
            if abs(bound - prev) < tol:
                converged = True
                break
            prev = bound
    log.info("UBM EM %s after %d iterations", "converged" if converged else "did not converge",
             it)
    return DiagGmm(gm.weights_, gm.means_, gm.covariances_,
                   meta={"converged": converged, "iterations": it,
                         "avg_log_likelihood": float(gm.lower_bound_)})


def sample_frames(utt_frames: Iterable[np.ndarray], max_frames: int, seed: int) -> np.ndarray:
    """A seeded uniform random subset of at most ``max_frames`` frames across utterances.

    ``utt_frames`` is consumed once and kept as a list of references (the arrays are not
    concatenated), so the total is known and the pick is a plain ``choice`` without
    replacement over all frames; the selected frames come back in corpus order,
    float32. With fewer than ``max_frames`` frames in total, all of them are returned.
    """
    utts = [np.asarray(u) for u in utt_frames]
    if not utts:
        raise UnusableDataError("no utterances to sample frames from")
    dims = {u.shape[1] if u.ndim == 2 else None for u in utts}
    if len(dims) != 1 or None in dims:
        raise SizeMismatchError(f"utterances must all be (frames, dim) with one dim; got dims "
                                f"{dims}")
    (dim,) = dims
    lengths = np.array([u.shape[0] for u in utts], dtype=np.int64)
    total = int(lengths.sum())
    if total == 0:
        raise UnusableDataError("the utterances hold no frames")
    if max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    if total <= max_frames:
        return np.concatenate(utts).astype(np.float32, copy=False)
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(total, size=max_frames, replace=False))
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    out = np.empty((max_frames, dim), dtype=np.float32)
    # Boundaries of each utterance's share of the sorted picks.
    bounds = np.searchsorted(picks, offsets)
    for i, u in enumerate(utts):
        lo, hi = bounds[i], bounds[i + 1]
        if hi > lo:
            out[lo:hi] = u[picks[lo:hi] - offsets[i]]
    return out
