"""The ``deepspeaker`` console command, run as a user runs it (``python -m deepspeaker.cli``).

The tiny recipe of tests/system_builders.py (real wav files, stage 1, a network and
an i-vector system) serves the module; outputs are checked against the stages'
vectors and the Python API, bad input against its one-line message.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import kaldiio
import numpy as np
import pytest
import soundfile as sf
from system_builders import RATE, build_recipe

import deepspeaker
from deepspeaker.data import read_kaldi_map
from deepspeaker.scoring.operating_points import (Calibration, OperatingPoints,
                                                  save_operating_points)
from deepspeaker.scoring.trials import read_scores


@pytest.fixture(scope="module")
def recipe(tmp_path_factory, one_torch_thread):
    return build_recipe(tmp_path_factory.mktemp("recipe"))


def cli(*args, cwd=None):
    env = {**os.environ, "DS_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "deepspeaker.cli", *map(str, args)], cwd=cwd,
                       capture_output=True, text=True, env=env, timeout=120, check=False)
    assert "Traceback" not in r.stderr, r.stderr
    return r


def in_process(capsys, *args):
    """``deepspeaker.cli.main`` in this process (for messages; no start-up to pay for)."""
    from deepspeaker.cli import main

    capsys.readouterr()
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return rc, out, err


def parse_text_vectors(text: str) -> dict[str, np.ndarray]:
    out = {}
    for line in text.splitlines():
        key, rest = line.split(None, 1)
        out[key] = np.array(rest.strip().strip("[]").split(), dtype=np.float64)
    return out


def test_embed_files_and_a_data_dir(recipe, tmp_path):
    stage = kaldiio.load_scp(str(recipe / "exp/gru/train/embedding.scp"))
    wav = recipe / "wav"
    r = cli("embed", recipe / "exp/gru", wav / "spk0-u1.wav", wav / "spk3-u2.wav")
    assert r.returncode == 0, r.stderr
    got = parse_text_vectors(r.stdout)
    assert sorted(got) == ["spk0-u1", "spk3-u2"]
    for k, v in got.items():
        np.testing.assert_allclose(v, stage[k], atol=1e-6)

    out = tmp_path / "ivec"
    r = cli("embed", recipe / "exp/ivector", "--data-dir", recipe / "data/train",
            "--out", f"ark,scp:{out}.ark,{out}.scp")
    assert r.returncode == 0, r.stderr
    ours = kaldiio.load_scp(f"{out}.scp")
    ivec = kaldiio.load_scp(str(recipe / "exp/ivector/train/ivector.scp"))
    assert sorted(ours) == sorted(ivec)
    for k in ivec:
        np.testing.assert_allclose(ours[k], ivec[k], atol=1e-5)


def test_enroll_identify_and_batch_verify(recipe, tmp_path):
    exp, store = recipe / "exp/ivector", tmp_path / "speakers"
    # A wav.scp with one silent utterance: it fails alone, the rest go on.
    sf.write(tmp_path / "silent.wav", np.zeros(RATE, np.float32), RATE)
    wavs = read_kaldi_map(recipe / "data/train/wav.scp")
    scp = tmp_path / "wav.scp"
    scp.write_text("".join(f"{u} {p}\n" for u, p in sorted(wavs.items()))
                   + f"zz-silent {tmp_path / 'silent.wav'}\n")
    spk2utt = tmp_path / "spk2utt"
    spk2utt.write_text("spk0 spk0-u0 spk0-u1\nspk1 spk1-u0 spk1-u1\nspk2 spk2-u0 spk2-u1\n")
    r = cli("enroll", exp, "--store", store, "--wav-scp", scp, "--spk2utt", spk2utt)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:3] == ["spk0 2", "spk1 2", "spk2 2"]

    r = cli("identify", exp, "--store", store, recipe / "wav/spk1-u3.wav", "--format", "json",
            "--threshold=-1e9", "--top", "2")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["speaker"] == "spk1" and not got["reject"] and len(got["ranked"]) == 2

    trials = tmp_path / "trials"   # Kaldi's 2-column form, and a 3-column line
    trials.write_text("spk0 spk0-u3\nspk1 spk0-u3 nontarget\nm2 spk2-u3\nspk3-u0 spk3-u1\n"
                      "spk0 zz-silent\n")
    (tmp_path / "enroll2utt").write_text("m2 spk2-u0 spk2-u2\n")
    scores = tmp_path / "scores"
    r = cli("verify", exp, "--trials", trials, "--scores", scores, "--wav-scp", scp,
            "--store", store, "--enroll2utt", tmp_path / "enroll2utt")
    assert r.returncode == 1
    assert "zz-silent:" in r.stderr and "no voiced frames" in r.stderr
    assert "1 of 7 utterances failed" in r.stderr
    got = read_scores(scores)
    assert list(got) == [("spk0", "spk0-u3"), ("spk1", "spk0-u3"), ("m2", "spk2-u3"),
                         ("spk3-u0", "spk3-u1")]
    assert (tmp_path / "scores.skipped").read_text().startswith("spk0 zz-silent no usable audio")
    system = deepspeaker.load(exp)
    system.open_speakers(store)
    wav = recipe / "wav"
    assert got[("spk0", "spk0-u3")] == pytest.approx(
        system.score(system.speakers["spk0"], str(wav / "spk0-u3.wav")), abs=1e-5)
    assert got[("m2", "spk2-u3")] == pytest.approx(
        system.score([str(wav / "spk2-u0.wav"), str(wav / "spk2-u2.wav")],
                     str(wav / "spk2-u3.wav")), abs=1e-5)


def test_verify_one_trial(recipe, tmp_path, capsys):
    exp = tmp_path / "ivector"
    shutil.copytree(recipe / "exp/ivector", exp)
    shutil.copy(recipe / "data/train/data/conf_train.yaml", exp / "feature.yaml")
    a, b = recipe / "wav/spk0-u0.wav", recipe / "wav/spk0-u2.wav"
    rc, out, err = in_process(capsys, "verify", exp, a, b)
    assert rc == 1 and out == ""
    assert err.strip().endswith(f"{exp}/operating_points/plda.yaml: no operating points "
                                     f"saved for the plda scores of {exp}: they are written at "
                                     f"the end of evaluation (python -m deepspeaker.bin."
                                     f"save_operating_points, run by the recipe's scoring "
                                     f"stages); or give a threshold score (threshold=<score>, "
                                     f"--threshold <score>)")
    s = deepspeaker.load(exp).score(str(a), str(b))
    save_operating_points(exp, OperatingPoints(
        method="plda", trials="eval/trials", thresholds={"far_1pct": s - 0.5, "eer": s + 0.5},
        calibration=Calibration(scale=2.0, offset=1.0)))
    r = cli("verify", exp, a, b)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(a), str(b), f"{s:.6f}", f"{2 * s + 1:.6f}", "accept"]
    r = cli("verify", exp, a, b, "--threshold", "eer", "--format", "json")
    got = json.loads(r.stdout)
    assert (got["accept"], got["threshold"]) == (False, "eer")
    assert got["threshold_value"] == pytest.approx(s + 0.5)


def test_bad_input_is_one_message(recipe, tmp_path, capsys):
    (tmp_path / "notexp").mkdir()
    rc, _, err = in_process(capsys, "embed", tmp_path / "notexp", recipe / "wav/spk0-u0.wav")
    assert rc == 1
    assert err.strip().endswith(f"{tmp_path / 'notexp'} is not a trained system: no "
                                     f"system.yaml (the training stages write it; give an "
                                     f"exp/<tag> dir of a recipe)")
    r = cli("identify", recipe / "exp/gru", "--store", tmp_path / "none", recipe / "wav/x.wav")
    assert r.returncode == 1
    assert r.stderr.strip().endswith(f"{tmp_path / 'none'}: no enrolled speakers (deepspeaker "
                                     f"enroll)")
    trials = tmp_path / "trials"
    trials.write_text("spk0-u0 spk0-u1\nspk0-u0 spk0-u2 maybe\n")
    rc, _, err = in_process(capsys, "verify", recipe / "exp/gru", "--trials", trials, "--scores",
                            tmp_path / "s", "--data-dir", recipe / "data/train")
    assert rc == 1 and not (tmp_path / "s").exists()
    assert err.strip().endswith(f"{trials}:2: expected 'enroll test [target|nontarget]', "
                                     f"got 'spk0-u0 spk0-u2 maybe'")


def test_verify_asnorm(recipe, tmp_path, capsys):
    """--asnorm: the score the Python API's plda_asnorm gives, decided at its own points;
    without a saved cohort it is one message naming the methods there are."""
    from deepspeaker.bin import score_plda

    exp = tmp_path / "ivector"
    shutil.copytree(recipe / "exp/ivector", exp)
    shutil.copy(recipe / "data/train/data/conf_train.yaml", exp / "feature.yaml")
    a, b = recipe / "wav/spk1-u0.wav", recipe / "wav/spk1-u3.wav"
    rc, out, err = in_process(capsys, "verify", exp, a, b, "--asnorm", "--threshold", "0")
    assert rc == 1 and out == ""
    assert err.strip().endswith(f"{exp}: method 'plda_asnorm' is not available for this "
                                f"ivector system (available: plda, cosine)")
    data = recipe / "data/train"
    (tmp_path / "trials").write_text("spk1-u0 spk1-u3\n")
    assert score_plda.main(["--asnorm-cohort", str(exp / "train/ivector.scp"), "--asnorm-data",
                            str(data), "--asnorm-top-n", "4", "--asnorm-save",
                            str(exp / "asnorm/plda.npz"), str(exp), str(data),
                            str(tmp_path / "trials"), str(tmp_path / "scores")]) == 0
    want = read_scores(tmp_path / "scores")[("spk1-u0", "spk1-u3")]
    s = deepspeaker.load(exp, asnorm=True).score(str(a), str(b))
    assert s == pytest.approx(want, abs=1e-4)  # audio -> i-vector changes it by ~1e-6
    save_operating_points(exp, OperatingPoints(method="plda_asnorm", trials="eval/trials",
                                               thresholds={"far_1pct": s + 0.25}))
    r = cli("verify", exp, a, b, "--asnorm", "--format", "json")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert (got["method"], got["decision"], got["llr"]) == ("plda_asnorm", "reject", None)
    assert got["score"] == pytest.approx(s, abs=1e-6)
    assert got["threshold_value"] == pytest.approx(s + 0.25)
