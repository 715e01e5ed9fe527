"""deepspeaker.load: the vectors of the recipe's stages, its scorers' scores, decisions, stores.

One tiny recipe (tests/system_builders.py: real wav files, the real stage 1, a network
and an i-vector system trained by the real stages) serves the module.
"""

from __future__ import annotations

import shutil

import kaldiio
import numpy as np
import pytest
import soundfile as sf
from builders import make_exp
from system_builders import RATE, build_recipe, voice

import deepspeaker
from deepspeaker.data import read_kaldi_map
from deepspeaker.scoring.experiment import SystemInfo, write_system_info
from deepspeaker.scoring.operating_points import (Calibration, OperatingPoints,
                                                  save_operating_points)
from deepspeaker.utils import DeepSpeakerError


@pytest.fixture(scope="module")
def recipe(tmp_path_factory, one_torch_thread):
    return build_recipe(tmp_path_factory.mktemp("recipe"))


@pytest.fixture(scope="module")
def wavs(recipe):
    return read_kaldi_map(recipe / "data/train/wav.scp")


def copy_system(recipe, tag, dest):
    """An exp dir moved out of its recipe, carrying its stage-1 config as feature.yaml."""
    exp = dest / tag
    shutil.copytree(recipe / "exp" / tag, exp)
    shutil.copy(recipe / "data/train/data/conf_train.yaml", exp / "feature.yaml")
    return exp


@pytest.mark.parametrize("tag,vectors", [("gru", "embedding"), ("ivector", "ivector")])
def test_embed_is_the_stage_vector(recipe, wavs, tag, vectors):
    system = deepspeaker.load(recipe / "exp" / tag)
    stage = kaldiio.load_scp(str(recipe / "exp" / tag / "train" / f"{vectors}.scp"))
    utts = sorted(wavs)
    emb = system.embed([wavs[u] for u in utts])
    assert emb.shape == (len(utts), system.embedder.dim) and emb.dtype == np.float32
    for u, v in zip(utts, emb):
        np.testing.assert_allclose(v, stage[u], atol=1e-5, rtol=0)
    one = system.embed(wavs[utts[0]])
    assert one.shape == (system.embedder.dim,)
    np.testing.assert_array_equal(one, system.embed(wavs[utts[0]]))  # deterministic
    np.testing.assert_allclose(one, emb[0], atol=1e-5, rtol=0)  # one, or in a batch
    # An array with its rate is the same audio as the file.
    x, rate = sf.read(wavs[utts[0]], dtype="float32")
    np.testing.assert_allclose(system.embed((x, rate)), emb[0], atol=1e-6)


def test_default_methods(recipe):
    assert deepspeaker.load(recipe / "exp/ivector").method == "plda"
    assert deepspeaker.load(recipe / "exp/gru").method == "cosine"
    assert deepspeaker.load(recipe / "exp/ivector", method="cosine").method == "cosine"
    with pytest.raises(DeepSpeakerError, match=r"method 'plda' is not available .*cosine"):
        deepspeaker.load(recipe / "exp/gru", method="plda")


@pytest.mark.parametrize("method", ["plda", "cosine"])
def test_score_is_the_scorer_score(recipe, wavs, tmp_path, method):
    """k-utterance models scored as score_plda scores them (--enroll2utt, --method)."""
    from deepspeaker.bin import score_plda
    from deepspeaker.scoring.trials import read_scores

    (tmp_path / "enroll2utt").write_text("m0 spk0-u0 spk0-u1\nm1 spk1-u0 spk1-u1 spk1-u2\n")
    pairs = [("m0", "spk0-u3"), ("m0", "spk2-u3"), ("m1", "spk1-u3"), ("spk3-u0", "spk0-u2")]
    (tmp_path / "trials").write_text("".join(f"{e} {t} target\n" for e, t in pairs))
    exp = recipe / "exp/ivector"
    score_plda.run(exp, recipe / "data/train", tmp_path / "trials", tmp_path / "scores",
                   method, tmp_path / "enroll2utt")
    want = read_scores(tmp_path / "scores")
    models = read_kaldi_map(tmp_path / "enroll2utt")
    system = deepspeaker.load(exp, method=method)
    for e, t in pairs:
        enroll = [wavs[u] for u in models.get(e, e).split()]
        assert system.score(enroll, wavs[t]) == pytest.approx(want[(e, t)], abs=1e-4)


