"""Total-variability extractor: EM monotonicity, recovery of synthetic speakers, exactness.

The synthetic corpus is drawn from a known TV model: C=8 Gaussians in F=4 dims,
R=3; 50 speakers x 4 utterances of 100-400 frames, each utterance's Gaussian means
shifted by T_true (w_spk + 0.2 n_utt).
"""

import logging

import numpy as np
import pytest
import torch

from deepspeaker.ivector import (DiagGmm, IvectorExtractor, absorb_prior, compute_stats_batch,
                                 em_iteration, init_extractor, train_extractor, train_ubm)
from deepspeaker.ivector import extractor as extractor_mod
from deepspeaker.utils import DeepSpeakerError

C, D, R = 8, 4, 3
NUM_SPK, UTTS_PER_SPK = 50, 4


class Corpus:
    def __init__(self, seed=0):
        rng = np.random.default_rng(seed)
        self.weights = rng.dirichlet(np.full(C, 5.0))
        self.means = rng.normal(0, 8, (C, D))
        self.var = rng.uniform(0.5, 1.5, (C, D))
        self.T = rng.normal(0, 0.6, (C, D, R))
        self.ubm = DiagGmm(self.weights, self.means, self.var)
        self.spk_w = rng.standard_normal((NUM_SPK, R))
        self.utts, self.spk, self.w, self.labels = [], [], [], []
        for s in range(NUM_SPK):
            for _ in range(UTTS_PER_SPK):
                w = self.spk_w[s] + 0.2 * rng.standard_normal(R)
                n = int(rng.integers(100, 401))
                c = rng.choice(C, n, p=self.weights)
                x = (self.means[c] + np.einsum("tfr,r->tf", self.T[c], w)
                     + rng.standard_normal((n, D)) * np.sqrt(self.var[c]))
                self.utts.append(x.astype(np.float32))
                self.labels.append(c)
                self.spk.append(s)
                self.w.append(w)
        self.spk = np.array(self.spk)
        self.w = np.array(self.w)
        self.N, self.F, self.S = compute_stats_batch(self.ubm, self.utts, second_order=True)
        # The same stats from the generating (hard) alignment instead of UBM posteriors.
        num_u = len(self.utts)
        self.N_hard, self.F_hard = np.zeros((num_u, C)), np.zeros((num_u, C, D))
        self.S_hard = np.zeros((C, D))
        for u, (x, c) in enumerate(zip(self.utts, self.labels)):
            x = x.astype(np.float64)
            np.add.at(self.N_hard[u], c, 1.0)
            np.add.at(self.F_hard[u], c, x)
            np.add.at(self.S_hard, c, x * x)
        self.true_model = IvectorExtractor(self.T, self.var, self.means, self.weights)


@pytest.fixture(scope="module")
def corpus():
    return Corpus()


def naive_posterior(ext, n, f):
    """Precision and linear term of one utterance's i-vector posterior, plain numpy."""
    ft = f - n[:, None] * ext.means
    K = sum(n[c] * ext.T[c].T @ np.diag(1 / ext.sigma[c]) @ ext.T[c] for c in range(len(n)))
    b = sum(ext.T[c].T @ (ft[c] / ext.sigma[c]) for c in range(len(n)))
    return K, b


def naive_objective(ext, N, F, S=None, prior_mean=None, prior_cov=None):
    """Marginal log-likelihood per frame under prior N(prior_mean, prior_cov), per utterance.

    int exp(w'b - w'Kw/2) N(w; mu, P^-1) dw
        = |P|^1/2 |K + P|^-1/2 exp((b + P mu)'(K + P)^-1 (b + P mu)/2 - mu'P mu/2)
    """
    rank = ext.T.shape[2]
    mu = np.zeros(rank) if prior_mean is None else prior_mean
    P = np.eye(rank) if prior_cov is None else np.linalg.inv(prior_cov)
    total = 0.0
    for n, f in zip(N, F):
        K, b = naive_posterior(ext, n, f)
        h = b + P @ mu
        total += (np.sum(ext.means / ext.sigma * f)
                  - 0.5 * np.sum(n * ((ext.means ** 2 / ext.sigma).sum(1)
                                      + np.log(2 * np.pi * ext.sigma).sum(1)))
                  + 0.5 * h @ np.linalg.solve(K + P, h) - 0.5 * mu @ P @ mu
                  + 0.5 * np.linalg.slogdet(P)[1] - 0.5 * np.linalg.slogdet(K + P)[1])
    if S is not None:
        total -= 0.5 * np.sum(S / ext.sigma)
    return total / N.sum()


