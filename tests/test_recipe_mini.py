"""The mini recipe, stages 0-2, on a small corpus, end to end through run.sh (as CI runs it)."""

import os
import re
import subprocess
from pathlib import Path

import kaldiio
import pytest

ROOT = Path(__file__).resolve().parents[1]
CORPUS_OPTS = ("--num-train-spk 3 --num-dev-spk 2 --num-eval-spk 6 --utts-per-train-spk 3 "
               "--utts-per-dev-spk 3 --utts-per-eval-spk 7 --min-dur 1.0 --max-dur 1.5")


def _run(tmp_path, *extra):
    cmd = ["bash", str(ROOT / "egs/mini/run.sh"), "--nj", "2", "--corpus-opts", CORPUS_OPTS,
           "--data", str(tmp_path / "data"), "--exp", str(tmp_path / "exp"),
           "--corpus-dir", str(tmp_path / "corpus"), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, LC_ALL="C"))


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mini")
    r = _run(tmp, "--stop-stage", "2")
    assert r.returncode == 0, r.stdout + r.stderr
    return tmp, r


def test_stages_0_to_2(recipe):
    tmp, r = recipe
    data = tmp / "data"
    for x, n in (("train", 9), ("dev", 6), ("eval", 42)):
        feats = kaldiio.load_scp(str(data / x / "feats.scp"))
        assert len(feats) == n
        assert all(m.shape[1] == 64 for m in feats.values())
        assert (data / x / ".fbank_vad.done").exists()
        assert not (data / x / "failed_utts").exists()
    trials = (data / "eval" / "trials").read_text().splitlines()
    # 42 anchors, each with 1 positive and all 35 other-speaker utterances (< 99 exist).
    assert len(trials) == 42 * 36
    assert sum(t.endswith(" target") for t in trials) == 42
    for k in (1, 2, 3, 5):
        lines = (data / "eval" / f"trials_enroll{k}").read_text().splitlines()
        assert len(lines) == 6 * 2 * 6  # 7 - 5 anchors per speaker, 1 + 5 models each
    out = (tmp / "exp/mfcc_stats/eval_trials.txt").read_text()
    eer = float(re.search(r"EER: ([\d.]+)%", out).group(1))
    assert 0 <= eer < 50
    assert "ACC:" in out and "42 anchors" in out
    assert (tmp / "exp/make_fbank_vad/eval/make_fbank_vad.1.log").exists()
    assert (tmp / "exp/log/make_corpus.log").exists()


def test_rerun_skips_finished_stages(recipe):
    tmp, _ = recipe
    mtime = (tmp / "data/eval/feats.scp").stat().st_mtime_ns
    r = _run(tmp, "--stop-stage", "1")
    assert r.returncode == 0, r.stderr
    assert "corpus already made" in r.stderr and "already has features" in r.stderr
    assert (tmp / "data/eval/feats.scp").stat().st_mtime_ns == mtime


def test_unknown_option_fails(tmp_path):
    r = _run(tmp_path, "--no-such-option", "1")
    assert r.returncode != 0 and "--no-such-option" in r.stderr
