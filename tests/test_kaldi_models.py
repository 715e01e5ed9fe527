"""The back-end models in Kaldi's formats: bytes as Kaldi writes them, and Kaldi's scoring.

No Kaldi binary is here, so the test holds Kaldi's side itself, written from Kaldi's
sources (``ivectorbin/ivector-subtract-global-mean.cc``, ``bin/transform-vec.cc``,
``ivector-normalize-length.cc``, ``ivector-mean.cc``, ``ivector-plda-scoring.cc`` and
``ivector/plda.cc``): the exported files are parsed by kaldiio (transform.mat,
mean.vec) and by a reader of the ``<Plda>`` layout written here from the spec, never
by the module under test; then vectors go through Kaldi's pipeline in Kaldi's
precisions (float tables, double PLDA arithmetic, 7-digit score text).  Those scores
must equal ``score_plda``'s, with 1 and with k enrollment utterances.
"""

from __future__ import annotations

import math
import struct

import kaldiio
import numpy as np
import pytest

from deepspeaker.bin import export_kaldi_models, score_plda, train_plda
from deepspeaker.data.ark import write_ark_scp
from deepspeaker.ivector.kaldi_format import (
    plda_bytes,
    read_kaldi_lda,
    read_kaldi_matrix,
    read_kaldi_plda,
    read_kaldi_vector,
    write_kaldi_lda,
    write_kaldi_matrix,
    write_kaldi_plda,
)
from deepspeaker.ivector.lda import LdaTransform, length_normalize
from deepspeaker.ivector.pipeline import IvectorConfig, save_exp_config
from deepspeaker.ivector.plda import PldaConfig, TwoCovPLDA
from deepspeaker.scoring.trials import (
    Trial,
    make_enroll_trials,
    make_trials,
    read_scores,
    write_enroll2utt,
    write_trials,
)

DIM, LDA_DIM = 20, 10
# Kaldi's tables hold float32 and its score file 7 significant digits; our scorer works in
# float64.  Measured (scores -55..9): at most 9e-6 apart, 2e-7 of the largest |score|.  The
# bound: 1e-4 relative to each score, plus 1e-4 of the largest |score| for scores near zero.
# Scoring the 3-utterance models without --num-utts (or averaging before the length
# normalisation) is 17.6 off: the test tells the pipelines apart.
RTOL = 1e-4

# A 2-dim model whose numbers print the same in every format: the bytes are known exactly.
SMALL = TwoCovPLDA.from_kaldi(mean=[1.0, -2.0], transform=[[1.0, 0.0], [0.5, 2.0]],
                              psi=[3.0, 0.25])


def _kaldi_int32(n: int) -> bytes:
    return b"\x04" + struct.pack("<i", n)


def _small_binary() -> bytes:
    """``ivector-compute-plda --binary=true`` of SMALL, byte by byte from Kaldi's Write functions."""
    return (b"\0B" + b"<Plda> "
            + b"DV " + _kaldi_int32(2) + struct.pack("<2d", 1.0, -2.0)
            + b"DM " + _kaldi_int32(2) + _kaldi_int32(2) + struct.pack("<4d", 1.0, 0.0, 0.5, 2.0)
            + b"DV " + _kaldi_int32(2) + struct.pack("<2d", 3.0, 0.25)
            + b"</Plda> ")


SMALL_TEXT = "<Plda>  [ 1 -2 ]\n [\n  1 0 \n  0.5 2 ]\n [ 3 0.25 ]\n</Plda> "


# --------------------------------------------------------------------------------------
# Kaldi's side, from its sources


