"""The back end of learned embeddings (Kaldi's x-vector recipe): LDA + PLDA on a system's
training-set embeddings, through the commands stage 9 runs.

The embeddings are synthetic with a known speaker structure: speakers differ in a few
directions, and within a speaker the vectors swing far along other directions (channel,
session).  Cosine cannot tell the two apart; LDA + PLDA learn which is which from the
training speakers, so PLDA must win by a wide margin.
"""

from __future__ import annotations

import numpy as np
import pytest

from deepspeaker.bin import score_embeddings, score_plda, train_plda
from deepspeaker.data.ark import read_vectors, write_ark_scp
from deepspeaker.ivector.lda import LdaTransform, length_normalize
from deepspeaker.ivector.plda import TwoCovPLDA
from deepspeaker.scoring.report import evaluate
from deepspeaker.scoring.trials import (make_enroll_trials, make_trials, read_scores,
                                        write_enroll2utt, write_trials)
from deepspeaker.utils import load_yaml

DIM, SPK_DIMS, NUISANCE_DIMS = 32, 6, 6
CONF = "lda_dim: 12\nplda: {num_em_iters: 5}\n"


def _speakers(rng, prefix: str, n_spk: int, n_utt: int, span: int = DIM) -> dict[str, np.ndarray]:
    """Unit embeddings: a speaker offset in SPK_DIMS directions, a large per-utterance swing
    in NUISANCE_DIMS others, a little isotropic noise; all inside a ``span``-dim subspace."""
    basis = np.linalg.qr(np.random.default_rng(7).standard_normal((span, span)))[0]
    out = {}
    for s in range(n_spk):
        spk = np.zeros(span)
        spk[:SPK_DIMS] = rng.standard_normal(SPK_DIMS)
        for u in range(n_utt):
            x = spk.copy()
            swing = slice(SPK_DIMS, min(span, SPK_DIMS + NUISANCE_DIMS))
            x[swing] += 3.0 * rng.standard_normal(swing.stop - swing.start)
            x += 0.3 * rng.standard_normal(span)
            v = np.zeros(DIM)
            v[:span] = basis @ x
            out[f"{prefix}{s:02d}-u{u:02d}"] = v / np.linalg.norm(v)
    return out


def _data_dir(path, vecs) -> None:
    path.mkdir(parents=True)
    utts = sorted(vecs)
    (path / "utt2spk").write_text("".join(f"{u} {u.split('-')[0]}\n" for u in utts))
    (path / "wav.scp").write_text("".join(f"{u} /x/{u}.wav\n" for u in utts))


@pytest.fixture()
def system(tmp_path):
    """data/{train,eval}, exp/sys/{train,eval}/embedding.scp, eval trial lists, the conf."""
    rng = np.random.default_rng(0)
    exp, data = tmp_path / "exp/sys", tmp_path / "data"
    for name, prefix, n_spk, n_utt in (("train", "tr", 40, 8), ("eval", "ev", 20, 8)):
        vecs = _speakers(rng, prefix, n_spk, n_utt)
        _data_dir(data / name, vecs)
        (exp / name).mkdir(parents=True)
        write_ark_scp(exp / name / "embedding.ark", exp / name / "embedding.scp",
                      {k: v.astype(np.float32) for k, v in sorted(vecs.items())})
    ev = data / "eval"
    utt2spk = dict(line.split() for line in (ev / "utt2spk").read_text().splitlines())
    write_trials(ev / "trials", make_trials(utt2spk, num_negatives=19))
    enroll2utt, by_k = make_enroll_trials(utt2spk, (1, 3), num_negatives=19)
    write_enroll2utt(ev / "enroll2utt", enroll2utt)
    for k, trials in by_k.items():
        write_trials(ev / f"trials_enroll{k}", trials)
    conf = tmp_path / "embedding_backend.yaml"
    conf.write_text(CONF)
    return exp, data, conf


def _train(exp, data, conf, *extra) -> int:
    return train_plda.main(["--vectors", str(exp / "train/embedding.scp"), "--config", str(conf),
                            *map(str, extra), str(exp), str(data / "train")])


def _score(exp, data, trials, *extra) -> int:
    return score_plda.main(["--vectors", str(exp / "eval/embedding.scp"), *map(str, extra),
                            str(exp), str(data / "eval"), str(data / "eval" / trials),
                            str(exp / "scores" / f"plda_{trials}")])


def _eer(exp, data, name: str) -> float:
    return evaluate(exp / "scores" / name, data / "eval" / name.split("_", 1)[1])[0].eer


