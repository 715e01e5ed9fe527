"""Two-covariance PLDA against known answers: synthetic speakers drawn from the model itself.

The generator is the model: ``x = mu + y + e`` with ``y ~ N(0, B)`` per speaker and
``e ~ N(0, W)`` per utterance.  So we know the true ``B`` and ``W`` (training should
recover them up to sampling error), the Bayes-optimal scorer (the PLDA built from the
true parameters: the trained one should score almost as well), and the exact
likelihood ratio of any trial (Kaldi's closed-form LLR must equal it).

Length normalisation is off where the test compares with Gaussian truths: the data
are exactly Gaussian, so the LLR of the raw transformed vectors is the exact ratio;
length normalisation is a fix for real i-vectors' heavy tails and would make the
scores depart from the generator's likelihoods (on these data it costs about 2
points of EER).
"""

import logging

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from deepspeaker.ivector.lda import LdaTransform, ModelFileError, train_lda
from deepspeaker.ivector.plda import (PldaConfig, PldaEstimator, PldaStats, TwoCovPLDA,
                                      cosine_scores, train_plda)
from deepspeaker.scoring import Trial, compute_eer

DIM = 10
NUM_SPK = 2000
UTTS_PER_SPK = 8
GAUSSIAN = PldaConfig(normalize_length=False)


def random_spd(rng, eigenvalues):
    q, _ = np.linalg.qr(rng.standard_normal((len(eigenvalues), len(eigenvalues))))
    return (q * eigenvalues) @ q.T


class Generator:
    """Speakers of the two-covariance model with known mu, B (between) and W (within)."""

    def __init__(self, seed=0, dim=DIM):
        rng = np.random.default_rng(seed)
        # Between-class variances spread over two decades (some directions carry much
        # speaker information, some almost none), within-class variances over a factor 4.
        self.between = random_spd(rng, np.logspace(-1, 1, dim))
        self.within = random_spd(rng, np.linspace(0.5, 2.0, dim))
        self.mean = 3.0 * rng.standard_normal(dim)
        self.dim = dim

    def speakers(self, rng, num_spk, num_utts):
        """(num_spk, num_utts, dim) vectors: num_utts utterances of each of num_spk new speakers."""
        y = rng.multivariate_normal(np.zeros(self.dim), self.between, size=num_spk)
        e = rng.multivariate_normal(np.zeros(self.dim), self.within, size=(num_spk, num_utts))
        return self.mean + y[:, None, :] + e

    def oracle(self, config=GAUSSIAN):
        return TwoCovPLDA.from_covariances(self.mean, self.between, self.within, config)


def verification_trials(gen, rng, num_spk, num_enroll):
    """num_spk target and num_spk non-target trials of fresh speakers.

    Returns (enrollment utterances (2T, n, D), test vectors (2T, D), labels (2T,));
    non-targets pair each enrollment with the next speaker's test utterance.
    """
    x = gen.speakers(rng, num_spk, num_enroll + 1)
    enroll = np.concatenate([x[:, :num_enroll], x[:, :num_enroll]])
    test = np.concatenate([x[:, num_enroll], np.roll(x[:, num_enroll], 1, axis=0)])
    labels = np.r_[np.ones(num_spk), np.zeros(num_spk)]
    return enroll, test, labels


def plda_scores(model, enroll_utts, test, num_utts):
    """ivector-plda-scoring --num-utts: mean of the raw enrollment vectors, transform with n."""
    enroll = model.transform_ivectors(enroll_utts.mean(axis=1), num_utts)
    return model.log_likelihood_ratio(enroll, model.transform_ivectors(test, 1), num_utts)


@pytest.fixture(scope="module")
def gen():
    return Generator(seed=0)


@pytest.fixture(scope="module")
def training(gen):
    x = gen.speakers(np.random.default_rng(1), NUM_SPK, UTTS_PER_SPK)
    labels = np.repeat([f"spk{i:04d}" for i in range(NUM_SPK)], UTTS_PER_SPK)
    return x.reshape(-1, DIM), labels


@pytest.fixture(scope="module")
def trained(training):
    x, labels = training
    return train_plda(x, labels, GAUSSIAN)


def rel_frobenius(estimate, truth):
    return float(np.linalg.norm(estimate - truth) / np.linalg.norm(truth))