def parse_kaldi_plda(path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, transform, psi) of a Kaldi ``plda`` file, read by the layout of Plda::Write."""
    data = path.read_bytes()
    if not data.startswith(b"\0B"):
        text = data.decode()
        assert text.split()[0] == "<Plda>" and text.split()[-1] == "</Plda>"
        blocks = [b.split("]")[0] for b in text.split("[")[1:]]
        mean, psi = (np.array(blocks[i].split(), dtype=float) for i in (0, 2))
        transform = np.array([r.split() for r in blocks[1].strip().split("\n")], dtype=float)
        return mean, transform, psi
    pos = 2

    def take(n):
        nonlocal pos
        pos += n
        return data[pos - n:pos]

    assert take(7) == b"<Plda> "
    parts = []
    for kind in (b"DV ", b"DM ", b"DV "):
        assert take(3) == kind
        shape = [struct.unpack("<i", take(5)[1:])[0] for _ in range(1 if kind == b"DV " else 2)]
        n = int(np.prod(shape))
        parts.append(np.frombuffer(take(8 * n), "<f8").reshape(shape))
    assert take(8) == b"</Plda> " and pos == len(data)
    return tuple(parts)


def kaldi_scores(kdir, vectors: dict[str, np.ndarray], trials, enroll2utt=None) -> np.ndarray:
    """What Kaldi's recipe commands print for ``trials`` with the files in ``kdir``.

    ivector-subtract-global-mean kdir/mean.vec | transform-vec kdir/transform.mat |
    ivector-normalize-length (all on Vector<BaseFloat>); ivector-mean over enroll2utt
    (with num_utts.ark); ivector-plda-scoring --num-utts (TransformIvector, then
    LogLikelihoodRatio in double, scores printed with 7 significant digits).
    """
    f32 = np.float32
    mean = kaldiio.load_mat(str(kdir / "mean.vec")).astype(f32)
    affine = kaldiio.load_mat(str(kdir / "transform.mat")).astype(f32)
    plda_mean, transform, psi = parse_kaldi_plda(kdir / "plda")
    assert (kdir / "plda_scoring.conf").read_text().splitlines()[1:] == [
        "--normalize-length=true", "--simple-length-normalization=false"]
    offset = -transform @ plda_mean                          # Plda::ComputeDerivedVars

    prepared = {}
    for key, v in vectors.items():
        x = v.astype(f32) - mean
        y = affine[:, -1] + affine[:, :-1] @ x               # transform-vec, affine case
        ratio = f32(np.linalg.norm(y)) / f32(math.sqrt(y.size))
        prepared[key] = (y * (f32(1.0) / ratio)).astype(f32)  # ivector-normalize-length

    def transform_ivector(v, n):                             # Plda::TransformIvector
        t = offset + transform @ v.astype(np.float64)
        factor = math.sqrt(t.size / np.dot(1.0 / (psi + 1.0 / n), t * t))
        return (t * factor).astype(f32)

    models = enroll2utt or {}
    scores = []
    for t in trials:
        utts = models.get(t.enroll, [t.enroll])
        n = len(utts)
        avg = (np.sum([prepared[u] for u in utts], axis=0, dtype=f32) / f32(n)).astype(f32)
        u = transform_ivector(avg, n).astype(np.float64)
        w = transform_ivector(prepared[t.test], 1).astype(np.float64)
        mean_same = n * psi / (n * psi + 1.0) * u           # Plda::LogLikelihoodRatio
        var_same = 1.0 + psi / (n * psi + 1.0)
        var_diff = 1.0 + psi
        same = -0.5 * (np.sum(np.log(var_same)) + np.sum((w - mean_same) ** 2 / var_same))
        diff = -0.5 * (np.sum(np.log(var_diff)) + np.sum(w ** 2 / var_diff))
        scores.append(float(f"{f32(same - diff):.7g}"))
    return np.array(scores)


# --------------------------------------------------------------------------------------
# Bytes as Kaldi writes them


def test_plda_bytes_are_what_ivector_compute_plda_writes():
    assert plda_bytes(SMALL, binary=True) == _small_binary()
    assert plda_bytes(SMALL, binary=False) == SMALL_TEXT.encode()


@pytest.mark.parametrize("binary", [True, False])
def test_kaldi_plda_reads_as_the_model_kaldi_stores(tmp_path, binary):
    path = tmp_path / "plda"
    path.write_bytes(_small_binary() if binary else SMALL_TEXT.encode())
    plda = read_kaldi_plda(path)
    np.testing.assert_array_equal(plda.mean, [1.0, -2.0])
    np.testing.assert_array_equal(plda.transform, [[1.0, 0.0], [0.5, 2.0]])
    np.testing.assert_array_equal(plda.psi, [3.0, 0.25])
    # The covariances it stands for: within -> I, between -> diag(psi) under the transform.
    t = plda.transform
    np.testing.assert_allclose(t @ plda.within @ t.T, np.eye(2), atol=1e-12)
    np.testing.assert_allclose(t @ plda.between @ t.T, np.diag([3.0, 0.25]), atol=1e-12)
    assert plda.config == PldaConfig()


def test_lda_files_are_what_ivector_compute_lda_and_ivector_mean_write(tmp_path):
    rng = np.random.default_rng(1)
    lda = LdaTransform(mean=3.0 * rng.standard_normal(6), matrix=rng.standard_normal((4, 6)))
    write_kaldi_lda(lda, tmp_path / "transform.mat", tmp_path / "mean.vec", binary=True)
    raw = (tmp_path / "transform.mat").read_bytes()
    assert raw[:15] == b"\0BFM " + _kaldi_int32(4) + _kaldi_int32(7)
    assert len(raw) == 2 + 3 + 5 + 5 + 4 * 4 * 7          # Matrix<BaseFloat>, (4, 6 + 1)
    affine = kaldiio.load_mat(str(tmp_path / "transform.mat"))
    assert affine.dtype == np.float32 and affine.shape == (4, 7)
    np.testing.assert_array_equal(affine[:, :6], lda.matrix.astype(np.float32))
    np.testing.assert_array_equal(affine[:, 6], 0.0)      # the mean is in mean.vec
    mean = kaldiio.load_mat(str(tmp_path / "mean.vec"))
    assert (tmp_path / "mean.vec").read_bytes()[:5] == b"\0BDV "
    np.testing.assert_array_equal(mean, lda.mean)
    # Kaldi's pipeline (subtract mean.vec, transform-vec) is our LDA.
    x = rng.standard_normal((5, 6))
    np.testing.assert_allclose((x - mean) @ affine[:, :6].T.astype(float) + affine[:, 6],
                               lda.apply(x), rtol=1e-6, atol=1e-6)


def test_an_lda_with_its_mean_in_the_offset_column_reads_as_the_same_transform(tmp_path):
    """ivector-compute-lda given raw vectors writes ``[A, -A mean]`` and no mean.vec is needed."""
    rng = np.random.default_rng(2)
    lda = LdaTransform(mean=rng.standard_normal(6), matrix=rng.standard_normal((3, 6)))
    kaldiio.save_mat(str(tmp_path / "raw.mat"), lda.as_affine())   # a DM file, as Kaldi reads
    back = read_kaldi_lda(tmp_path / "raw.mat")
    x = rng.standard_normal((4, 6))
    np.testing.assert_allclose(back.apply(x), lda.apply(x), atol=1e-12)
    (tmp_path / "m.vec").write_text(" [ 1 2 3 4 5 6 ]\n")          # ivector-mean's text default
    with_mean = read_kaldi_lda(tmp_path / "raw.mat", tmp_path / "m.vec")
    np.testing.assert_allclose(with_mean.apply(x + np.arange(1, 7)), lda.apply(x), atol=1e-12)


@pytest.mark.parametrize("binary", [True, False])
def test_round_trips_keep_every_number(tmp_path, binary):
    rng = np.random.default_rng(3)
    a = rng.standard_normal((5, 5))
    plda = TwoCovPLDA.from_covariances(rng.standard_normal(5), a @ a.T, np.eye(5) + 0.1 * a @ a.T)
    write_kaldi_plda(plda, tmp_path / "plda", binary)
    back = read_kaldi_plda(tmp_path / "plda")
    for name in ("mean", "transform", "psi"):
        np.testing.assert_array_equal(getattr(back, name), getattr(plda, name))
    np.testing.assert_allclose(back.within, plda.within, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(back.between, plda.between, rtol=1e-10, atol=1e-12)

    lda = LdaTransform(mean=rng.standard_normal(5) * 100, matrix=rng.standard_normal((3, 5)))
    write_kaldi_lda(lda, tmp_path / "t.mat", tmp_path / "m.vec", binary)
    back_lda = read_kaldi_lda(tmp_path / "t.mat", tmp_path / "m.vec")
    np.testing.assert_array_equal(back_lda.mean, lda.mean)          # double, exact
    np.testing.assert_array_equal(back_lda.matrix.astype(np.float32),
                                  lda.matrix.astype(np.float32))    # float, as Kaldi's
    # kaldiio, another reader, agrees with ours on the same files.
    np.testing.assert_array_equal(kaldiio.load_mat(str(tmp_path / "t.mat")).astype(np.float32),
                                  read_kaldi_matrix(tmp_path / "t.mat").astype(np.float32))
    m = rng.standard_normal((2, 3))
    write_kaldi_matrix(tmp_path / "d.mat", m, binary, double=True)
    np.testing.assert_array_equal(read_kaldi_matrix(tmp_path / "d.mat"), m)


@pytest.mark.parametrize("content, message", [
    (_small_binary()[:60], ("plda: byte 33: DM of shape (2, 2) needs 32 bytes but the file "
                            "ends after 14 (truncated?)")),
    (SMALL_TEXT.replace("0.5", "x.5").encode(), "plda:4: not a number: 'x.5'"),
    (SMALL_TEXT.replace("<Plda>", "<Lda>").encode(), "plda:1: expected <Plda>, got '<Lda>'"),
    (b"\0B<Plda> CM " + bytes(20), "plda: byte 9: a compressed matrix"),
    (_small_binary() + b"junk", "plda: byte 110: unexpected data after the end of the object"),
    (SMALL_TEXT.replace(" [ 3 0.25 ]", " [\n  3 \n 0.25 ]").encode(),
     "plda:5: a vector spans several lines: is this a matrix?"),
])
def test_damaged_kaldi_files_name_the_file_and_where(tmp_path, content, message):
    path = tmp_path / "plda"
    path.write_bytes(content)
    with pytest.raises(ValueError) as e:
        read_kaldi_plda(path)
    assert str(e.value).startswith(f"{path}")
    assert message in str(e.value)


def test_a_broken_model_is_not_written(tmp_path):
    broken = TwoCovPLDA.from_kaldi(mean=[np.nan, 0.0], transform=np.eye(2), psi=[1.0, 1.0])
    with pytest.raises(ValueError, match=r"plda: cannot write this model: refusing to write NaN"):
        write_kaldi_plda(broken, tmp_path / "plda")
    assert list(tmp_path.iterdir()) == []


def test_a_text_matrix_with_ragged_rows_is_refused(tmp_path):
    (tmp_path / "t.mat").write_text(" [\n  1 2 3 \n  4 5 ]\n")
    with pytest.raises(ValueError, match=r"t\.mat:3: matrix row has 2 values, the first has 3"):
        read_kaldi_matrix(tmp_path / "t.mat")
    (tmp_path / "v.vec").write_text(" [ 1 nan ]\n")
    with pytest.raises(ValueError, match=r"v\.vec:1: holds NaN or infinite values"):
        read_kaldi_vector(tmp_path / "v.vec")


# --------------------------------------------------------------------------------------
# An i-vector system, exported and scored by Kaldi's pipeline


def _ivectors(rng, prefix, n_spk, n_utt, mu, between, within) -> dict[str, np.ndarray]:
    out = {}
    for s in range(n_spk):
        y = rng.multivariate_normal(np.zeros(DIM), between)
        for u in range(n_utt):
            out[f"{prefix}{s:02d}-u{u}"] = mu + y + rng.multivariate_normal(np.zeros(DIM), within)
    return out


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    """exp/ivector with models trained by train_plda, eval i-vectors and trial lists."""
    root = tmp_path_factory.mktemp("kaldi_models")
    rng = np.random.default_rng(0)
    q = np.linalg.qr(rng.standard_normal((DIM, DIM)))[0]
    between, within = (q * np.logspace(-1, 1, DIM)) @ q.T, np.diag(np.linspace(0.5, 2.0, DIM))
    mu = 5.0 * rng.standard_normal(DIM)  # i-vectors are far from zero mean: mean.vec matters
    exp, data = root / "exp/ivector", root / "data"
    save_exp_config(exp, IvectorConfig.from_dict(
        {"backend": {"lda_dim": LDA_DIM, "plda": {"num_em_iters": 5}}}))
    vecs = {}
    for name, prefix, n_spk in (("train", "tr", 40), ("eval", "ev", 12)):
        vecs[name] = _ivectors(rng, prefix, n_spk, 6, mu, between, within)
        (data / name).mkdir(parents=True)
        utts = sorted(vecs[name])
        (data / name / "utt2spk").write_text("".join(f"{u} {u.split('-')[0]}\n" for u in utts))
        (data / name / "wav.scp").write_text("".join(f"{u} /x/{u}.wav\n" for u in utts))
        (exp / name).mkdir()
        write_ark_scp(exp / name / "ivector.ark", exp / name / "ivector.scp",
                      {k: v.astype(np.float32) for k, v in vecs[name].items()})
    assert train_plda.main([str(exp), str(data / "train")]) == 0
    ev = data / "eval"
    utt2spk = dict(line.split() for line in (ev / "utt2spk").read_text().splitlines())
    write_trials(ev / "trials", make_trials(utt2spk, num_negatives=11))
    enroll2utt, by_k = make_enroll_trials(utt2spk, (3,), num_negatives=11)
    write_enroll2utt(ev / "enroll2utt", enroll2utt)
    write_trials(ev / "trials_enroll3", by_k[3])
    return exp, data, {k: v.astype(np.float32) for k, v in vecs["eval"].items()}, enroll2utt


def _score_plda(exp, data, trials, extra=()):
    out = exp / "scores" / f"{trials}_plda"
    assert score_plda.main([*extra, str(exp), str(data / "eval"), str(data / "eval" / trials),
                            str(out)]) == 0
    return read_scores(out)


@pytest.mark.parametrize("binary", ["true", "false"])
def test_kaldi_scores_our_ivectors_with_the_exported_models_as_score_plda_does(system, binary,
                                                                               tmp_path):
    exp, data, vecs, enroll2utt = system
    out = tmp_path / f"kaldi_{binary}"
    assert export_kaldi_models.main([str(exp), "--binary", binary, "--out", str(out)]) == 0
    assert (out / "plda").read_bytes().startswith(b"\0B") == (binary == "true")

    for trials, extra, models in (("trials", (), None),
                                  ("trials_enroll3", ("--enroll2utt", str(data / "eval/enroll2utt")),
                                   enroll2utt)):
        ours = _score_plda(exp, data, trials, extra)
        keys = sorted(ours)
        kaldi = kaldi_scores(out, vecs, [Trial(e, t, True) for e, t in keys], models)
        want = np.array([ours[k] for k in keys])
        assert len(keys) > 100 and np.ptp(want) > 10    # real trials, spread-out scores
        np.testing.assert_allclose(kaldi, want, rtol=RTOL, atol=RTOL * np.abs(want).max())


def test_the_exported_models_read_back_score_exactly_as_the_originals(system, tmp_path):
    exp, _, vecs, _ = system
    assert export_kaldi_models.main([str(exp), "--out", str(tmp_path)]) == 0
    lda = read_kaldi_lda(tmp_path / "transform.mat", tmp_path / "mean.vec")
    plda = read_kaldi_plda(tmp_path / "plda")
    ours_lda, ours_plda = LdaTransform.load(exp / "models/lda.npz"), TwoCovPLDA.load(exp / "models/plda.npz")
    x = np.stack(list(vecs.values())).astype(np.float64)
    np.testing.assert_allclose(lda.apply(x), ours_lda.apply(x), rtol=1e-5, atol=1e-5)
    y = length_normalize(ours_lda.apply(x))
    t = plda.transform_ivectors(y)
    np.testing.assert_array_equal(t, ours_plda.transform_ivectors(y))
    np.testing.assert_array_equal(plda.log_likelihood_ratio(t[:5], t[5:10], 3),
                                  ours_plda.log_likelihood_ratio(t[:5], t[5:10], 3))


def test_export_defaults_rerun_and_a_network_back_end(system, tmp_path, capfd):
    exp = system[0]
    assert export_kaldi_models.main([str(exp)]) == 0
    kdir = exp / "models/kaldi"
    assert sorted(p.name for p in kdir.iterdir()) == [".export.done", "mean.vec", "plda",
                                                      "plda_scoring.conf", "transform.mat"]
    before = {p.name: p.stat().st_mtime_ns for p in kdir.iterdir()}
    capfd.readouterr()
    assert export_kaldi_models.main([str(exp)]) == 0
    assert "up to date" in capfd.readouterr().err
    assert before == {p.name: p.stat().st_mtime_ns for p in kdir.iterdir()}
    assert export_kaldi_models.main([str(exp), "--binary", "false"]) == 0
    assert not (kdir / "plda").read_bytes().startswith(b"\0B")

    net = tmp_path / "exp/gru"                          # a network keeps them in backend/
    (net / "backend").mkdir(parents=True)
    for name in ("lda.npz", "plda.npz"):
        (net / "backend" / name).write_bytes((exp / "models" / name).read_bytes())
    assert export_kaldi_models.main([str(net)]) == 0
    assert (net / "backend/kaldi/plda").read_bytes() == plda_bytes(
        TwoCovPLDA.load(exp / "models/plda.npz"), binary=True)


def test_what_is_not_a_trained_back_end_is_one_message(system, tmp_path, capfd):
    exp = system[0]
    cases = [
        (tmp_path / "nowhere", "nowhere: experiment dir not found"),
        (tmp_path / "fusion", ("fusion: not a system with an LDA + PLDA back end: neither "
                               "models/{lda,plda}.npz")),
        (tmp_path / "half", "half/models/plda.npz: missing beside lda.npz"),
    ]
    (tmp_path / "fusion").mkdir()
    (tmp_path / "half/models").mkdir(parents=True)
    (tmp_path / "half/models/lda.npz").write_bytes((exp / "models/lda.npz").read_bytes())
    for path, message in cases:
        capfd.readouterr()
        assert export_kaldi_models.main([str(path)]) == 1
        err = capfd.readouterr().err
        assert message in err and "Traceback" not in err
    capfd.readouterr()
    with pytest.raises(SystemExit):
        export_kaldi_models.main([str(exp), "--binary", "yes"])
    assert "expected true or false, got 'yes'" in capfd.readouterr().err