def test_objective_is_the_exact_marginal_likelihood():
    """Hard alignments make the stats model an ordinary Gaussian of the stacked frames."""
    from scipy.stats import multivariate_normal

    rng = np.random.default_rng(1)
    ext = IvectorExtractor(rng.normal(0, 0.7, (3, 2, 2)), rng.uniform(0.5, 2, (3, 2)),
                           rng.normal(0, 2, (3, 2)), np.full(3, 1 / 3))
    N, F, S = np.zeros((4, 3)), np.zeros((4, 3, 2)), np.zeros((3, 2))
    want = 0.0
    for u in range(4):
        c = rng.integers(0, 3, 12)
        x = rng.normal(0, 2, (12, 2))
        np.add.at(N[u], c, 1.0)
        np.add.at(F[u], c, x)
        np.add.at(S, c, x * x)
        T_stack = ext.T[c].reshape(-1, 2)                      # (12*2, R)
        cov = np.diag(ext.sigma[c].reshape(-1)) + T_stack @ T_stack.T
        want += multivariate_normal(ext.means[c].reshape(-1), cov).logpdf(x.reshape(-1))
    want /= N.sum()
    assert ext.objective(N, F, S, dtype=torch.float64) == pytest.approx(want, rel=1e-10)
    assert naive_objective(ext, N, F, S) == pytest.approx(want, rel=1e-10)
    assert ext.objective(N, F, S) == pytest.approx(want, rel=1e-6)    # float32 default


def test_em_objective_increases(corpus, caplog):
    with caplog.at_level(logging.INFO, logger="deepspeaker.ivector.extractor"):
        ext = train_extractor(corpus.ubm, corpus.N, corpus.F, rank=R, num_iters=10, seed=0,
                              dtype=torch.float64)
    trace = np.array(ext.meta["objective_trace"])
    assert len(trace) == 11 and "iteration 10: objective" in caplog.text
    # Trace on this corpus: 87.1216 (random init), 89.4120, 89.41317, 89.413171, ... flat
    diffs = np.diff(trace)
    assert np.all(diffs >= -1e-10 * np.abs(trace[:-1])), diffs
    assert trace[1] - trace[0] > 1.0                           # the first iteration is a big step
    # ML on the training stats beats the generating model, but not by much.
    true_obj = corpus.true_model.objective(corpus.N, corpus.F, dtype=torch.float64)
    assert true_obj < trace[-1] < true_obj + 0.02              # measured: +0.008
    # The float32 default follows the same trace up to rounding.
    ext32 = train_extractor(corpus.ubm, corpus.N, corpus.F, rank=R, num_iters=10, seed=0)
    np.testing.assert_allclose(ext32.meta["objective_trace"], trace, rtol=1e-6)
    assert np.all(np.diff(ext32.meta["objective_trace"])
                  >= -extractor_mod.OBJECTIVE_REL_TOL * np.abs(trace[:-1]))


@pytest.mark.parametrize("min_divergence,update_sigma", [(False, False), (True, True)])
def test_em_variants_are_monotone(corpus, min_divergence, update_sigma):
    ext = train_extractor(corpus.ubm, corpus.N, corpus.F, rank=R, num_iters=8, seed=1,
                          min_divergence=min_divergence, update_sigma=update_sigma,
                          S=corpus.S, dtype=torch.float64)
    trace = np.array(ext.meta["objective_trace"])
    assert np.all(np.diff(trace) >= -1e-10 * np.abs(trace[:-1])), np.diff(trace)
    assert trace[-1] - trace[0] > 1.0


def test_variance_update_recovers_true_variances(corpus):
    # With the generating alignment the stats model is exactly the data's model, so ML
    # estimates land near the truth (UBM posteriors misassign ~1% of the frames, which
    # inflates some variances by up to 25%).
    ext = train_extractor(corpus.ubm, corpus.N_hard, corpus.F_hard, rank=R, num_iters=10,
                          S=corpus.S_hard, update_sigma=True, seed=1, dtype=torch.float64)
    np.testing.assert_allclose(ext.sigma, corpus.var, rtol=0.1)      # measured: 3.7%
    true_obj = corpus.true_model.objective(corpus.N_hard, corpus.F_hard, corpus.S_hard,
                                           dtype=torch.float64)
    assert true_obj < ext.meta["objective_trace"][-1] < true_obj + 0.005   # measured: +0.0014


def test_update_sigma_needs_second_order_stats(corpus):
    ext = init_extractor(corpus.ubm, R)
    with pytest.raises(ValueError, match="second-order stats"):
        em_iteration(ext, corpus.N, corpus.F, update_sigma=True)


