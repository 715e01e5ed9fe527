"""Cosine scoring, k-utterance enrollment and the two fusions (paper T6, T8) on hand-made numbers."""

import math

import numpy as np
import pytest

from deepspeaker.bin import fuse_scores as fuse_bin
from deepspeaker.bin import score_embeddings
from deepspeaker.data.ark import write_ark_scp
from deepspeaker.scoring.embedding import (cosine_trials, enroll_model, fuse_embeddings,
                                           fuse_scores, trials_with_vectors, znorm)
from deepspeaker.scoring.trials import Trial, read_scores, write_enroll2utt, write_trials
from deepspeaker.utils import DeepSpeakerError


def test_enroll_model_averages_unit_vectors_and_renormalises():
    emb = {"a": np.array([3.0, 0.0]), "b": np.array([0.0, 0.5])}
    m = enroll_model(emb, ["a", "b"])
    # unit(a) = (1, 0), unit(b) = (0, 1): the mean (0.5, 0.5) renormalised.
    np.testing.assert_allclose(m, [math.sqrt(0.5), math.sqrt(0.5)], atol=1e-15)
    np.testing.assert_allclose(enroll_model(emb, ["a"]), [1.0, 0.0])


def test_cosine_trials_with_models_and_skips():
    emb = {"a": np.array([1.0, 0.0]), "b": np.array([0.0, 2.0]), "t": np.array([1.0, 1.0])}
    trials = [Trial("m2", "t", True), Trial("a", "t", False), Trial("x", "t", False),
              Trial("m3", "t", False)]
    kept, scores, skipped = cosine_trials(emb, trials, {"m2": ["a", "b"], "m3": ["a", "gone"]})
    assert kept == trials[:2]
    np.testing.assert_allclose(scores, [1.0, math.sqrt(0.5)], atol=1e-12)
    assert [(t.enroll, miss) for t, miss in skipped] == [("x", ["x"]), ("m3", ["gone"])]


def test_embedding_fusion_is_renormalised_sum_of_unit_vectors():
    s1 = {"u": np.array([2.0, 0.0]), "v": np.array([0.0, 1.0]), "only1": np.array([1.0, 0.0])}
    s2 = {"u": np.array([0.0, 5.0]), "v": np.array([0.0, 3.0])}
    fused = fuse_embeddings([s1, s2])
    assert sorted(fused) == ["u", "v"]
    np.testing.assert_allclose(fused["u"], [math.sqrt(0.5), math.sqrt(0.5)])
    np.testing.assert_allclose(fused["v"], [0.0, 1.0])


def test_score_fusion_znormalises_each_system_over_all_its_trials():
    trials = [Trial("e", f"t{i}", i == 0) for i in range(4)]
    a = {("e", "t0"): 4.0, ("e", "t1"): 2.0, ("e", "t2"): 2.0, ("e", "t3"): 0.0}  # mean 2, std sqrt(2)
    b = {("e", "t0"): 10.0, ("e", "t1"): 30.0, ("e", "t2"): 20.0}                  # t3 skipped
    kept, fused = fuse_scores([a, b], trials)
    assert [t.test for t in kept] == ["t0", "t1", "t2"]
    za = np.array([2, 0, 0]) / math.sqrt(2)
    zb = (np.array([10, 30, 20]) - 20) / math.sqrt(200 / 3)   # b's own 3 scores
    np.testing.assert_allclose(fused, za + zb, atol=1e-12)
    # Scaling or shifting a system changes nothing.
    a2 = {k: 7 * v - 3 for k, v in a.items()}
    np.testing.assert_allclose(fuse_scores([a2, b], trials)[1], fused, atol=1e-12)


def test_znorm_rejects_constant_scores():
    with pytest.raises(DeepSpeakerError, match="sys: all 3 scores are equal"):
        znorm(np.ones(3), "sys")


def test_trials_with_vectors_is_one_rule_for_every_vector_kind():
    trials = [Trial("m", "t", True), Trial("a", "t", False), Trial("a", "gone", False),
              Trial("m2", "t", False)]
    models = {"m": ["a", "b"], "m2": ["a", "lost", "gone"]}
    for vectors in ({"a": np.ones(2), "b": np.ones(2), "t": np.ones(2)},   # arrays
                    {"a": 1, "b": 2, "t": 3}):                              # anything keyed by id
        kept, skipped = trials_with_vectors(trials, vectors, models)
        assert kept == trials[:2]
        assert skipped == [(trials[2], ["gone"]), (trials[3], ["lost", "gone"])]