def test_network_with_a_plda_back_end(recipe, wavs, tmp_path):
    """A network's back end (train_plda --vectors) scores as score_plda --vectors does."""
    from deepspeaker.bin import score_plda, train_plda
    from deepspeaker.scoring.trials import read_scores

    exp, data = copy_system(recipe, "gru", tmp_path), recipe / "data/train"
    (tmp_path / "backend.yaml").write_text("lda_dim: 3\nplda: {num_em_iters: 3}\n")
    scp = exp / "train/embedding.scp"
    train_plda.run_vectors(exp, data, scp, tmp_path / "backend.yaml", None)
    (tmp_path / "trials").write_text("spk0-u0 spk0-u1 target\nspk0-u0 spk3-u1 nontarget\n")
    score_plda.run(exp, data, tmp_path / "trials", tmp_path / "scores", "plda", None, vectors=scp)
    system = deepspeaker.load(exp)
    assert system.method == "plda"
    # The stage's own embeddings through the system's back end: a random network's
    # embeddings of 16 utterances leave the LDA ill-conditioned, which would magnify
    # the ~1e-8 differences of embed() (tested above) into the scores.
    stage = kaldiio.load_scp(str(scp))
    for (e, t), want in read_scores(tmp_path / "scores").items():
        got = system.score_vectors(system.model_of(stage[e][None, :]), stage[t][None, :])[0]
        assert got == pytest.approx(want, rel=1e-6)


def test_network_score_is_cosine_of_the_k_model(recipe, wavs):
    from deepspeaker.scoring.embedding import enroll_model

    system = deepspeaker.load(recipe / "exp/gru")
    stage = kaldiio.load_scp(str(recipe / "exp/gru/train/embedding.scp"))
    utts = ["spk1-u0", "spk1-u1"]
    want = float(enroll_model(stage, utts) @ stage["spk2-u0"])
    assert system.score([wavs[u] for u in utts], wavs["spk2-u0"]) == pytest.approx(want, abs=1e-5)


def test_verify_reads_the_saved_operating_points(recipe, wavs, tmp_path):
    exp = copy_system(recipe, "ivector", tmp_path)
    system = deepspeaker.load(exp)
    assert system.feature_source == str(exp / "feature.yaml")
    with pytest.raises(DeepSpeakerError) as e:
        system.verify(wavs["spk0-u0"], wavs["spk0-u1"])
    assert str(e.value).startswith(f"{exp}/operating_points/plda.yaml: no operating points")
    assert "save_operating_points" in str(e.value)

    s = system.score(wavs["spk0-u0"], wavs["spk0-u1"])
    save_operating_points(exp, OperatingPoints(
        method="plda", trials="eval/trials", thresholds={"eer": s - 1.0, "far_1pct": s + 1.0},
        calibration=Calibration(scale=0.5, offset=-2.0, fitted_on="eval half A")))
    system = deepspeaker.load(exp)
    r = system.verify(wavs["spk0-u0"], wavs["spk0-u1"])
    assert (r.threshold, r.accept, r.method) == ("far_1pct", False, "plda")
    assert r.to_dict()["decision"] == "reject"
    assert r.score == pytest.approx(s) and r.threshold_value == pytest.approx(s + 1.0)
    assert r.llr == pytest.approx(0.5 * s - 2.0)
    assert system.verify(wavs["spk0-u0"], wavs["spk0-u1"], threshold="eer").accept
    assert system.verify(wavs["spk0-u0"], wavs["spk0-u1"], threshold=s - 0.01).accept
    with pytest.raises(DeepSpeakerError, match=r"no threshold 'min_dcf' .*known: eer, far_1pct"):
        system.verify(wavs["spk0-u0"], wavs["spk0-u1"], threshold="min_dcf")


def test_enroll_identify_and_the_store(recipe, wavs, tmp_path):
    system = deepspeaker.load(recipe / "exp/ivector")
    system.open_speakers(tmp_path / "speakers")
    for s in range(3):
        system.enroll(f"spk{s}", [wavs[f"spk{s}-u{u}"] for u in range(3)])
    for suffix in (".ark", ".scp", ".num_utts", ".yaml"):
        assert (tmp_path / f"speakers{suffix}").is_file()
    assert read_kaldi_map(tmp_path / "speakers.num_utts") == {f"spk{s}": "3" for s in range(3)}
    # Kaldi's form: a table of vectors kaldiio reads.
    assert sorted(kaldiio.load_scp(str(tmp_path / "speakers.scp"))) == ["spk0", "spk1", "spk2"]

    again = deepspeaker.load(recipe / "exp/ivector")
    assert sorted(again.open_speakers(tmp_path / "speakers.scp")) == ["spk0", "spk1", "spk2"]
    got = again.identify(wavs["spk1-u3"], top=2, threshold=-1e9)
    assert got.speaker == "spk1" and got.ranked[0][0] == "spk1"
    assert len(got.ranked) == 2 and got.ranked[0][1] >= got.ranked[1][1]
    enrolled = again.score(again.speakers["spk1"], wavs["spk1-u3"])
    assert got.ranked[0][1] == pytest.approx(enrolled)
    assert again.identify(wavs["spk1-u3"], threshold=1e9).reject

    other = deepspeaker.load(recipe / "exp/ivector", method="cosine")
    with pytest.raises(DeepSpeakerError) as e:
        other.open_speakers(tmp_path / "speakers")
    assert str(e.value).startswith(f"{tmp_path}/speakers.yaml: enrolled with another system")
    assert "method plda" in str(e.value) and "method cosine" in str(e.value)


