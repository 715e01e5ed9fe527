"""Length normalisation and Kaldi-style LDA on synthetic classes with a known answer.

The classes are built in a latent space where the class means differ only in the
first K coordinates and the within-class noise is independent per coordinate; the
observed vectors are a random linear mixture of the latent ones.  Fisher's
criterion then has a known solution: the LDA directions, pulled back to the latent
space, have no weight on the noise-only coordinates.
"""

import numpy as np
import pytest
import scipy.linalg

from deepspeaker.ivector.lda import (LdaTransform, ModelFileError, length_normalize, train_lda,
                                     within_between_covariance)
from deepspeaker.ivector.plda import PldaConfig, TwoCovPLDA, train_plda

D, K = 12, 3


def latent_class_means(rng, num_classes):
    means = np.zeros((num_classes, D))
    means[:, :K] = rng.standard_normal((num_classes, K)) * np.array([3.0, 2.0, 1.0])
    return means


def latent_draw(rng, means, per_class):
    noise_std = np.linspace(0.5, 1.5, D)
    labels = np.repeat(np.arange(len(means)), per_class)
    return means[labels] + rng.standard_normal((labels.size, D)) * noise_std, labels


@pytest.fixture(scope="module")
def mixing():
    rng = np.random.default_rng(0)
    return rng.standard_normal((D, D)) + 3 * np.eye(D), 5.0 * rng.standard_normal(D)


@pytest.fixture(scope="module")
def means():
    return latent_class_means(np.random.default_rng(1), 50)


@pytest.fixture(scope="module")
def data(mixing, means):
    a, offset = mixing
    z, labels = latent_draw(np.random.default_rng(2), means, 200)
    return z @ a.T + offset, labels


def test_length_normalize():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((7, 20)) * 5
    x[3] = 0.0
    y = length_normalize(x)
    norms = np.linalg.norm(y, axis=1)
    np.testing.assert_allclose(np.delete(norms, 3), np.sqrt(20))
    assert np.all(y[3] == 0)                         # zero stays zero, no NaN
    np.testing.assert_allclose(np.linalg.norm(length_normalize(x[0], scale_to_sqrt_dim=False)), 1.0)
    # Direction is kept.
    np.testing.assert_allclose(y[0] / np.linalg.norm(y[0]), x[0] / np.linalg.norm(x[0]))
    with pytest.raises(ValueError, match="shape"):
        length_normalize(np.zeros((2, 3, 4)))


def test_lda_whitens_within_and_orders_between(data):
    x, labels = data
    lda = train_lda(x, labels, dim=K)
    y = lda.apply(x)
    _, within, between = within_between_covariance(y, labels)
    np.testing.assert_allclose(within, np.eye(K), atol=1e-8)
    evals = np.diag(between)
    np.testing.assert_allclose(between, np.diag(evals), atol=1e-8)
    assert np.all(np.diff(evals) < 0)
    # Same eigenvalues as the generalised eigenproblem S_b v = lambda S_w v on the input.
    _, sw, sb = within_between_covariance(x, labels)
    np.testing.assert_allclose(evals, scipy.linalg.eigh(sb, sw, eigvals_only=True)[::-1][:K],
                               rtol=1e-8)
    np.testing.assert_allclose(y.mean(axis=0), 0.0, atol=1e-9)   # global mean removed


def test_lda_finds_the_discriminant_subspace(data, mixing, means):
    x, labels = data
    a, _ = mixing
    lda = train_lda(x, labels, dim=K)
    in_latent = lda.matrix @ a                       # rows: LDA directions on latent coords
    signal = np.linalg.norm(in_latent[:, :K])
    leak = np.linalg.norm(in_latent[:, K:])
    # Sampling error with 10000 vectors and 50 classes is a few percent at most.
    assert leak / signal < 0.05, leak / signal
    # Fresh vectors of the same classes are classified by the nearest projected mean.
    z, lab = latent_draw(np.random.default_rng(3), means, 20)
    centers = np.stack([lda.apply(x[labels == c]).mean(axis=0) for c in range(50)])
    y = lda.apply(z @ a.T + mixing[1])
    acc = np.mean(np.argmin(((y[:, None, :] - centers[None]) ** 2).sum(-1), axis=1) == lab)
    # The best possible: true means and noise scales on the true discriminant coordinates.
    noise = np.linspace(0.5, 1.5, D)[:K]
    d_oracle = (((z[:, None, :K] - means[None, :, :K]) / noise) ** 2).sum(-1)
    acc_oracle = np.mean(np.argmin(d_oracle, axis=1) == lab)
    # Euclidean nearest mean on the raw vectors, for contrast.
    raw_centers = np.stack([x[labels == c].mean(axis=0) for c in range(50)])
    raw = z @ a.T + mixing[1]
    acc_raw = np.mean(np.argmin(((raw[:, None] - raw_centers[None]) ** 2).sum(-1), axis=1) == lab)
    print(f"nearest-mean accuracy: LDA {acc:.3f}, oracle {acc_oracle:.3f}, raw {acc_raw:.3f}")
    assert acc > acc_oracle - 0.03 and acc > acc_raw + 0.1     # chance is 0.02


def test_total_covariance_factor_one_whitens_total(data):
    x, labels = data
    lda = train_lda(x, labels, dim=K, total_covariance_factor=1.0)
    y = lda.apply(x)
    np.testing.assert_allclose(np.cov(y.T, bias=True), np.eye(K), atol=1e-8)


def test_lda_is_deterministic_and_matches_kaldi_affine_form(data):
    x, labels = data
    a, b = train_lda(x, labels, dim=K), train_lda(x, labels, dim=K)
    np.testing.assert_array_equal(a.matrix, b.matrix)
    affine = a.as_affine()
    assert affine.shape == (K, D + 1)
    np.testing.assert_allclose(np.c_[x[:5], np.ones(5)] @ affine.T, a.apply(x[:5]), atol=1e-9)


def test_lda_errors(data):
    x, labels = data
    with pytest.raises(ValueError, match=r"LDA dim 5 .* 12-dim input and 5 speakers.*= 4"):
        train_lda(x[labels < 5], labels[labels < 5], dim=5)
    with pytest.raises(ValueError, match="LDA dim 13"):
        train_lda(x, labels, dim=13)
    with pytest.raises(ValueError, match="single utterance"):
        train_lda(x[:10], np.arange(10), dim=2)
    lda = train_lda(x, labels, dim=K)
    with pytest.raises(ValueError, match="12-dim input but the data are 7-dim"):
        lda.apply(np.zeros((2, 7)))


def test_lda_save_load(data, tmp_path):
    x, labels = data
    lda = train_lda(x, labels, dim=K)
    path = tmp_path / "lda.npz"
    lda.save(path, meta={"recipe": "mini"})
    loaded = LdaTransform.load(path)
    np.testing.assert_array_equal(loaded.matrix, lda.matrix)
    np.testing.assert_array_equal(loaded.mean, lda.mean)
    with pytest.raises(ValueError, match=f"{path}: LDA transform expects 12-dim"):
        loaded.apply(np.zeros(5))
    plda_path = tmp_path / "plda.npz"
    y = lda.apply(x)
    train_plda(y, labels, PldaConfig(num_em_iters=1)).save(plda_path)
    with pytest.raises(ModelFileError, match=r"plda\.npz: is a .*TwoCovPLDA, expected a .*LdaTransform"):
        LdaTransform.load(plda_path)
    assert TwoCovPLDA.load(plda_path).dim == K