def test_plda_beats_cosine_when_within_speaker_variation_is_anisotropic(system):
    exp, data, conf = system
    assert _train(exp, data, conf) == 0
    assert _score(exp, data, "trials") == 0
    assert score_embeddings.main([str(data / "eval"), str(data / "eval/trials"),
                                  str(exp / "scores/cosine_trials"),
                                  str(exp / "eval/embedding.scp")]) == 0
    cosine, plda = _eer(exp, data, "cosine_trials"), _eer(exp, data, "plda_trials")
    assert cosine > 0.3           # the swing dominates the angle
    assert plda < 0.1             # PLDA learnt it is not the speaker
    lda = LdaTransform.load(exp / "backend/lda.npz")
    assert (lda.input_dim, lda.output_dim) == (DIM, 12)
    assert TwoCovPLDA.load(exp / "backend/plda.npz").dim == 12
    saved = load_yaml(exp / "backend/config.yaml")
    assert saved["lda_dim"] == 12 and saved["plda"]["num_em_iters"] == 5


def test_k_utterance_enrollment_is_scored_as_ivector_plda_scoring_does(system):
    exp, data, conf = system
    assert _train(exp, data, conf) == 0
    for k in (1, 3):
        assert _score(exp, data, f"trials_enroll{k}", "--enroll2utt",
                      data / "eval/enroll2utt") == 0
    # One model by hand: the mean of 3 projected vectors, scored with n = 3.
    emb = read_vectors(exp / "eval/embedding.scp")
    lda = LdaTransform.load(exp / "backend/lda.npz")
    plda = TwoCovPLDA.load(exp / "backend/plda.npz")
    enroll2utt = {line.split()[0]: line.split()[1:]
                  for line in (data / "eval/enroll2utt").read_text().splitlines()}
    (enroll, test), got = next(iter(read_scores(exp / "scores/plda_trials_enroll3").items()))
    proj = {u: length_normalize(lda.apply(emb[u])) for u in enroll2utt[enroll] + [test]}
    want = plda.score({enroll: np.stack([proj[u] for u in enroll2utt[enroll]])},
                      {test: proj[test]}, [(enroll, test)])[0]
    assert len(enroll2utt[enroll]) == 3
    assert got == pytest.approx(want, rel=1e-5)
    as_one = plda.score({enroll: np.mean([proj[u] for u in enroll2utt[enroll]], axis=0)},
                        {test: proj[test]}, [(enroll, test)])[0]
    assert abs(as_one - want) > 1e-3  # not a plain average scored as one utterance
    assert _eer(exp, data, "plda_trials_enroll3") < _eer(exp, data, "plda_trials_enroll1")


def test_rerun_skips_and_another_conf_is_refused_naming_what_changed(system, tmp_path, capfd):
    exp, data, conf = system
    assert _train(exp, data, conf) == 0
    models = {p.name: p.read_bytes() for p in (exp / "backend").iterdir()}
    mtimes = {p.name: p.stat().st_mtime_ns for p in (exp / "backend").iterdir()}
    capfd.readouterr()
    assert _train(exp, data, conf) == 0
    assert "up to date" in capfd.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in (exp / "backend").iterdir()} == mtimes
    assert _train(exp, data, conf, "--lda-dim", 8) == 1
    err = capfd.readouterr().err
    assert "config.backend.lda_dim" in err and f"rm -r {exp}/backend and rerun" in err
    assert "Traceback" not in err
    other = tmp_path / "other.yaml"
    other.write_text(CONF.replace("num_em_iters: 5", "num_em_iters: 6"))
    assert _train(exp, data, other) == 1
    assert "config.backend.plda.num_em_iters" in capfd.readouterr().err
    assert {p.name: p.read_bytes() for p in (exp / "backend").iterdir()} == models


def test_new_training_embeddings_are_refused(system, capfd):
    exp, data, conf = system
    assert _train(exp, data, conf) == 0
    scp = exp / "train/embedding.scp"
    scp.write_text("".join(scp.read_text().splitlines(keepends=True)[1:]))
    capfd.readouterr()
    assert _train(exp, data, conf) == 1
    assert "exp_files.train/embedding.scp" in capfd.readouterr().err


def _train_set(exp, data, vecs) -> None:
    if not (data / "train").exists():
        _data_dir(data / "train", vecs)
    (exp / "train").mkdir(parents=True)
    write_ark_scp(exp / "train/embedding.ark", exp / "train/embedding.scp",
                  {k: v.astype(np.float32) for k, v in sorted(vecs.items())})