def test_ivectors_recover_speakers(corpus):
    # End to end from frames: UBM trained with sklearn, stats, extractor, i-vectors.
    frames = np.concatenate(corpus.utts)
    ubm = train_ubm(frames, C, seed=0)
    N, F = compute_stats_batch(ubm, corpus.utts)
    ext = train_extractor(ubm, N, F, rank=R, num_iters=10, seed=0)
    iv = ext.extract(N, F)
    assert iv.shape == (NUM_SPK * UTTS_PER_SPK, R)
    # The i-vectors are a linear image of the true latent vectors.
    X = np.c_[iv, np.ones(len(iv))]
    coef, *_ = np.linalg.lstsq(X, corpus.w, rcond=None)
    r2 = 1 - ((corpus.w - X @ coef) ** 2).sum(0) / ((corpus.w - corpus.w.mean(0)) ** 2).sum(0)
    assert np.all(r2 > 0.95), r2                                # measured: 0.994-0.995
    # Cosine scoring separates speakers (measured: same-speaker mean 0.94, cross -0.02).
    unit = iv / np.linalg.norm(iv, axis=1, keepdims=True)
    cos = unit @ unit.T
    same = corpus.spk[:, None] == corpus.spk[None, :]
    off_diag = ~np.eye(len(iv), dtype=bool)
    same_cos = cos[same & off_diag]
    cross_cos = cos[~same]
    assert same_cos.mean() > 0.85, same_cos.mean()
    assert abs(cross_cos.mean()) < 0.15, cross_cos.mean()
    # Verification: a same-speaker pair outscores a random cross pair most of the time (AUC).
    auc = (same_cos[:, None] > cross_cos[None, ::7]).mean()
    assert auc > 0.9, auc                                      # measured: 0.971


def test_extract_equals_naive_solve(corpus):
    rng = np.random.default_rng(2)
    ext = init_extractor(corpus.ubm, R, seed=3)
    ext.T *= 0.3
    ext.means += rng.normal(0, 0.1, ext.means.shape)
    N, F = corpus.N[:37], corpus.F[:37]
    want = np.stack([np.linalg.solve(np.eye(R) + K, b)
                     for K, b in (naive_posterior(ext, n, f) for n, f in zip(N, F))])
    # Batches of 5: the last batch is short.
    np.testing.assert_allclose(ext.extract(N, F, batch_size=5, dtype=torch.float64), want,
                               rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ext.extract(N, F, batch_size=5), want, rtol=1e-4, atol=1e-5)
    assert ext.objective(N, F, dtype=torch.float64) == pytest.approx(
        naive_objective(ext, N, F), rel=1e-10)


def test_min_divergence_transform_keeps_the_objective(corpus):
    rng = np.random.default_rng(4)
    ext = init_extractor(corpus.ubm, R, seed=5)
    N, F = corpus.N[:50], corpus.F[:50]
    A = rng.normal(size=(R, R))
    mean, cov = rng.normal(size=R), A @ A.T + 0.1 * np.eye(R)
    moved = absorb_prior(ext, mean, cov)
    # Old model under prior N(mean, cov) == new model under N(0, I).
    assert moved.objective(N, F, dtype=torch.float64) == pytest.approx(
        naive_objective(ext, N, F, prior_mean=mean, prior_cov=cov), rel=1e-10)
    # And the mean shift alone is the only thing that moves the means.
    np.testing.assert_allclose(moved.means, ext.means + ext.T @ mean)