def test_em_recovers_true_covariances_and_scores_like_the_oracle(gen, trained):
    # Sampling error: a covariance estimated from S independent draws has expected squared
    # Frobenius error (tr(C^2) + tr(C)^2) / S.  B is seen through NUM_SPK = 2000 speakers,
    # W through NUM_SPK * (UTTS_PER_SPK - 1) = 14000 within-speaker degrees of freedom.
    # For these matrices that is about 5% for B and 2.6% for W (relative RMS), so the
    # tolerances (10% and 6%) are about twice the error even a perfect estimator makes
    # (over 40 training seeds the worst errors were 8.3% and 3.2%), while a wrong update
    # (e.g. a missing W/n term, or counts off by the number of speakers) shows up as tens
    # of percent.
    def expected(c, n):
        return np.sqrt((np.trace(c @ c) + np.trace(c) ** 2) / n) / np.linalg.norm(c)
    assert expected(gen.between, NUM_SPK) < 0.055
    assert expected(gen.within, NUM_SPK * (UTTS_PER_SPK - 1)) < 0.03
    err_b = rel_frobenius(trained.between, gen.between)
    err_w = rel_frobenius(trained.within, gen.within)
    print(f"relative Frobenius error: between {err_b:.4f}, within {err_w:.4f}")
    assert err_b < 0.10
    assert err_w < 0.06
    # The mean is the average of the speaker means: standard error ~ sqrt(tr(B)/S) ~ 0.05.
    assert np.linalg.norm(trained.mean - gen.mean) < 0.2

    # Held-out speakers, single-utterance enrollment; the oracle is Bayes-optimal.
    enroll, test, labels = verification_trials(gen, np.random.default_rng(2), 20000, 1)
    eer_trained, _ = compute_eer(plda_scores(trained, enroll, test, 1), labels)
    eer_true, _ = compute_eer(plda_scores(gen.oracle(), enroll, test, 1), labels)
    print(f"EER trained {eer_trained:.4f}, true parameters {eer_true:.4f}")
    assert 0.03 < eer_true < 0.25   # a task where the comparison means something
    assert abs(eer_trained - eer_true) <= 0.10 * eer_true
    # And PLDA beats cosine scoring of the raw vectors on this data.
    eer_cos, _ = compute_eer(cosine_scores(enroll[:, 0] - trained.mean, test - trained.mean),
                             labels)
    assert eer_trained < eer_cos


def test_transform_whitens_within_and_diagonalises_between(trained):
    a = trained.transform
    np.testing.assert_allclose(a @ trained.within @ a.T, np.eye(DIM), atol=1e-9)
    np.testing.assert_allclose(a @ trained.between @ a.T, np.diag(trained.psi), atol=1e-9)
    assert np.all(np.diff(trained.psi) <= 0) and trained.psi[-1] >= 0


def test_em_objective_does_not_decrease(training, caplog):
    x, labels = training
    stats = PldaStats.from_labels(x[:4000], labels[:4000])
    for init in ("scatter", "identity"):
        est = PldaEstimator(stats, init=init)
        est.estimate(15)
        objf = np.array(est.objf_history)
        assert len(objf) == 16
        assert np.all(np.diff(objf) >= -1e-12 * np.abs(objf[:-1])), (init, objf)
    # From Kaldi's start (B = W = I) EM has a long way to go: it must climb.
    assert est.objf_history[-1] > est.objf_history[0] + 0.1
    caplog.clear()  # earlier tests may have left the root logger at INFO
    with caplog.at_level(logging.INFO, logger="deepspeaker.ivector.plda"):
        train_plda(x[:4000], labels[:4000], PldaConfig(num_em_iters=3))
    assert sum("PLDA EM iteration" in r.getMessage() for r in caplog.records) == 3


