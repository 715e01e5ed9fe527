"""The rerun rule of stages 1-5, through the commands a user runs (deepspeaker.marker).

Same arguments twice: the second run changes no file and says it is up to date.
A changed config, seed or input: derived data (features, trial lists, i-vectors)
is redone; a trained model (UBM, T-matrix, LDA/PLDA) is kept and the stage exits 1
with the command that forces the redo, without a traceback.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import kaldiio
import numpy as np
import pytest

from deepspeaker.bin import (compute_fbank_vad, extract_ivectors, make_trials, score_plda,
                             train_ivector_extractor, train_plda, train_ubm)
from deepspeaker.data.ark import read_vectors
from deepspeaker.ivector.extractor import IvectorExtractor
from deepspeaker.ivector.lda import LdaTransform
from deepspeaker.ivector.plda import TwoCovPLDA

ROOT = Path(__file__).resolve().parents[1]
FEAT_CONF = ROOT / "conf/paper/fbank_vad.yaml"
IVEC_CONF = ROOT / "tests/conf_ivector_tiny.yaml"
KALDI_FILES = ("wav.scp", "utt2spk", "spk2utt", "utt2dur")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """8 training speakers x 3 utterances, 4 eval speakers x 6; features of both."""
    tmp = tmp_path_factory.mktemp("rerun")
    r = subprocess.run([sys.executable, str(ROOT / "egs/mini/local/make_corpus.py"),
                        "--out-dir", str(tmp / "wav"), "--data-dir", str(tmp / "data"),
                        "--num-train-spk", "8", "--num-dev-spk", "2", "--num-eval-spk", "4",
                        "--utts-per-train-spk", "3", "--utts-per-dev-spk", "2",
                        "--utts-per-eval-spk", "6", "--min-dur", "1.0", "--max-dur", "1.5",
                        "--nj", "1"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    for x in ("train", "eval"):
        shutil.copytree(tmp / "data" / x, tmp / "raw" / x)  # without features
        assert compute_fbank_vad.main(["--config", str(FEAT_CONF), "--nj", "2",
                                       str(tmp / "data" / x)]) == 0
    return tmp


def _run(capsys, module, *args) -> tuple[int, str]:
    capsys.readouterr()
    rc = module.main([str(a) for a in args])
    return rc, capsys.readouterr().err


def _cli(module: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"deepspeaker.bin.{module}",
                           *map(str, args)], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ))


def _snapshot(*dirs: Path) -> dict[str, tuple[int, str]]:
    """mtime and SHA-1 of every file under ``dirs``."""
    return {str(p): (p.stat().st_mtime_ns, hashlib.sha1(p.read_bytes()).hexdigest())
            for d in dirs for p in sorted(d.rglob("*")) if p.is_file()}


def _drop_utt(scp: Path, utt: str) -> None:
    lines = scp.read_text().splitlines(keepends=True)
    kept = [line for line in lines if not line.startswith(utt + " ")]
    assert len(kept) == len(lines) - 1
    scp.write_text("".join(kept))


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if " ERROR " in line]


# ------------------------------------------------------------------------- stage 1

def test_stage1_skips_when_current_and_redoes_on_a_new_config_or_input(corpus, tmp_path, capsys):
    d = tmp_path / "eval"
    shutil.copytree(corpus / "raw/eval", d)
    logs = tmp_path / "log"
    assert _run(capsys, compute_fbank_vad, "--config", FEAT_CONF, "--nj", "2", d, logs)[0] == 0
    marker = d / compute_fbank_vad.MARKER
    assert marker.read_text().startswith("{")  # a signature, not an empty file
    first = _snapshot(d, logs)
    feats = dict(kaldiio.load_scp(str(d / "feats.scp")))
    vads = dict(kaldiio.load_scp(str(d / "vad.scp")))

    # Same config and inputs, another --nj: no job starts, no file changes.
    rc, err = _run(capsys, compute_fbank_vad, "--config", FEAT_CONF, "--nj", "1", d, logs)
    assert rc == 0 and "already has features" in err
    assert _snapshot(d, logs) == first

    # Another VAD threshold: the set is recomputed; fbank the same, VAD not.
    conf = tmp_path / "fbank_vad.yaml"
    conf.write_text(FEAT_CONF.read_text().replace("vad_energy_threshold: 5.5",
                                                  "vad_energy_threshold: 8.0"))
    rc, err = _run(capsys, compute_fbank_vad, "--config", conf, "--nj", "2", d, logs)
    assert rc == 0 and "config.vad.vad_energy_threshold" in err
    new_vads = dict(kaldiio.load_scp(str(d / "vad.scp")))
    assert sum(v.sum() for v in new_vads.values()) < sum(v.sum() for v in vads.values())
    for utt, x in kaldiio.load_scp(str(d / "feats.scp")).items():
        np.testing.assert_array_equal(x, feats[utt])
    ark = next((d / "data").glob("vad_*.1.ark"))
    assert ark.stat().st_mtime_ns != first[str(ark)][0]
    assert _run(capsys, compute_fbank_vad, "--config", conf, d, logs)[1].count("nothing to do") == 1

    # Another input: two utterances swap their audio in wav.scp.
    lines = (d / "wav.scp").read_text().splitlines()
    (a, pa), (b, pb) = (lines[0].split(" ", 1), lines[1].split(" ", 1))
    (d / "wav.scp").write_text("\n".join([f"{a} {pb}", f"{b} {pa}"] + lines[2:]) + "\n")
    rc, err = _run(capsys, compute_fbank_vad, "--config", conf, d, logs)
    assert rc == 0 and "wav.scp" in err and "redoing" in err
    swapped = dict(kaldiio.load_scp(str(d / "feats.scp")))
    np.testing.assert_array_equal(swapped[a], feats[b])
    np.testing.assert_array_equal(swapped[b], feats[a])


# ------------------------------------------------------------------------- stage 2

def test_stage2_same_seed_keeps_the_lists_another_rewrites_them(corpus, tmp_path, capsys):
    d = tmp_path / "eval"
    shutil.copytree(corpus / "data/eval", d)
    assert _run(capsys, make_trials, "--seed", "0", d)[0] == 0
    lists = sorted(p.name for p in d.glob("trials*"))
    assert lists == ["trials", "trials_enroll1", "trials_enroll2", "trials_enroll3",
                     "trials_enroll5"]
    first = _snapshot(d)
    rc, err = _run(capsys, make_trials, "--seed", "0", "--enroll-counts", "5,3,2,1", d)
    assert rc == 0 and "up to date" in err
    assert _snapshot(d) == first

    rc, err = _run(capsys, make_trials, "--seed", "1", d)
    assert rc == 0 and "options.seed" in err
    assert hashlib.sha1((d / "trials").read_bytes()).hexdigest() != first[str(d / "trials")][1]

    # Fewer enrollment counts: the lists of the others go (later stages score every list).
    rc, err = _run(capsys, make_trials, "--seed", "1", "--enroll-counts", "1,2", d)
    assert rc == 0 and "options.enroll_counts" in err
    assert sorted(p.name for p in d.glob("trials*")) == ["trials", "trials_enroll1",
                                                        "trials_enroll2"]

    # An utterance losing its features: the lists are made again without it.
    _drop_utt(d / "feats.scp", "ev0000-u000")
    rc, err = _run(capsys, make_trials, "--seed", "1", "--enroll-counts", "1,2", d)
    assert rc == 0 and "options.usable_utt2spk" in err
    assert "ev0000-u000" not in (d / "trials").read_text()


# ---------------------------------------------------------------------- stages 3-5

@pytest.fixture
def ivec(corpus, tmp_path, capsys):
    """Data dirs (copies) and a trained i-vector experiment over them."""
    data = tmp_path / "data"
    for x in ("train", "eval"):
        shutil.copytree(corpus / "data" / x, data / x)
    assert make_trials.main(["--enroll-counts", "", str(data / "eval")]) == 0
    exp = tmp_path / "exp" / "ivector"
    steps = [(train_ubm, "--config", IVEC_CONF, data / "train", exp),
             (train_ivector_extractor, data / "train", exp),
             (extract_ivectors, exp, data / "train"),
             (extract_ivectors, exp, data / "eval"),
             (train_plda, exp, data / "train")]
    for module, *args in steps:
        rc, err = _run(capsys, module, *args)
        assert rc == 0, err
    return data, exp, steps


def test_ivector_stages_rerun_with_nothing_changed_do_nothing(ivec, capsys):
    data, exp, steps = ivec
    before = _snapshot(exp, data)
    for module, *args in steps:
        rc, err = _run(capsys, module, *args)
        assert rc == 0 and "up to date" in err and "nothing to do" in err, err
    assert _snapshot(exp, data) == before


def test_changed_config_refuses_with_the_command_that_forces_it(ivec, tmp_path):
    data, exp, _ = ivec
    ubm = (exp / "models/ubm.npz").read_bytes()
    conf = tmp_path / "other.yaml"
    conf.write_text(IVEC_CONF.read_text().replace("num_components: 8", "num_components: 4"))
    r = _cli("train_ubm", "--config", conf, data / "train", exp)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    (line,) = _error_lines(r.stderr)
    assert "config.ubm.num_components" in line and f"rm -r {exp} and rerun" in line
    assert (exp / "models/ubm.npz").read_bytes() == ubm
    assert "num_components: 8" in (exp / "config.yaml").read_text()


def test_changed_training_features_refuse_the_ubm_and_the_extractor(ivec, capsys):
    data, exp, _ = ivec
    _drop_utt(data / "train/feats.scp", "tr0000-u000")
    force = f"rm -r {exp} and rerun"
    rc, err = _run(capsys, train_ubm, "--config", IVEC_CONF, data / "train", exp)
    assert rc == 1 and "feats.scp" in err and force in err
    rc, err = _run(capsys, train_ivector_extractor, data / "train", exp)
    assert rc == 1 and "feats.scp" in err and force in err


def test_extraction_redoes_and_then_plda_refuses(ivec, capsys):
    """New training features: i-vectors (derived) are redone; the PLDA (trained) refuses."""
    data, exp, _ = ivec
    old = read_vectors(exp / "train/ivector.scp")
    _drop_utt(data / "train/feats.scp", "tr0000-u000")
    rc, err = _run(capsys, extract_ivectors, exp, data / "train")
    assert rc == 0 and "redoing" in err
    new = read_vectors(exp / "train/ivector.scp")
    assert sorted(new) == sorted(set(old) - {"tr0000-u000"})
    for utt, v in new.items():  # float32 batches of another composition: rounding only
        np.testing.assert_allclose(v, old[utt], rtol=1e-4, atol=1e-5)
    plda = (exp / "models/plda.npz").read_bytes()
    rc, err = _run(capsys, train_plda, exp, data / "train")
    assert rc == 1 and "exp_files.train/ivector.scp" in err and f"rm -r {exp} and rerun" in err
    assert (exp / "models/plda.npz").read_bytes() == plda


def test_extraction_redoes_for_another_extractor(ivec, capsys):
    data, exp, _ = ivec
    ark = exp / "eval/ivector.ark"
    mtime = ark.stat().st_mtime_ns
    ext = IvectorExtractor.load(exp / "models/extractor.npz")
    ext.save(exp / "models/extractor.npz", meta={"note": "retrained elsewhere"})
    rc, err = _run(capsys, extract_ivectors, exp, data / "eval")
    assert rc == 0 and "exp_files.models/extractor.npz" in err
    assert ark.stat().st_mtime_ns != mtime
    assert _run(capsys, extract_ivectors, exp, data / "eval")[1].count("up to date") == 1


def test_a_model_without_its_marker_is_refused_and_a_removed_one_retrained(ivec, capsys):
    data, exp, _ = ivec
    old = np.load(exp / "models/ubm.npz")["means"]
    (exp / "models/.ubm.done").unlink()
    rc, err = _run(capsys, train_ubm, "--config", IVEC_CONF, data / "train", exp)
    assert rc == 1 and "does not record what made it" in err and f"rm -r {exp}" in err
    (exp / "models/ubm.npz").unlink()
    rc, err = _run(capsys, train_ubm, "--config", IVEC_CONF, data / "train", exp)
    assert rc == 0 and (exp / "models/.ubm.done").exists()
    np.testing.assert_array_equal(np.load(exp / "models/ubm.npz")["means"], old)  # seeded


def test_a_bad_config_value_is_one_message(corpus, tmp_path, capsys):
    conf = tmp_path / "bad.yaml"
    conf.write_text("ubm: {num_components: 0}\n")
    rc, err = _run(capsys, train_ubm, "--config", conf, corpus / "data/train", tmp_path / "exp")
    assert rc == 1
    (line,) = _error_lines(err)
    assert f"{conf}: ubm: num_components must be an integer >= 1, got 0" in line
    assert not (tmp_path / "exp/config.yaml").exists()


# --------------------------------------------------------- errors at the CLI boundary

def test_plda_of_another_lda_size_is_one_line_naming_file_and_sizes(ivec):
    data, exp, _ = ivec
    plda = exp / "models/plda.npz"
    TwoCovPLDA.from_covariances(np.zeros(3), np.eye(3), np.eye(3)).save(plda)
    r = _cli("score_plda", exp, data / "eval", data / "eval/trials", exp / "scores/plda")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    (line,) = _error_lines(r.stderr)
    assert f"{plda}: PLDA model is for 3-dim vectors but the vectors are 5-dim" in line


def test_lda_of_another_input_size_is_one_message(ivec, capsys):
    data, exp, _ = ivec
    lda = exp / "models/lda.npz"
    LdaTransform(mean=np.zeros(7), matrix=np.eye(5, 7)).save(lda)
    rc, err = _run(capsys, score_plda, exp, data / "eval", data / "eval/trials",
                   exp / "scores/plda")
    assert rc == 1
    (line,) = _error_lines(err)
    assert f"{lda}: LDA transform expects 7-dim input but the data are 10-dim" in line


def test_lda_dim_beyond_the_speakers_is_one_message(ivec):
    data, exp, _ = ivec
    for name in ("lda.npz", "plda.npz", ".plda.done"):
        (exp / "models" / name).unlink()
    conf = exp / "config.yaml"
    conf.write_text(conf.read_text().replace("lda_dim: 5", "lda_dim: 50"))
    r = _cli("train_plda", exp, data / "train")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    (line,) = _error_lines(r.stderr)
    assert "LDA dim 50 is not possible with 10-dim input and 8 speakers" in line