def test_em_iteration_min_divergence_is_the_prior_update(corpus):
    """min-divergence result == M-step T reparametrised with the ML prior of the posteriors."""
    ext = init_extractor(corpus.ubm, R, seed=6)
    N, F = corpus.N, corpus.F
    plain, obj0 = em_iteration(ext, N, F, min_divergence=False, dtype=torch.float64)
    md, obj1 = em_iteration(ext, N, F, min_divergence=True, dtype=torch.float64)
    assert obj0 == obj1 == pytest.approx(naive_objective(ext, N, F), rel=1e-10)
    phis, eww = [], []
    A, Cs = np.zeros((C, R, R)), np.zeros((C, D, R))
    for n, f in zip(N, F):
        K, b = naive_posterior(ext, n, f)
        cov = np.linalg.inv(np.eye(R) + K)
        phi = cov @ b
        phis.append(phi)
        eww.append(cov + np.outer(phi, phi))
        A += n[:, None, None] * eww[-1]
        Cs += (f - n[:, None] * ext.means)[:, :, None] * phi
    # The M-step alone: T_c = C_c A_c^-1.
    m_step = np.linalg.solve(A, Cs.transpose(0, 2, 1)).transpose(0, 2, 1)
    np.testing.assert_allclose(plain.T, m_step, rtol=1e-8, atol=1e-10)
    np.testing.assert_array_equal(plain.means, ext.means)
    mean = np.mean(phis, axis=0)
    cov = np.mean(eww, axis=0) - np.outer(mean, mean)
    np.testing.assert_allclose(md.T, plain.T @ np.linalg.cholesky(cov), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(md.means, plain.means + plain.T @ mean, rtol=1e-8, atol=1e-10)
    assert md.objective(N, F, dtype=torch.float64) == pytest.approx(
        naive_objective(plain, N, F, prior_mean=mean, prior_cov=cov), rel=1e-10)
    # After the transform the training i-vectors have zero mean and (posterior) unit scatter.
    iv = md.extract(N, F, dtype=torch.float64)
    assert np.abs(iv.mean(0)).max() < 0.2


def test_low_count_gaussians_keep_their_t(corpus, caplog):
    ext = init_extractor(corpus.ubm, R, seed=7)
    counts = corpus.N.sum(0)
    threshold = np.sort(counts)[3] + 1                          # the 4 smallest counts fall below
    with caplog.at_level(logging.WARNING, logger="deepspeaker.ivector.extractor"):
        new, _ = em_iteration(ext, corpus.N, corpus.F, min_divergence=False, min_count=threshold)
    low = counts < threshold
    assert low.sum() == 4 and "4 of 8 Gaussians have counts below" in caplog.text
    np.testing.assert_array_equal(new.T[low], ext.T[low])
    assert np.all(np.abs(new.T[~low] - ext.T[~low]).max(axis=(1, 2)) > 0.1)


def test_train_extractor_raises_when_objective_drops(corpus, monkeypatch):
    real = extractor_mod.em_iteration
    calls = {"n": 0}

    def broken(ext, N, F, **kw):
        new, obj = real(ext, N, F, **kw)
        calls["n"] += 1
        return new, obj - (0.5 if calls["n"] == 3 else 0.0)

    monkeypatch.setattr(extractor_mod, "em_iteration", broken)
    with pytest.raises(DeepSpeakerError, match="objective decreased .* at iteration 2"):
        train_extractor(corpus.ubm, corpus.N, corpus.F, rank=R, num_iters=5)


def test_save_load_round_trip_and_errors(corpus, tmp_path):
    ext = train_extractor(corpus.ubm, corpus.N[:40], corpus.F[:40], rank=R, num_iters=2)
    path = tmp_path / "extractor.npz"
    ext.save(path, meta={"ubm": "models/ubm.npz"})
    back = IvectorExtractor.load(path)
    for name in ("T", "sigma", "means", "weights"):
        np.testing.assert_array_equal(getattr(back, name), getattr(ext, name))
    assert back.meta["ubm"] == "models/ubm.npz" and len(back.meta["objective_trace"]) == 3
    np.testing.assert_array_equal(back.extract(corpus.N[:5], corpus.F[:5]),
                                  ext.extract(corpus.N[:5], corpus.F[:5]))
    # A UBM file is not an extractor.
    corpus.ubm.save(tmp_path / "ubm.npz")
    with pytest.raises(DeepSpeakerError, match=r"ubm\.npz: is a deepspeaker\.DiagGmm, "
                                                r"expected a deepspeaker\.IvectorExtractor"):
        IvectorExtractor.load(tmp_path / "ubm.npz")
    # A header that disagrees with the arrays names both.
    data = dict(np.load(path))
    data["ivector_dim"] = np.array(400)
    np.savez(tmp_path / "bad.npz", **data)
    with pytest.raises(DeepSpeakerError, match=r"bad\.npz: header says .* \(8, 4, 400\), but T has "
                                               r"shape \(8, 4, 3\)"):
        IvectorExtractor.load(tmp_path / "bad.npz")


def test_dimension_mismatches_name_both_sides(corpus):
    ext = init_extractor(corpus.ubm, R)
    with pytest.raises(ValueError, match="stats have 8 components of feat dim 5, but the "
                                         "extractor has 8 components of feat dim 4"):
        ext.extract(corpus.N[:2], np.zeros((2, 8, 5)))
    with pytest.raises(ValueError, match="stats have 6 components .* extractor has 8"):
        ext.extract(np.zeros((2, 6)), np.zeros((2, 6, 4)))
    with pytest.raises(ValueError, match="matching leading dims"):
        ext.extract(corpus.N[:2], corpus.F[:3])
    other = DiagGmm(np.ones(4) / 4, np.zeros((4, 4)), np.ones((4, 4)))
    with pytest.raises(DeepSpeakerError, match="UBM has 4 components of dim 4, the extractor 8"):
        ext.check_ubm(other)


def test_init_extractor_is_seeded(corpus):
    a, b = init_extractor(corpus.ubm, 5, seed=1), init_extractor(corpus.ubm, 5, seed=1)
    np.testing.assert_array_equal(a.T, b.T)
    assert a.T.shape == (C, D, 5) and not np.array_equal(a.T, init_extractor(corpus.ubm, 5, 2).T)
    np.testing.assert_array_equal(a.means, corpus.ubm.means)
    np.testing.assert_array_equal(a.sigma, corpus.ubm.variances)
    with pytest.raises(ValueError, match="rank"):
        init_extractor(corpus.ubm, 0)