def _data_dir(path, utts):
    path.mkdir()
    (path / "wav.scp").write_text("".join(f"{u} /nonexistent/{u}.wav\n" for u in utts))
    (path / "utt2spk").write_text("".join(f"{u} {u.split('-')[0]}\n" for u in utts))
    spk = {}
    for u in utts:
        spk.setdefault(u.split("-")[0], []).append(u)
    (path / "spk2utt").write_text("".join(f"{s} {' '.join(v)}\n" for s, v in sorted(spk.items())))


def test_score_embeddings_cli_fusion_enrollment_and_errors(tmp_path, capfd):
    utts = ["s1-a", "s1-b", "s1-c", "s2-a", "s2-b"]
    _data_dir(tmp_path / "data", utts)
    rng = np.random.default_rng(0)
    e1 = {u: rng.standard_normal(8).astype(np.float32) for u in utts[:-1]}   # s2-b failed
    e2 = {u: rng.standard_normal(8).astype(np.float32) for u in utts}
    write_ark_scp(tmp_path / "e1.ark", tmp_path / "e1.scp", e1)
    write_ark_scp(tmp_path / "e2.ark", tmp_path / "e2.scp", e2)
    write_enroll2utt(tmp_path / "enroll2utt", {"s1-enroll2": ["s1-a", "s1-b"]})
    write_trials(tmp_path / "trials", [Trial("s1-enroll2", "s1-c", True),
                                       Trial("s1-enroll2", "s2-a", False),
                                       Trial("s1-enroll2", "s2-b", False)])
    args = ["--enroll2utt", str(tmp_path / "enroll2utt"), str(tmp_path / "data"),
            str(tmp_path / "trials"), str(tmp_path / "out")]
    assert score_embeddings.main(args + [str(tmp_path / "e1.scp"), str(tmp_path / "e2.scp")]) == 0
    scores = read_scores(tmp_path / "out")
    assert sorted(scores) == [("s1-enroll2", "s1-c"), ("s1-enroll2", "s2-a")]
    fused = fuse_embeddings([{k: v.astype(np.float64) for k, v in e.items()} for e in (e1, e2)])
    expect = float(enroll_model(fused, ["s1-a", "s1-b"]) @ fused["s1-c"])
    assert scores[("s1-enroll2", "s1-c")] == pytest.approx(expect, abs=1e-6)
    assert (tmp_path / "out.skipped").read_text() == "s1-enroll2 s2-b no embedding for s2-b\n"
    # A trial naming an utterance that is not in the data dir: an error naming file:line.
    (tmp_path / "trials").write_text("s1-enroll2 s1-c target\ns1-a s9-zz nontarget\n")
    capfd.readouterr()
    assert score_embeddings.main(args + [str(tmp_path / "e2.scp")]) == 1
    assert f"{tmp_path / 'trials'}:2: test id s9-zz is not an utterance of" in capfd.readouterr().err


def test_fuse_scores_cli(tmp_path):
    trials = [Trial("e", f"s{i}-t", i == 0) for i in range(4)]
    write_trials(tmp_path / "trials", trials)
    (tmp_path / "a").write_text("e s0-t 4\ne s1-t 2\ne s2-t 2\ne s3-t 0\n")
    (tmp_path / "b").write_text("e s0-t 10\ne s1-t 30\ne s2-t 20\n")
    (tmp_path / "b.skipped").write_text("e s3-t no embedding for s3-t\n")
    assert fuse_bin.main([str(tmp_path / "trials"), str(tmp_path / "f"),
                          str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    out = read_scores(tmp_path / "f")
    assert len(out) == 3 and ("e", "s3-t") not in out
    za, zb = 2 / math.sqrt(2), -10 / math.sqrt(200 / 3)
    assert out[("e", "s0-t")] == pytest.approx(za + zb, abs=1e-6)
    assert "e s3-t" in (tmp_path / "f.skipped").read_text()
    # A missing score that is not listed as skipped is an error.
    (tmp_path / "b.skipped").unlink()
    assert fuse_bin.main([str(tmp_path / "trials"), str(tmp_path / "g"),
                          str(tmp_path / "a"), str(tmp_path / "b")]) == 1
    assert not (tmp_path / "g").exists()