def brute_force_llr(model, enroll_utts, test):
    """log p(enroll utts, test | same) - log p(enroll utts) - log p(test) from the joint Gaussian."""
    n, d = enroll_utts.shape
    b, w = model.between, model.within

    def joint(k):
        return np.kron(np.ones((k, k)), b) + np.kron(np.eye(k), w)

    all_x = np.concatenate([enroll_utts.ravel(), test])
    same = multivariate_normal(np.tile(model.mean, n + 1), joint(n + 1)).logpdf(all_x)
    enroll_only = multivariate_normal(np.tile(model.mean, n), joint(n)).logpdf(enroll_utts.ravel())
    test_only = multivariate_normal(model.mean, b + w).logpdf(test)
    return same - enroll_only - test_only


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_llr_with_n_enrollment_utterances_equals_brute_force(gen, trained, n):
    enroll, test, labels = verification_trials(gen, np.random.default_rng(10 + n), 10, n)
    expected = np.array([brute_force_llr(trained, e, t) for e, t in zip(enroll, test)])
    got = plda_scores(trained, enroll, test, n)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-6)
    # The dict interface builds the same n-utterance models (lists or (n, D) arrays).
    enroll_dict = {f"e{i}": (list(e) if i % 2 else e) for i, e in enumerate(enroll)}
    test_dict = {f"t{i}": t for i, t in enumerate(test)}
    trials = [(f"e{i}", f"t{i}") for i in range(len(test))]
    np.testing.assert_allclose(trained.score(enroll_dict, test_dict, trials), expected,
                               rtol=1e-9, atol=1e-6)
    assert labels.sum() == 10


@pytest.mark.parametrize("n", [3, 5])
def test_proper_n_beats_naive_average_as_one_utterance(gen, trained, n):
    enroll, test, labels = verification_trials(gen, np.random.default_rng(20 + n), 20000, n)
    for model in (trained, gen.oracle()):
        proper, _ = compute_eer(plda_scores(model, enroll, test, n), labels)
        naive_enroll = model.transform_ivectors(enroll.mean(axis=1), 1)
        naive, _ = compute_eer(model.log_likelihood_ratio(
            naive_enroll, model.transform_ivectors(test, 1), 1), labels)
        print(f"n={n}: EER proper {proper:.4f}, naive {naive:.4f}")
        assert proper <= naive


def test_length_normalisation_follows_kaldi(trained, training):
    x = training[0][:50]
    raw = (x - trained.mean) @ trained.transform.T
    kaldi = TwoCovPLDA.from_covariances(trained.mean, trained.between, trained.within, PldaConfig())
    simple = TwoCovPLDA.from_covariances(trained.mean, trained.between, trained.within,
                                         PldaConfig(simple_length_norm=True))
    np.testing.assert_allclose(trained.transform_ivectors(x), raw, atol=1e-12)
    for n in (1, 3):
        y = kaldi.transform_ivectors(x, n)
        # Scaled copy of the raw vector whose norm under diag(psi) + I/n is the dimension.
        np.testing.assert_allclose(np.sum(y ** 2 / (kaldi.psi + 1.0 / n), axis=1), DIM)
        cos = np.sum(y * raw, axis=1) / np.linalg.norm(y, axis=1) / np.linalg.norm(raw, axis=1)
        np.testing.assert_allclose(cos, 1.0)
    # Per-row counts are allowed (one per enrollment model).
    counts = np.arange(1, 51)
    y = kaldi.transform_ivectors(x, counts)
    np.testing.assert_allclose(np.sum(y ** 2 / (kaldi.psi + 1.0 / counts[:, None]), axis=1), DIM)
    np.testing.assert_allclose(np.linalg.norm(simple.transform_ivectors(x, 5), axis=1),
                               np.sqrt(DIM))
    # A vector at the mean stays zero instead of becoming NaN.
    assert np.all(kaldi.transform_ivectors(kaldi.mean) == 0)


def test_score_follows_ivector_plda_scoring_pipeline(trained, training):
    x, _ = training
    model = TwoCovPLDA.from_covariances(trained.mean, trained.between, trained.within, PldaConfig())
    enroll = {"a": x[0:3], "b": [x[10], x[11]], "c": x[20]}
    test = {"u": x[1], "v": x[30]}
    trials = [("a", "u"), ("b", "v"), Trial("c", "u", False), ("a", "v")]
    got = model.score(enroll, test, trials)
    tu, tv = model.transform_ivectors(np.stack([x[1], x[30]]), 1)
    ea = model.transform_ivectors(x[0:3].mean(axis=0), 3)
    eb = model.transform_ivectors(x[10:12].mean(axis=0), 2)
    ec = model.transform_ivectors(x[20], 1)
    want = [model.log_likelihood_ratio(ea, tu, 3), model.log_likelihood_ratio(eb, tv, 2),
            model.log_likelihood_ratio(ec, tu, 1), model.log_likelihood_ratio(ea, tv, 3)]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    # The same speaker's held-out utterance scores above another speaker's.
    assert got[0] > got[3]
    with pytest.raises(KeyError, match="enrollment zz, test nope"):
        model.score(enroll, test, [("zz", "u"), ("a", "nope")])


