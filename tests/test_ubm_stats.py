"""UBM (diagonal GMM) training, save/load and Baum-Welch statistics against per-frame loops."""

import logging
import math

import numpy as np
import pytest
import torch

from deepspeaker.ivector import (DiagGmm, compute_stats, compute_stats_batch, sample_frames,
                                 train_ubm)
from deepspeaker.ivector.extractor import IvectorExtractor
from deepspeaker.utils import DeepSpeakerError


def random_gmm(rng, num_components=6, dim=3):
    return DiagGmm(rng.dirichlet(np.full(num_components, 3.0)),
                   rng.normal(0, 2, (num_components, dim)),
                   rng.uniform(0.3, 2.0, (num_components, dim)))


def compute_stats_naive(gmm, frames, top_k=None):
    """One frame at a time, log-densities written out per dimension."""
    num_c, dim = gmm.means.shape
    N = np.zeros(num_c)
    F = np.zeros((num_c, dim))
    S = np.zeros((num_c, dim))
    for x in np.asarray(frames, dtype=np.float64):
        ll = np.array([
            math.log(gmm.weights[c]) + sum(
                -0.5 * math.log(2 * math.pi * gmm.variances[c, d])
                - 0.5 * (x[d] - gmm.means[c, d]) ** 2 / gmm.variances[c, d] for d in range(dim))
            for c in range(num_c)])
        keep = np.argsort(-ll)[:top_k] if top_k else np.arange(num_c)
        post = np.exp(ll[keep] - ll[keep].max())
        post /= post.sum()
        for p, c in zip(post, keep):
            N[c] += p
            F[c] += p * x
            S[c] += p * x * x
    return N, F, S