def test_lda_beyond_the_rank_is_logged_and_beyond_the_speakers_lowered(tmp_path, capfd):
    """Embeddings of 12 speakers that span 10 of 32 dims (a narrow network's): LDA 11 floors
    22 eigenvalues and says so; LDA 20 > 12 speakers - 1 is lowered to 11, not an error."""
    vecs = _speakers(np.random.default_rng(1), "tr", 12, 6, span=10)
    data, conf = tmp_path / "data", tmp_path / "b.yaml"
    for name, lda_dim in (("narrow", 11), ("wide", 20)):
        exp = tmp_path / "exp" / name
        _train_set(exp, data, vecs)
        conf.write_text(f"lda_dim: {lda_dim}\n")
        capfd.readouterr()
        assert _train(exp, data, conf) == 0
        err = capfd.readouterr().err
        assert "floored 22 of 32 eigenvalues of the covariance to normalise: the vectors " \
               "span about 10 dims, fewer than LDA dim 11" in err
        assert LdaTransform.load(exp / "backend/lda.npz").output_dim == 11
        assert load_yaml(exp / "backend/config.yaml")["lda_dim"] == 11
    assert f"LDA dim 20: {exp}/train/embedding.scp has 32-dim vectors of 12 speakers, so at " \
           "most 11 (min(dim, speakers - 1)); using 11" in err


def test_scoring_without_a_trained_back_end_is_one_message(system, capfd):
    exp, data, _ = system
    assert _score(exp, data, "trials") == 1
    err = capfd.readouterr().err
    assert f"{exp}/backend/lda.npz not found: train the back end first" in err
    assert "Traceback" not in err


def test_stages_8_9_score_every_list_with_cosine_and_plda(tmp_path):
    """egs/mini's stages 8-9 as a user runs them, on an untrained tiny GRU and its
    no-augmentation twin: both back ends score every list; the per-system RESULTS.md
    has the PLDA rows.  (The network is random: only the plumbing is checked here.)"""
    import os
    import subprocess
    from pathlib import Path

    from builders import make_exp, write_data_dir

    from deepspeaker.bin import describe_system, make_trials

    root = Path(__file__).resolve().parents[1]
    data, exp = tmp_path / "data", tmp_path / "exp"
    write_data_dir(data / "train", "tr", 6, 4, seed=1)
    write_data_dir(data / "eval", "ev", 4, 5, seed=2)
    assert make_trials.main(["--enroll-counts", "2", str(data / "eval")]) == 0
    for tag, extra in (("gru_softmax", []), ("gru_softmax_noaug", ["--no-augmentation"])):
        make_exp(exp / tag)
        assert describe_system.main([str(exp / tag), "--kind", "deepspeaker", "--strategy",
                                     "softmax", "--train-set", str(data / "train"), *extra]) == 0
    r = subprocess.run(["bash", str(root / "egs/mini/run.sh"), "--stage", "8", "--stop-stage", "9",
                        "--data", str(data), "--exp", str(exp), "--nnet-models", "gru",
                        "--nnet-strategies", "softmax", "--nnet-backends", "cosine plda",
                        "--nnet-lda-dim", "4"], check=False, capture_output=True, text=True,
                       timeout=300,
                       env=dict(os.environ, LC_ALL="C"))
    assert r.returncode == 0, r.stderr[-3000:]
    for tag in ("gru_softmax", "gru_softmax_noaug"):
        scores = sorted(p.name for p in (exp / tag / "scores").iterdir())
        # The main list also after AS-norm (cohort: the training set's 6 speakers / 24
        # utterances), every other list as it is.
        assert scores == ["cosine_asnorm_trials", "cosine_trials", "cosine_trials_enroll2",
                          "plda_asnorm_trials", "plda_trials", "plda_trials_enroll2"], tag
        assert sorted(p.name for p in (exp / tag / "asnorm").iterdir()) == ["cosine.npz",
                                                                             "plda.npz"]
        assert (exp / tag / "train/embedding.scp").is_file()
        assert LdaTransform.load(exp / tag / "backend/lda.npz").output_dim == 4
        rows = [line.split("|")[1].strip() for line in (exp / tag / "RESULTS.md").read_text()
                .splitlines() if line.startswith("| ") and "system" not in line]
        assert sorted(rows) == ["cosine", "cosine", "cosine_asnorm", "plda", "plda",
                                "plda_asnorm"]
        n = len((data / "eval/trials").read_text().splitlines())
        assert len((exp / tag / "scores/plda_trials").read_text().splitlines()) == n