def test_a_store_without_its_sidecar(recipe, tmp_path):
    """An ark/scp that deepspeaker did not finish (or never wrote) is not read as speakers."""
    from deepspeaker.data.ark import write_ark_scp

    write_ark_scp(tmp_path / "spk.ark", tmp_path / "spk.scp", {"x": np.ones(6, np.float32)})
    system = deepspeaker.load(recipe / "exp/ivector")
    with pytest.raises(DeepSpeakerError) as e:
        system.open_speakers(tmp_path / "spk.scp")
    assert str(e.value) == (f"{tmp_path}/spk.scp: no spk.yaml beside it: "
                            f"not an enrolled-speaker store of deepspeaker (or one never "
                            f"finished)")


def test_not_a_trained_system(tmp_path, recipe):
    (tmp_path / "exp").mkdir()
    with pytest.raises(DeepSpeakerError, match=r"is not a trained system: no system.yaml"):
        deepspeaker.load(tmp_path / "exp")
    write_system_info(tmp_path / "exp", SystemInfo(kind="reference"))
    with pytest.raises(DeepSpeakerError, match=r"a reference system has no model"):
        deepspeaker.load(tmp_path / "exp")


def test_checkpoint_of_another_architecture(tmp_path):
    exp = make_exp(tmp_path / "exp" / "gru", "gru", width=0.0625, ckpt_width=0.125)
    write_system_info(exp, SystemInfo(kind="deepspeaker", model="gru", strategy="softmax"))
    with pytest.raises(DeepSpeakerError, match=r"best.pt holds gru\(.*width=0.125.*differ in width"):
        deepspeaker.load(exp)


def test_no_feature_config(tmp_path, recipe):
    exp = tmp_path / "recipe2" / "exp" / "gru"
    shutil.copytree(recipe / "exp/gru", exp)
    with pytest.raises(DeepSpeakerError, match=r"no feature config for this system .*feature.yaml"):
        deepspeaker.load(exp)
    system = deepspeaker.load(exp, feature_config=recipe / "data/train/data/conf_train.yaml")
    assert system.sample_rate == RATE


def test_audio_the_front_end_refuses(recipe, tmp_path):
    system = deepspeaker.load(recipe / "exp/gru")
    cases = {"silent.wav": (np.zeros(RATE, np.float32), RATE, r"no voiced frames"),
             "short.wav": (voice(0, 0)[:200], RATE, r"200 samples is shorter than one 25 ms frame"),
             "low.wav": (voice(0, 0, rate=8000), 8000, r"sample rate 8000 Hz is below .*refused"),
             "stereo.wav": (np.stack([voice(0, 0)] * 2, 1), RATE, r"has 2 channels")}
    for name, (x, rate, msg) in cases.items():
        sf.write(tmp_path / name, x, rate)
        with pytest.raises(DeepSpeakerError, match=msg) as e:
            system.embed(tmp_path / name)
        assert str(tmp_path / name) in str(e.value)
    (tmp_path / "junk.wav").write_bytes(b"not audio at all")
    with pytest.raises(DeepSpeakerError, match=r"junk.wav: cannot read audio: not a readable audio file"):
        system.embed(tmp_path / "junk.wav")
    with pytest.raises(DeepSpeakerError, match=r"missing.wav: audio file not found"):
        system.embed(tmp_path / "missing.wav")


def test_higher_rates_are_resampled(recipe):
    from scipy.signal import resample_poly

    system = deepspeaker.load(recipe / "exp/ivector")
    x = voice(1, 2)
    at48 = resample_poly(x.astype(np.float64), 3, 1).astype(np.float32)
    a, b = system.embed((x, RATE)), system.embed((at48, 48000))
    assert float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)) > 0.95


def test_a_fusion_is_the_embedding_fusion(recipe, wavs, tmp_path):
    from deepspeaker.scoring.embedding import fuse_embeddings

    root = tmp_path / "recipe"
    shutil.copytree(recipe / "data/train/data", root / "data/train/data")
    for tag, seed in (("a", 1), ("b", 2)):
        write_system_info(make_exp(root / "exp" / tag, "gru", width=0.0625, seed=seed), SystemInfo(
            kind="deepspeaker", model="gru", strategy="softmax", train_set="data/train"))
    write_system_info(root / "exp/fusion", SystemInfo(kind="fusion", members=["a", "b"]))
    fusion = deepspeaker.load(root / "exp/fusion")
    assert fusion.method == "embedding"
    with pytest.raises(DeepSpeakerError, match=r"one trial does not have; use the embedding"):
        deepspeaker.load(root / "exp/fusion", method="score")
    u = wavs["spk0-u0"]
    parts = [{"u": deepspeaker.load(root / "exp" / t).embed(u)} for t in ("a", "b")]
    np.testing.assert_allclose(fusion.embed(u), fuse_embeddings(parts)["u"], atol=1e-6)