def test_save_load_round_trip(trained, training, tmp_path):
    x, _ = training
    model = TwoCovPLDA.from_covariances(trained.mean, trained.between, trained.within,
                                        PldaConfig(simple_length_norm=True))
    path = tmp_path / "plda.npz"
    model.save(path, meta={"lda_dim": DIM})
    loaded = TwoCovPLDA.load(path)
    for name in ("mean", "transform", "psi", "between", "within"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(model, name))
    assert loaded.config == model.config
    np.testing.assert_array_equal(loaded.transform_ivectors(x[:5]), model.transform_ivectors(x[:5]))
    assert [p.name for p in tmp_path.iterdir()] == ["plda.npz"]   # no temp file left behind


def test_dimension_mismatch_names_file_and_both_dims(tmp_path):
    # A PLDA trained after LDA to 6 dims, used on vectors from an LDA to 4 dims.
    rng = np.random.default_rng(5)
    gen6 = Generator(seed=3, dim=6)
    x = gen6.speakers(rng, 50, 4).reshape(-1, 6)
    labels = np.repeat(np.arange(50), 4)
    path = tmp_path / "plda_lda6.npz"
    train_plda(x, labels, PldaConfig(num_em_iters=2)).save(path)
    model = TwoCovPLDA.load(path)
    wrong = rng.standard_normal((3, 4))
    for call in (lambda: model.transform_ivectors(wrong),
                 lambda: model.log_likelihood_ratio(wrong, wrong, 1),
                 lambda: model.score({"e": wrong[0]}, {"t": wrong[1]}, [("e", "t")])):
        with pytest.raises(ValueError) as info:
            call()
        msg = str(info.value)
        assert str(path) in msg and "6-dim" in msg and "4-dim" in msg


def test_wrong_kind_and_bad_files_are_clear_errors(tmp_path):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((40, 5)) + np.repeat(rng.standard_normal((10, 5)), 4, axis=0)
    lda_path = tmp_path / "lda.npz"
    train_lda(x, np.repeat(np.arange(10), 4), 3).save(lda_path)
    with pytest.raises(ModelFileError, match=r"lda\.npz.*LdaTransform.*expected.*TwoCovPLDA"):
        TwoCovPLDA.load(lda_path)
    junk = tmp_path / "junk.npz"
    junk.write_text("not a zip")
    with pytest.raises(ModelFileError, match="junk.npz"):
        TwoCovPLDA.load(junk)
    with pytest.raises(ModelFileError, match="missing.npz: model file not found"):
        TwoCovPLDA.load(tmp_path / "missing.npz")
    assert isinstance(LdaTransform.load(lda_path), LdaTransform)


def test_training_input_errors():
    rng = np.random.default_rng(7)
    with pytest.raises(ValueError, match="at least 2 speakers"):
        train_plda(rng.standard_normal((5, 3)), ["s"] * 5)
    with pytest.raises(ValueError, match="single utterance"):
        train_plda(rng.standard_normal((5, 3)), list("abcde"))
    with pytest.raises(ValueError, match="labels"):
        train_plda(rng.standard_normal((5, 3)), ["a", "b"])
    with pytest.raises(ValueError, match="num_em_iters"):
        PldaConfig(num_em_iters=-1)


def test_cosine_scores():
    e = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [2.0, 0.0]])
    t = np.array([[2.0, 0.0], [-1.0, -1.0], [1.0, 0.0], [0.0, 3.0]])
    np.testing.assert_allclose(cosine_scores(e, t), [1.0, -1.0, 0.0, 0.0], atol=1e-15)
    with pytest.raises(ValueError, match="3-dim.*2-dim"):
        cosine_scores(np.ones((1, 3)), np.ones((1, 2)))