def test_log_likelihoods_match_scipy():
    from scipy.stats import multivariate_normal

    rng = np.random.default_rng(0)
    gmm = random_gmm(rng)
    x = rng.normal(0, 3, (20, 3))
    want = np.stack([np.log(gmm.weights[c]) + multivariate_normal(
        gmm.means[c], np.diag(gmm.variances[c])).logpdf(x) for c in range(6)], axis=1)
    ll = gmm.log_likelihoods(x)
    assert ll.dtype == torch.float64 and ll.shape == (20, 6)
    np.testing.assert_allclose(ll.numpy(), want, rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(gmm.log_likelihoods(torch.from_numpy(x)).numpy(), want, atol=1e-10)
    with pytest.raises(ValueError, match=r"\(20, 4\).*feature dim 3"):
        gmm.log_likelihoods(np.zeros((20, 4)))


@pytest.mark.parametrize("top_k", [None, 1, 2, 4])
def test_batched_stats_equal_naive(top_k):
    rng = np.random.default_rng(1)
    gmm = random_gmm(rng)
    utts = [rng.normal(0, 2.5, (n, 3)).astype(np.float32) for n in (17, 1, 40, 0, 23)]
    # A chunk size that cuts utterances into pieces, and one that holds everything.
    for chunk_frames in (7, 10000):
        N, F, S = compute_stats_batch(gmm, utts, top_k, chunk_frames=chunk_frames,
                                      second_order=True)
        assert N.shape == (5, 6) and F.shape == (5, 6, 3) and S.shape == (6, 3)
        S_want = np.zeros((6, 3))
        for u, x in enumerate(utts):
            n_ref, f_ref, s_ref = compute_stats_naive(gmm, x, top_k)
            np.testing.assert_allclose(N[u], n_ref, rtol=1e-6, atol=1e-12)
            np.testing.assert_allclose(F[u], f_ref, rtol=1e-6, atol=1e-10)
            S_want += s_ref
            # Every frame's posteriors sum to one, also after top-k renormalisation.
            assert N[u].sum() == pytest.approx(len(x))
        np.testing.assert_allclose(S, S_want, rtol=1e-6, atol=1e-10)
    n1, f1 = compute_stats(gmm, utts[2], top_k)
    np.testing.assert_allclose(n1, N[2], rtol=1e-12)
    np.testing.assert_allclose(f1, F[2], rtol=1e-12)


def test_top_k_keeps_k_components_per_frame():
    rng = np.random.default_rng(2)
    gmm = random_gmm(rng, num_components=8)
    x = rng.normal(0, 3, (1, 3))
    n, _ = compute_stats(gmm, x, top_k=3)
    assert np.count_nonzero(n) == 3 and n.sum() == pytest.approx(1.0)
    n_all, _ = compute_stats(gmm, x, top_k=None)
    n_big, _ = compute_stats(gmm, x, top_k=100)             # more than C: dense posteriors
    np.testing.assert_allclose(n_big, n_all)
    assert set(np.flatnonzero(n)) == set(np.argsort(-n_all)[:3])


def test_stats_reject_wrong_dims():
    gmm = random_gmm(np.random.default_rng(3))
    with pytest.raises(ValueError, match=r"utterance 1: frames of shape \(5, 4\).*feature dim 3"):
        compute_stats_batch(gmm, [np.zeros((5, 3)), np.zeros((5, 4))])


def test_train_ubm_recovers_known_gmm(caplog):
    rng = np.random.default_rng(4)
    weights = np.array([0.5, 0.3, 0.2])
    means = np.array([[0.0, 0.0], [6.0, 1.0], [-3.0, 7.0]])
    variances = np.array([[1.0, 0.5], [0.5, 2.0], [1.5, 1.0]])
    comp = rng.choice(3, 6000, p=weights)
    x = means[comp] + rng.standard_normal((6000, 2)) * np.sqrt(variances[comp])
    with caplog.at_level(logging.INFO, logger="deepspeaker.ivector.ubm"):
        ubm = train_ubm(x, 3, max_iter=50, seed=0)
    assert "UBM iteration 1:" in caplog.text and "converged after" in caplog.text
    assert ubm.meta["converged"]
    order = np.argsort(ubm.means[:, 0])                     # match components: by x-coordinate
    want = np.argsort(means[:, 0])
    # With 6000 samples: weight std ~0.006, mean std ~0.03; tolerances are 4-5 sigma.
    np.testing.assert_allclose(ubm.weights[order], weights[want], atol=0.03)
    np.testing.assert_allclose(ubm.means[order], means[want], atol=0.12)
    np.testing.assert_allclose(ubm.variances[order], variances[want], rtol=0.12)
    # Same seed, same model.
    again = train_ubm(x, 3, max_iter=50, seed=0)
    np.testing.assert_array_equal(again.means, ubm.means)


def test_train_ubm_random_from_data_init_and_errors():
    rng = np.random.default_rng(5)
    x = np.concatenate([rng.normal(-5, 1, (300, 2)), rng.normal(5, 1, (300, 2))])
    ubm = train_ubm(x, 2, init="random_from_data", seed=1, max_iter=30)
    np.testing.assert_allclose(np.sort(ubm.means[:, 0]), [-5, 5], atol=0.3)
    with pytest.raises(ValueError, match="too few"):
        train_ubm(x[:1], 2)
    with pytest.raises(ValueError, match="init"):
        train_ubm(x, 2, init="kmeans")


def test_sample_frames():
    rng = np.random.default_rng(6)
    utts = [rng.normal(size=(n, 3)).astype(np.float32) for n in (10, 0, 25, 7)]
    everything = np.concatenate(utts)
    sub = sample_frames(iter(utts), 20, seed=3)             # a generator is fine
    assert sub.shape == (20, 3) and sub.dtype == np.float32
    # Every picked row is a distinct frame of the corpus, kept in corpus order.
    rows = [int(np.flatnonzero((everything == r).all(1))[0]) for r in sub]
    assert rows == sorted(set(rows))
    np.testing.assert_array_equal(sample_frames(utts, 20, seed=3), sub)
    assert not np.array_equal(sample_frames(utts, 20, seed=4), sub)
    np.testing.assert_array_equal(sample_frames(utts, 1000, seed=0), everything)
    with pytest.raises(ValueError, match="one dim"):
        sample_frames([np.zeros((3, 2)), np.zeros((3, 4))], 5, 0)
    with pytest.raises(ValueError, match="no utterances"):
        sample_frames([], 5, 0)


def test_diag_gmm_save_load_round_trip(tmp_path):
    gmm = random_gmm(np.random.default_rng(7))
    path = tmp_path / "models" / "ubm.npz"
    gmm.save(path, meta={"frontend": {"num_ceps": 20}})
    back = DiagGmm.load(path)
    for name in ("weights", "means", "variances"):
        np.testing.assert_array_equal(getattr(back, name), getattr(gmm, name))
    assert back.meta == {"frontend": {"num_ceps": 20}}
    assert (back.num_components, back.dim) == (6, 3)
    assert [p.name for p in path.parent.iterdir()] == ["ubm.npz"]    # no temp file left


def test_diag_gmm_load_errors_name_the_file(tmp_path):
    ext_path = tmp_path / "extractor.npz"
    IvectorExtractor(np.zeros((2, 3, 4)), np.ones((2, 3)), np.zeros((2, 3)),
                     np.full(2, 0.5)).save(ext_path)
    with pytest.raises(DeepSpeakerError, match=r"extractor\.npz: is a deepspeaker\.IvectorExtractor, "
                                                r"expected a deepspeaker\.DiagGmm"):
        DiagGmm.load(ext_path)
    junk = tmp_path / "junk.npz"
    junk.write_text("not a zip")
    with pytest.raises(DeepSpeakerError, match=r"junk\.npz: not a deepspeaker model file"):
        DiagGmm.load(junk)
    plain = tmp_path / "plain.npz"
    np.savez(plain, weights=np.ones(2))
    with pytest.raises(DeepSpeakerError, match=r"plain\.npz: not a deepspeaker model file \(no kind"):
        DiagGmm.load(plain)
    with pytest.raises(DeepSpeakerError, match=r"missing\.npz: model file not found"):
        DiagGmm.load(tmp_path / "missing.npz")
    # A header that disagrees with the arrays.
    good = tmp_path / "good.npz"
    random_gmm(np.random.default_rng(8)).save(good)
    data = dict(np.load(good))
    data["dim"] = np.array(60)
    bad = tmp_path / "bad.npz"
    np.savez(bad, **data)
    with pytest.raises(DeepSpeakerError, match=r"bad\.npz: header says 6 components of dim 60, "
                                               r"arrays hold 6 of dim 3"):
        DiagGmm.load(bad)


def test_diag_gmm_rejects_inconsistent_arrays():
    with pytest.raises(ValueError, match="inconsistent GMM shapes"):
        DiagGmm(np.ones(3) / 3, np.zeros((3, 2)), np.ones((2, 2)))
    with pytest.raises(ValueError, match="variances must be > 0"):
        DiagGmm(np.ones(2) / 2, np.zeros((2, 2)), np.zeros((2, 2)))