@pytest.mark.parametrize("tag,method", [("ivector", "plda"), ("ivector", "cosine"),
                                        ("gru", "cosine")])
def test_asnorm_method_gives_the_scorers_normalised_scores(recipe, tmp_path, tag, method):
    """``<method>_asnorm`` scores one trial as the scorer's --asnorm-cohort scored the list,
    with the cohort and top-N the scorer saved (--asnorm-save), k-utterance models too."""
    from deepspeaker.bin import score_embeddings, score_plda
    from deepspeaker.scoring.trials import read_scores

    exp, data = copy_system(recipe, tag, tmp_path), recipe / "data/train"
    vectors = "embedding" if tag == "gru" else "ivector"
    scp = exp / "train" / f"{vectors}.scp"
    stage = kaldiio.load_scp(str(scp))
    (tmp_path / "trials").write_text("spk0-u0 spk0-u1\nspk0-u0 spk3-u1\nm1 spk1-u3\nm1 spk2-u0\n")
    (tmp_path / "enroll2utt").write_text("m1 spk1-u0 spk1-u1\n")
    with pytest.raises(DeepSpeakerError, match=rf"{method}_asnorm' is not available"):
        deepspeaker.load(exp, method=f"{method}_asnorm")
    cohort = ["--asnorm-cohort", str(scp), "--asnorm-data", str(data), "--asnorm-top-n", "3",
              "--asnorm-save", str(exp / "asnorm" / f"{method}.npz"),
              "--enroll2utt", str(tmp_path / "enroll2utt")]
    scores = tmp_path / "scores"
    if tag == "gru":
        rc = score_embeddings.main(cohort + [str(data), str(tmp_path / "trials"), str(scores),
                                             str(scp)])
    else:
        rc = score_plda.main(cohort + ["--method", method, str(exp), str(data),
                                       str(tmp_path / "trials"), str(scores)])
    assert rc == 0
    system = deepspeaker.load(exp, method=f"{method}_asnorm")
    assert system.method == f"{method}_asnorm" and system.scorer.top_n == 3
    assert len(system.scorer.cohort) == (16 if method == "plda" else 4)  # utterances / speakers
    models = {"m1": ["spk1-u0", "spk1-u1"]}
    got_any = []
    for (e, t), want in read_scores(scores).items():
        model = system.model_of(np.stack([stage[u] for u in models.get(e, [e])]))
        got = float(system.score_vectors(model, stage[t][None, :])[0])
        assert got == pytest.approx(want, rel=1e-6, abs=1e-6)  # files hold 6 decimals
        raw = deepspeaker.load(exp, method=method)
        got_any.append(abs(got - float(raw.score_vectors(
            raw.model_of(np.stack([stage[u] for u in models.get(e, [e])])),
            stage[t][None, :])[0])))
    assert max(got_any) > 1e-3  # normalised scores are not the raw ones
    # A store of the raw method's speakers is not one of the normalised method's.
    assert deepspeaker.load(exp, method=method).system_id != system.system_id


def test_describe_system_copies_the_feature_config_so_a_moved_system_loads(
        recipe, tmp_path, monkeypatch):
    from deepspeaker.bin import describe_system

    root = tmp_path / "recipe"
    shutil.copytree(recipe / "data", root / "data")
    shutil.copytree(recipe / "exp/ivector", root / "exp/ivector")
    monkeypatch.chdir(root)
    assert describe_system.main(["exp/ivector", "--kind", "ivector", "--train-set",
                                 "data/train"]) == 0
    conf = root / "data/train/data/conf_train.yaml"
    assert (root / "exp/ivector/feature.yaml").read_text() == conf.read_text()
    moved = shutil.move(root / "exp/ivector", tmp_path / "elsewhere" / "ivector")
    system = deepspeaker.load(moved)
    assert system.feature_source == str(moved / "feature.yaml")
    # A stage-12 copy of another recipe's model (no train_set here) takes its source's.
    (tmp_path / "elsewhere" / "ivector" / "feature.yaml").write_text(conf.read_text())
    dst = root / "exp/copy"
    dst.mkdir()
    assert describe_system.main([str(dst), "--kind", "ivector", "--source",
                                 str(tmp_path / "elsewhere" / "ivector")]) == 0
    assert (dst / "feature.yaml").read_text() == conf.read_text()
