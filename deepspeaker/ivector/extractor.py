"""Total-variability i-vector extractor: EM training and extraction (SPEC B2, paper §4.2).

Model (diagonal UBM covariances): given utterance u's frame alignment to the UBM,

    x_t | c, w_u  ~  N(means_c + T_c w_u, diag(sigma_c)),        w_u ~ N(0, I_R)

with the Baum-Welch statistics N[u, c], F[u, c] (uncentered) as the only data. The
posterior of w_u is Gaussian with precision and mean

    P_u = I + sum_c N_uc U_c,   U_c = T_c' Sigma_c^-1 T_c            (R x R)
    phi_u = P_u^-1 b_u,         b_u = sum_c T_c' Sigma_c^-1 (F_uc - N_uc means_c)

and phi_u is the i-vector. EM follows Kaldi's ivector-extractor-est: E-step as
above; M-step T_c = C_c A_c^-1 with A_c = sum_u N_uc E[w w'], C_c = sum_u F~_uc phi_u';
optional variance update; then the "minimum divergence" step, which is the
maximum-likelihood update of the prior N(mu, S) over the same posteriors followed by
the change of variables w = mu + L z (L L' = S) that brings the prior back to N(0, I):
T <- T L, means <- means + T mu. That last step changes the parametrisation, not the
likelihood, so EM stays monotone; ``objective`` is the marginal log-likelihood that
must not decrease.

Vectorisation: the U_c are computed once per iteration for all components and kept
packed (lower triangle, R(R+1)/2 entries), so a batch of B utterances gets all its
precisions from one GEMM (B, C) @ (C, R(R+1)/2), solved with batched Cholesky; the
M-step statistics are GEMMs too (A = N' @ E[ww'] packed, C = F~' @ phi). The M-step
solves run over chunks of components.

Precision: all batched work (the GEMMs, the posterior Cholesky, solve and inverse)
runs in ``dtype``, float32 by default; the centring of F, every accumulator, the
objective sums, the M-step solves and the minimum-divergence step are float64. At
R = 400 (C = 64, F = 60, 1000 utterances, 8 iterations from Kaldi's random init)
float32 gave the same objective trace as float64 to 1e-7 per frame (~1e-9 relative)
and the same T to 2e-6 relative, in two thirds of the time.

Memory (float32 work, float64 accumulators): U packed, C R^2/2 * 4 bytes, and the
accumulator A, C R^2/2 * 8: for C = 1024, R = 400 0.33 + 0.66 GB (the unpacked
float32 U would be 0.66 GB alone). Per batch a few (B, R, R) arrays, ~4 B R^2 * 4
bytes (B = 256, R = 400: 0.66 GB; lower ``batch_size`` to trade speed for memory).
The M-step unpacks ``component_chunk`` full R x R matrices at a time.

Threads: MKL's Cholesky factor, solve and inverse of one matrix split their work over
torch's threads, and their bits change with the thread count (R = 200: 1 vs 2 threads
differ by rounding; below R ~ 100 the factor and solve do not), while the GEMMs here
gave the same bits.  Extraction therefore runs its Cholesky factor and solve on one
thread: i-vectors are then the same whatever the thread count, so whatever ``--nj``;
and one thread was the faster anyway (256 matrices of R = 400: 1.5 s on one thread,
3.7 s on two, on the shared 2-core machine).  The EM keeps the stage's threads: it runs
in one process whatever ``--nj``, and one thread there would change today's models.

Devices: every function takes ``device``; the model, accumulators and solves live
there, each batch of stats moves there once and its results come back once, so a CPU
computes exactly what it did before the option.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from dataclasses import dataclass, field

import numpy as np
import torch

from deepspeaker.devices import to_device
from deepspeaker.ivector.model_file import (ModelFileError, load_model_npz, require_arrays,
                                            save_model_npz)
from deepspeaker.ivector.ubm import DiagGmm
from deepspeaker.threads import single_thread
from deepspeaker.utils import DeepSpeakerError, SizeMismatchError

logger = logging.getLogger(__name__)

EXTRACTOR_FORMAT = "deepspeaker.IvectorExtractor"
EXTRACTOR_VERSION = 1

# The dtype of the batched E-step work; see "Precision" in the module docstring.
DEFAULT_DTYPE = torch.float32
# Utterances per batch of extraction (the stage plans its jobs on multiples of it).
EXTRACT_BATCH = 256
# Kaldi's ivector-extractor-est: a Gaussian with less total count keeps its old T_c.
GAUSSIAN_MIN_COUNT = 100.0
# Kaldi's variance_floor_factor: new variances >= 0.1 x the count-weighted average.
VARIANCE_FLOOR_FACTOR = 0.1
# Kaldi's UpdatePrior: eigenvalues of the i-vector covariance are floored here.
PRIOR_EIG_FLOOR = 1e-7
# train_extractor raises if the objective per frame drops by more than this times
# max(1, |objective|). Float32 rounding moves it by ~1e-9 relative at R = 400 and by
# ~1e-8 on the tiny synthetic tests; a real bug moves it by far more.
OBJECTIVE_REL_TOL = 1e-6


@dataclass(eq=False)
class IvectorExtractor:
    """T (C, F, R), diagonal ``sigma`` (C, F), centring ``means`` (C, F), UBM ``weights`` (C,)."""

    T: np.ndarray
    sigma: np.ndarray
    means: np.ndarray
    weights: np.ndarray
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.T = np.asarray(self.T, dtype=np.float64)
        self.sigma = np.asarray(self.sigma, dtype=np.float64)
        self.means = np.asarray(self.means, dtype=np.float64)
        self.weights = np.asarray(self.weights, dtype=np.float64)
        if (self.T.ndim != 3 or self.sigma.shape != self.T.shape[:2]
                or self.means.shape != self.T.shape[:2] or self.weights.shape != self.T.shape[:1]):
            raise SizeMismatchError(f"inconsistent extractor shapes: T {self.T.shape}, sigma "
                                    f"{self.sigma.shape}, means {self.means.shape}, weights "
                                    f"{self.weights.shape}")
        if np.any(self.sigma <= 0):
            raise ValueError("extractor variances must be > 0")

    @property
    def num_components(self) -> int:
        return self.T.shape[0]

    @property
    def feat_dim(self) -> int:
        return self.T.shape[1]

    @property
    def ivector_dim(self) -> int:
        return self.T.shape[2]

    def save(self, path: str | os.PathLike, meta: dict | None = None) -> None:
        """npz, written atomically, with a format tag, version, dims and meta as JSON.

        ``meta`` is merged over ``self.meta`` (which holds the objective trace).
        """
        save_model_npz(path, EXTRACTOR_FORMAT, EXTRACTOR_VERSION,
                       {"num_components": np.array(self.num_components),
                        "feat_dim": np.array(self.feat_dim), "ivector_dim": np.array(self.ivector_dim),
                        "T": self.T, "sigma": self.sigma, "means": self.means, "weights": self.weights},
                       {**self.meta, **(meta or {})})

    @classmethod
    def load(cls, path: str | os.PathLike) -> "IvectorExtractor":
        data, meta = load_model_npz(path, EXTRACTOR_FORMAT, (EXTRACTOR_VERSION,))
        require_arrays(data, ("num_components", "feat_dim", "ivector_dim", "T", "sigma", "means",
                              "weights"), path, EXTRACTOR_FORMAT)
        try:
            ext = cls(data["T"], data["sigma"], data["means"], data["weights"],
                      meta=meta)
        except (KeyError, ValueError) as e:
            raise ModelFileError(f"{path}: corrupt IvectorExtractor: {e}") from e
        header = (int(data["num_components"]), int(data["feat_dim"]), int(data["ivector_dim"]))
        if header != ext.T.shape:
            raise ModelFileError(f"{path}: header says (components, feat dim, ivector dim) = "
                                   f"{header}, but T has shape {ext.T.shape}")
        return ext

    def check_stats(self, N: np.ndarray, F: np.ndarray) -> None:
        """SizeMismatchError (a ValueError) naming both sides when stats do not fit."""
        N, F = np.asarray(N), np.asarray(F)
        if N.ndim != 2 or F.ndim != 3 or F.shape[:2] != N.shape:
            raise SizeMismatchError(f"stats must be N (utts, components) and F (utts, "
                                    f"components, feat dim) with matching leading dims; got N "
                                    f"{N.shape}, F {F.shape}")
        want = (self.num_components, self.feat_dim)
        if F.shape[1:] != want:
            raise SizeMismatchError(f"stats have {F.shape[1]} components of feat dim "
                                    f"{F.shape[2]}, but the extractor has {want[0]} components "
                                    f"of feat dim {want[1]}")

    def check_ubm(self, ubm: DiagGmm) -> None:
        """SizeMismatchError if ``ubm`` is not the UBM this extractor was trained with."""
        if (ubm.num_components, ubm.dim) != (self.num_components, self.feat_dim):
            raise SizeMismatchError(
                f"UBM has {ubm.num_components} components of dim {ubm.dim}, the extractor "
                f"{self.num_components} of dim {self.feat_dim}")

    def extract(self, N: np.ndarray, F: np.ndarray, batch_size: int = EXTRACT_BATCH,
                dtype: torch.dtype = DEFAULT_DTYPE, device: torch.device | str = "cpu",
                terms: "ModelTerms | None" = None) -> np.ndarray:
        """Posterior-mean i-vectors (U, R), float64, of stats N (U, C) and F (U, C, F).

        The same bits whatever torch's thread count (see "Threads" in the module
        docstring), so that extraction in ``--nj`` jobs of one thread each writes what
        one process of many threads writes.  ``terms`` (:func:`model_terms` of this
        extractor, with its own device and dtype) saves remaking them at every call.
        """
        self.check_stats(N, F)
        return _e_step(self, N, F, batch_size=batch_size, dtype=dtype, want_ivectors=True,
                       accumulate=False, device=device, terms=terms).ivectors

    def objective(self, N: np.ndarray, F: np.ndarray, S: np.ndarray | None = None,
                  batch_size: int = 256, dtype: torch.dtype = DEFAULT_DTYPE,
                  device: torch.device | str = "cpu") -> float:
        """Average per-frame marginal log-likelihood of the stats (w integrated out).

        Without the second-order stats S (C, F) it leaves out the data-only term
        -1/2 sum_t gamma_tc x_t' Sigma_c^-1 x_t, which is constant while sigma is; pass S
        when sigma changes (``update_sigma``). The UBM weight term is always left out.
        """
        self.check_stats(N, F)
        return _e_step(self, N, F, S=S, batch_size=batch_size, dtype=dtype, want_ivectors=False,
                       accumulate=False, device=device).objective


def init_extractor(ubm: DiagGmm, rank: int, seed: int = 0) -> IvectorExtractor:
    """A new extractor around ``ubm``: T with standard-normal entries (Kaldi's SetRandn).

    Kaldi's own init also puts the scaled UBM means in T's first column (its prior
    offset); here the means are kept apart, as ``means``, so T is purely random.
    """
    if rank < 1:
        raise ValueError(f"ivector rank must be >= 1, got {rank}")
    rng = np.random.default_rng(seed)
    T = rng.standard_normal((ubm.num_components, ubm.dim, rank))
    return IvectorExtractor(T=T, sigma=ubm.variances.copy(), means=ubm.means.copy(),
                            weights=ubm.weights.copy())


@dataclass
class _EStepResult:
    objective: float = 0.0                 # per frame
    ivectors: np.ndarray | None = None
    A: torch.Tensor | None = None          # (C, R(R+1)/2) packed sum_u N_uc E[ww'], float64
    Cstat: torch.Tensor | None = None      # (C*F, R) sum_u F~_uc phi_u', float64
    sum_phi: torch.Tensor | None = None    # (R,)
    sum_eww: torch.Tensor | None = None    # (R(R+1)/2,) packed sum_u E[ww']
    num_utts: int = 0


def _tril(r: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    idx = torch.tril_indices(r, r, device=device)
    return idx[0], idx[1]


@dataclass
class ModelTerms:
    """What the E-step needs of a model, on its device: made once per model, not per call.

    (U_c packed is a (C, F, R) x (C, F, R) product: at C = 1024, R = 400 it costs half
    the GEMMs of a batch of 256 utterances, so a job extracting 256 at a time reuses it.)
    """

    device: torch.device
    dtype: torch.dtype
    means: torch.Tensor          # (C, F) float64
    lin: torch.Tensor            # (C*F,) float64: Sigma^-1 m
    quad: torch.Tensor           # (C,) float64: m' Sigma^-1 m + log|2 pi Sigma|
    U_packed: torch.Tensor       # (C, R(R+1)/2) in dtype
    T_sinv_flat: torch.Tensor    # (C*F, R) in dtype
    low: torch.Tensor            # flat positions of the packed lower triangle in R x R
    up: torch.Tensor             # and of its mirror image


def model_terms(ext: IvectorExtractor, device: torch.device | str = "cpu",
                dtype: torch.dtype = DEFAULT_DTYPE) -> ModelTerms:
    """The :class:`ModelTerms` of ``ext`` on ``device``, batched work in ``dtype``."""
    device = torch.device(device)
    num_c, dim, rank = ext.T.shape
    T64 = to_device(ext.T, device)
    inv_sigma = to_device(1.0 / ext.sigma, device)
    means = to_device(ext.means, device)
    T_sinv = T64 * inv_sigma[:, :, None]                                     # (C, F, R)
    i0, i1 = _tril(rank, device)
    U_packed = torch.einsum("cfr,cfs->crs", T_sinv, T64)[:, i0, i1].to(dtype)  # (C, R(R+1)/2)
    # Objective terms that need no posterior: sum_c m_c' S_c^-1 F_uc - 1/2 N_uc (m_c' S_c^-1 m_c
    # + log|2 pi Sigma_c|), in float64.
    quad = ((means ** 2 * inv_sigma).sum(1) + torch.log(to_device(ext.sigma, device)).sum(1)
            + dim * math.log(2 * math.pi))
    return ModelTerms(device, dtype, means, (means * inv_sigma).reshape(-1), quad, U_packed,
                      T_sinv.reshape(num_c * dim, rank).to(dtype),
                      i0 * rank + i1, i1 * rank + i0)


def _e_step(ext: IvectorExtractor, N: np.ndarray, F: np.ndarray, *, S: np.ndarray | None = None,
            batch_size: int, dtype: torch.dtype, want_ivectors: bool, accumulate: bool,
            device: torch.device | str = "cpu", terms: ModelTerms | None = None
            ) -> _EStepResult:
    """Posteriors of w for all utterances in batches; objective, i-vectors and/or M-step stats.

    The model (``terms``, made here when None) and the accumulators live on its device;
    each batch of N and F goes there in one copy and its i-vectors come back in one.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if terms is None:
        terms = model_terms(ext, device, dtype)
    device, dtype = terms.device, terms.dtype
    N, F = np.asarray(N), np.asarray(F)
    num_c, dim, rank = ext.T.shape
    num_u = N.shape[0]
    f64 = torch.float64
    packed_size = terms.low.numel()
    total = 0.0
    frames = 0.0
    res = _EStepResult(num_utts=num_u)
    if want_ivectors:
        res.ivectors = np.empty((num_u, rank), dtype=np.float64)
    if accumulate:
        res.A = torch.zeros(num_c, packed_size, dtype=f64, device=device)
        res.Cstat = torch.zeros(num_c * dim, rank, dtype=f64, device=device)
        res.sum_phi = torch.zeros(rank, dtype=f64, device=device)
        res.sum_eww = torch.zeros(packed_size, dtype=f64, device=device)
    # One (B, R, R) buffer for all batches: the two index_copy_ calls below overwrite every
    # entry, so it never needs zeroing (zeroing a fresh 160 MB tensor per batch, B = 256
    # and R = 400 in float32, took longer than the GEMM that fills it).
    prec_buf = torch.empty(min(batch_size, num_u), rank * rank, dtype=dtype, device=device)
    # Extraction: LAPACK on one thread (see "Threads" in the module docstring).
    lapack_threads = single_thread if want_ivectors and not accumulate else contextlib.nullcontext
    for b0 in range(0, num_u, batch_size):
        Nb = to_device(N[b0:b0 + batch_size], device).to(f64)                 # (B, C)
        Fb = to_device(F[b0:b0 + batch_size], device).to(f64)                 # (B, C, F)
        B = Nb.shape[0]
        total += float((Fb.reshape(B, -1) @ terms.lin).sum()) - 0.5 * float((Nb @ terms.quad).sum())
        frames += float(Nb.sum())
        Ft = (Fb - Nb[:, :, None] * terms.means).reshape(B, num_c * dim).to(dtype)  # centred
        Nb_d = Nb.to(dtype)
        lin_b = Ft @ terms.T_sinv_flat                                        # (B, R)
        chol = _posterior_factor(terms, Nb_d, prec_buf[:B], b0, lapack_threads)
        with lapack_threads():
            phi = torch.cholesky_solve(lin_b[:, :, None], chol)[:, :, 0]     # (B, R)
        logdet = 2.0 * torch.log(torch.diagonal(chol, dim1=1, dim2=2).to(f64)).sum(1)
        total += 0.5 * float((lin_b.to(f64) * phi.to(f64)).sum()) - 0.5 * float(logdet.sum())
        if want_ivectors:
            res.ivectors[b0:b0 + B] = phi.cpu().numpy()
        if accumulate:
            _accumulate(res, terms, chol, phi, Nb_d, Ft)
    if S is not None:
        S = np.asarray(S)
        if S.shape != (num_c, dim):
            raise SizeMismatchError(f"second-order stats have shape {S.shape}, the extractor "
                                    f"needs {(num_c, dim)}")
        total -= 0.5 * float((S / ext.sigma).sum())
    res.objective = total / max(frames, 1e-30)
    return res


def _posterior_factor(terms: ModelTerms, Nb_d: torch.Tensor, prec: torch.Tensor, b0: int,
                      lapack_threads) -> torch.Tensor:
    """Cholesky factors of the batch's posterior precisions I + sum_c N_uc U_c, built in
    ``prec`` (B, R*R) from one GEMM (B, C) @ (C, R(R+1)/2) and unpacked."""
    B = Nb_d.shape[0]
    rank = terms.T_sinv_flat.shape[1]
    packed = Nb_d @ terms.U_packed                                            # (B, R(R+1)/2)
    prec.index_copy_(1, terms.low, packed).index_copy_(1, terms.up, packed)
    prec = prec.view(B, rank, rank)
    prec.diagonal(dim1=1, dim2=2).add_(1.0)
    with lapack_threads():
        chol, info = torch.linalg.cholesky_ex(prec)
    if bool((info != 0).any()):
        bad = int(torch.nonzero(info)[0]) + b0
        raise DeepSpeakerError(f"utterance {bad}: i-vector posterior precision is not "
                               "positive definite (NaN or inf in the stats or the model?)")
    return chol


def _accumulate(res: _EStepResult, terms: ModelTerms, chol: torch.Tensor, phi: torch.Tensor,
                Nb_d: torch.Tensor, Ft: torch.Tensor) -> None:
    """Add a batch's M-step statistics (A, C, sum phi, sum E[ww']) to ``res``, in float64."""
    f64 = torch.float64
    B, rank = phi.shape
    eww = torch.cholesky_inverse(chol)                                          # posterior cov
    if not eww.is_contiguous():
        # LAPACK's column-major result; the matrix is symmetric, so its transpose
        # is the same matrix in row-major order.
        eww = eww.mT.contiguous()
    eww.baddbmm_(phi[:, :, None], phi[:, None, :])                             # E[w w']
    eww_packed = eww.view(B, rank * rank).index_select(1, terms.low)
    del eww
    res.A.add_((Nb_d.T @ eww_packed).to(f64))
    res.Cstat.add_((Ft.T @ phi).to(f64))
    res.sum_phi.add_(phi.to(f64).sum(0))
    res.sum_eww.add_(eww_packed.to(f64).sum(0))


def _unpack(packed: torch.Tensor, rank: int) -> torch.Tensor:
    """(n, R(R+1)/2) lower-triangle rows -> (n, R, R) symmetric."""
    i0, i1 = _tril(rank, packed.device)
    out = torch.zeros(packed.shape[0], rank, rank, dtype=packed.dtype, device=packed.device)
    out[:, i0, i1] = packed
    out[:, i1, i0] = packed
    return out


def absorb_prior(ext: IvectorExtractor, mean: np.ndarray, cov: np.ndarray,
                 eig_floor: float = PRIOR_EIG_FLOOR) -> IvectorExtractor:
    """The extractor with prior N(0, I) equivalent to ``ext`` with prior N(mean, cov).

    With L the Cholesky factor of cov (L L' = cov), w = mean + L z maps the one onto
    the other: T <- T L, means <- means + T mean; the likelihood of any stats is
    unchanged. Kaldi factors cov by eigendecomposition instead, which is equally
    valid, but the eigenvectors of nearly equal eigenvalues swing with rounding
    noise, so T would not be reproducible across float precisions; the Cholesky
    factor is a continuous function of cov. Eigenvalues below ``eig_floor`` (Kaldi's
    UpdatePrior floor) are raised first: the only case where the likelihood changes.
    """
    cov = np.asarray(cov, dtype=np.float64)
    cov = 0.5 * (cov + cov.T)
    s, P = np.linalg.eigh(cov)
    num_floored = int(np.sum(s < eig_floor))
    if num_floored:
        logger.warning("floored %d eigenvalues of the i-vector covariance (smallest %.3g)",
                       num_floored, s.min())
        cov = (P * np.maximum(s, eig_floor)) @ P.T
    L = np.linalg.cholesky(cov)
    return IvectorExtractor(T=ext.T @ L, sigma=ext.sigma.copy(),
                            means=ext.means + ext.T @ np.asarray(mean, dtype=np.float64),
                            weights=ext.weights.copy(), meta=dict(ext.meta))


def em_iteration(ext: IvectorExtractor, N: np.ndarray, F: np.ndarray, *,
                 S: np.ndarray | None = None, update_sigma: bool = False,
                 min_divergence: bool = True, batch_size: int = 256,
                 dtype: torch.dtype = DEFAULT_DTYPE, component_chunk: int = 64,
                 min_count: float = GAUSSIAN_MIN_COUNT,
                 log: logging.Logger = logger, device: torch.device | str = "cpu"
                 ) -> tuple[IvectorExtractor, float]:
    """One EM iteration; returns (new extractor, objective per frame of ``ext`` on the stats).

    ``update_sigma`` re-estimates the diagonal covariances and needs ``S`` (C, F), the
    summed second-order stats (``compute_stats_batch(..., second_order=True)``).
    E-step and M-step solves run on ``device``; the new T comes back once.
    """
    device = torch.device(device)
    ext.check_stats(N, F)
    if update_sigma and S is None:
        raise ValueError("update_sigma needs the second-order stats S (compute_stats_batch("
                         "..., second_order=True))")
    num_c, dim, rank = ext.T.shape
    e = _e_step(ext, N, F, S=S, batch_size=batch_size, dtype=dtype, want_ivectors=False,
                accumulate=True, device=device)
    counts = np.asarray(N, dtype=np.float64).sum(0)                             # (C,)
    Cstat = e.Cstat.reshape(num_c, dim, rank)
    T_new = to_device(ext.T.copy(), device)
    skipped = np.flatnonzero(counts < min_count)
    if skipped.size:
        log.warning("%d of %d Gaussians have counts below %g and keep their T (lowest %.3g)",
                    skipped.size, num_c, min_count, counts.min())
    var_new = ext.sigma.copy()
    if update_sigma:
        F_tot = np.asarray(F, dtype=np.float64).sum(0)
        S_centred = np.asarray(S, dtype=np.float64) - 2 * ext.means * F_tot \
            + counts[:, None] * ext.means ** 2
        raw_var = np.zeros_like(var_new)
    for c0 in range(0, num_c, component_chunk):
        c1 = min(c0 + component_chunk, num_c)
        A = _unpack(e.A[c0:c1], rank)
        keep = to_device(counts[c0:c1] >= min_count, device)
        A[~keep] = torch.eye(rank, dtype=A.dtype, device=device)  # placeholders, discarded
        chol, info = torch.linalg.cholesky_ex(A)
        if bool((info != 0).any()):
            bad = int(torch.nonzero(info)[0]) + c0
            raise DeepSpeakerError(f"Gaussian {bad}: i-vector scatter is singular; "
                                   "too little data for this rank?")
        sol = torch.cholesky_solve(Cstat[c0:c1].transpose(1, 2), chol).transpose(1, 2)
        T_new[c0:c1][keep] = sol[keep]
        if update_sigma:
            Tc = T_new[c0:c1]
            cross = (Cstat[c0:c1] * Tc).sum(2)                                   # diag(C T')
            tat = torch.einsum("cfr,crs,cfs->cf", Tc, _unpack(e.A[c0:c1], rank), Tc)
            raw_var[c0:c1] = (S_centred[c0:c1] - 2 * cross.cpu().numpy() + tat.cpu().numpy())
    if update_sigma:
        ok = counts >= min_count
        floor = VARIANCE_FLOOR_FACTOR * raw_var[ok].sum(0) / counts[ok].sum()
        raw_var[ok] /= counts[ok, None]
        num_floored = int(np.sum(raw_var[ok] < floor))
        var_new[ok] = np.maximum(raw_var[ok], floor)
        log.info("variance update: floored %d of %d variances", num_floored, raw_var[ok].size)
    new = IvectorExtractor(T=T_new.cpu().numpy(), sigma=var_new, means=ext.means.copy(),
                           weights=ext.weights.copy(), meta=dict(ext.meta))
    if min_divergence:
        mean = (e.sum_phi / e.num_utts).cpu().numpy()
        cov = (_unpack(e.sum_eww[None], rank)[0] / e.num_utts).cpu().numpy() - np.outer(mean, mean)
        new = absorb_prior(new, mean, cov)
    return new, e.objective


def train_extractor(ubm: DiagGmm, N: np.ndarray, F: np.ndarray, rank: int = 400,
                    num_iters: int = 10, seed: int = 0, min_divergence: bool = True,
                    log: logging.Logger = logger, *, S: np.ndarray | None = None,
                    update_sigma: bool = False, batch_size: int = 256,
                    dtype: torch.dtype = DEFAULT_DTYPE,
                    rel_tol: float = OBJECTIVE_REL_TOL,
                    device: torch.device | str = "cpu") -> IvectorExtractor:
    """Train a rank-``rank`` extractor on stats N (U, C), F (U, C, F) from ``ubm``.

    Logs the objective (per frame) of the model entering each iteration, and of the
    final model; raises DeepSpeakerError if it ever drops by more than
    ``rel_tol * max(1, |objective|)`` (EM cannot decrease it; anything beyond rounding
    noise is a bug or a numerically broken model). The trace is kept in
    ``meta["objective_trace"]``.
    """
    ext = init_extractor(ubm, rank, seed)
    ext.check_stats(N, F)
    num_u = np.asarray(N).shape[0]
    log.info("training a %d-dim i-vector extractor on %d utterances, %.0f frames, %d "
             "Gaussians of dim %d, %d iterations", rank, num_u, float(np.sum(N)),
             ext.num_components, ext.feat_dim, num_iters)
    trace: list[float] = []

    def check(obj: float, it: int) -> None:
        if trace:
            prev = trace[-1]
            change = obj - prev
            log.info("iteration %d: objective %.6f per frame (change %+.6f)", it, obj, change)
            if change < -rel_tol * max(1.0, abs(prev)):
                raise DeepSpeakerError(f"i-vector EM objective decreased from {prev:.6f} to "
                                       f"{obj:.6f} per frame at iteration {it}")
        else:
            log.info("iteration %d: objective %.6f per frame (initial model)", it, obj)
        trace.append(obj)

    for it in range(num_iters):
        ext, obj = em_iteration(ext, N, F, S=S, update_sigma=update_sigma,
                                min_divergence=min_divergence, batch_size=batch_size,
                                dtype=dtype, log=log, device=device)
        check(obj, it)
    check(ext.objective(N, F, S=S, batch_size=batch_size, dtype=dtype, device=device), num_iters)
    ext.meta = {**ext.meta, "objective_trace": trace, "num_iters": num_iters, "seed": seed,
                "min_divergence": min_divergence, "update_sigma": update_sigma}
    return ext
