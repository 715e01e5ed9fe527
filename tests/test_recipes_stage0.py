"""Stage 0 of egs/{librispeech,voxceleb,cnceleb,speechocean762}/run.sh on tiny fake corpus trees.

The trees are the data prep tests' ones (corpus_trees.py).  Each recipe runs as a
user runs it (bash, its own options, LC_ALL=C) with --stage 0 --stop-stage 0: it
writes the data dirs and trial lists its shared stages expect, a second run with the
same options skips the prep, other options redo it, and a wrong option or a missing
corpus option fails before anything is written.  The paper-size configs these recipes
share (conf/paper) parse and hold the paper's values.  The shell side of every recipe
(help, options, shellcheck) is tested in test_recipe_shell.py.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from deepspeaker.data import DataDir, validate_data_dir
from deepspeaker.data.kaldi_dir import sorted_ids
from deepspeaker.nnet.models import build_model
from deepspeaker.nnet.trainer import train_config_from_dict
from deepspeaker.utils import load_yaml
import corpus_trees as trees

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ("librispeech", "voxceleb", "cnceleb", "speechocean762")
SKIPPED = "stage 0: skipped"


def run_recipe(recipe: str, tmp: Path, *args, path_first: Path | None = None
               ) -> subprocess.CompletedProcess:
    """``bash egs/<recipe>/run.sh --stage 0 --stop-stage 0`` with data/ and exp/ in tmp."""
    cmd = ["bash", str(ROOT / "egs" / recipe / "run.sh"), "--stage", "0", "--stop-stage", "0",
           "--data", str(tmp / "data"), "--exp", str(tmp / "exp"), *map(str, args)]
    env = dict(os.environ, LC_ALL="C")
    if path_first is not None:
        env["PATH"] = f"{path_first}:{env['PATH']}"
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)


def ok(r: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert r.returncode == 0, r.stderr
    return r


def sets_of(data: Path) -> list[str]:
    return sorted(p.name for p in data.iterdir() if not p.name.startswith("."))


def valid(d: Path) -> DataDir:
    problems = validate_data_dir(d)
    assert problems == [], [str(p) for p in problems]
    return DataDir.load(d)


def check_rerun(recipe: str, tmp: Path, args: list) -> None:
    """Same options again: stage 0 is skipped and data/ is left as it was."""
    before = trees.snapshot(tmp / "data")
    r = ok(run_recipe(recipe, tmp, *args))
    assert SKIPPED in r.stderr, r.stderr
    assert "prepare_data.py" not in r.stderr  # the prep did not run
    assert trees.snapshot(tmp / "data") == before


def test_librispeech(tmp_path):
    corpus = trees.make_librispeech(tmp_path / "corpus")
    args = ["--corpus-dir", corpus.parent, *trees.LS_ARGS]
    r = ok(run_recipe("librispeech", tmp_path, *args))
    assert SKIPPED not in r.stderr
    data = tmp_path / "data"
    assert sets_of(data) == ["dev", "eval", "train"]
    for name, subset in trees.LS_SETS.items():
        d = valid(data / name)
        assert d.utts == sorted_ids(trees.ls_expected(corpus, subset))
        assert (data / name / "spk2gender").is_file()
    check_rerun("librispeech", tmp_path, args)
    check_rerun("librispeech", tmp_path, [*args, "--nj", "3"])  # --nj is in no signature
    # Other options, another signature: the prep runs again (no dev set: the old one goes).
    r = ok(run_recipe("librispeech", tmp_path, *args, "--dev-subsets", ""))
    assert SKIPPED not in r.stderr
    assert sets_of(data) == ["eval", "train"]
    check_rerun("librispeech", tmp_path, [*args, "--dev-subsets", ""])


def test_voxceleb(tmp_path):
    vox1 = trees.make_vox1(tmp_path)
    args = ["--vox1-dir", vox1]
    ok(run_recipe("voxceleb", tmp_path, *args))
    data = tmp_path / "data"
    assert sets_of(data) == ["train", "vox1_all", "vox1_test"]
    assert valid(data / "vox1_test").utts == trees.utt_ids(trees.VOX1_TEST)
    assert valid(data / "train").utts == trees.utt_ids(trees.VOX1_DEV)
    assert (data / "vox1_test" / "trials_vox1_o").read_text().splitlines() == \
        trees.VERI_TEST2_KALDI
    assert (data / "vox1_all" / "trials_vox1_e").read_text().splitlines() == trees.LIST_ALL2_KALDI
    assert (data / "vox1_all" / "trials_vox1_h").read_text().splitlines() == \
        trees.LIST_HARD2_KALDI
    check_rerun("voxceleb", tmp_path, args)


def test_voxceleb_with_vox2_and_trial_lists_dir(tmp_path):
    """--vox2-dir (a path with a space, m4a through ffmpeg) and --trial-lists."""
    vox1 = trees.make_vox1(tmp_path, lists={})
    vox2 = trees.make_vox2(tmp_path)
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "veri_test2.txt").write_text(trees.VERI_TEST2)
    args = ["--vox1-dir", vox1, "--vox2-dir", vox2, "--trial-lists", lists, "--train-vox1",
            "none"]
    ok(run_recipe("voxceleb", tmp_path, *args, path_first=trees.fake_ffmpeg(tmp_path)))
    data = tmp_path / "data"
    assert sets_of(data) == ["train", "vox1_test"]
    assert valid(data / "train").utts == trees.utt_ids(trees.VOX2_DEV)
    assert (data / "vox1_test" / "trials_vox1_o").read_text().splitlines() == \
        trees.VERI_TEST2_KALDI


def test_cnceleb(tmp_path):
    cnc1 = trees.make_cnc1(tmp_path)
    args = ["--cnceleb1-dir", cnc1]
    ok(run_recipe("cnceleb", tmp_path, *args))
    data = tmp_path / "data"
    assert sets_of(data) == ["eval", "train"]
    assert valid(data / "train").utts == trees.train_ids(trees.TRAIN)
    assert valid(data / "eval").utts == trees.EVAL_IDS
    # The official list under its own name; "trials" is left to stage 2 (paper's 1 + 99).
    assert (data / "eval" / "trials_cnceleb").read_text().splitlines() == trees.TRIALS_KALDI
    assert not (data / "eval" / "trials").exists()
    check_rerun("cnceleb", tmp_path, args)


def test_speechocean762(tmp_path):
    corpus = trees.make_speechocean762(tmp_path / "speechocean762")
    # Its own sets only (--cross-corpora: tests/test_recipe_real_speech.py).
    args = ["--corpus-dir", corpus, "--eval-fraction", "0.5", "--cross-corpora", "",
            "--dev-fraction", "0.25"]
    ok(run_recipe("speechocean762", tmp_path, *args))
    data = tmp_path / "data"
    assert sets_of(data) == ["dev", "eval", "train"]
    utts = [u for name in ("train", "dev", "eval") for u in valid(data / name).utts]
    assert sorted_ids(utts) == trees.so_kaldi_ids(trees.SO_TRAIN)
    assert len(valid(data / "eval").spk2utt) == 10
    check_rerun("speechocean762", tmp_path, args)
    # --dev-fraction 0: another signature, no dev set, and the recipe asks for none.
    args[-1] = "0"
    r = ok(run_recipe("speechocean762", tmp_path, *args))
    assert SKIPPED not in r.stderr
    assert sets_of(data) == ["eval", "train"]
    check_rerun("speechocean762", tmp_path, args)


@pytest.mark.parametrize("recipe", RECIPES)
def test_unknown_option_fails(tmp_path, recipe):
    r = run_recipe(recipe, tmp_path, "--no-such-option", "1")
    assert r.returncode != 0
    assert "--no-such-option" in r.stderr
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("recipe,option", [("librispeech", "--corpus-dir"),
                                           ("voxceleb", "--vox1-dir"),
                                           ("cnceleb", "--cnceleb1-dir")])
def test_missing_corpus_option_fails(tmp_path, recipe, option):
    r = run_recipe(recipe, tmp_path)
    assert r.returncode == 1
    assert f"stage 0 needs {option}" in r.stderr
    assert not (tmp_path / "data").exists()


def test_failed_prep_writes_no_marker(tmp_path):
    """A prep that fails leaves no data dir and no .prep.done: the next run tries again."""
    r = run_recipe("cnceleb", tmp_path, "--cnceleb1-dir", tmp_path / "nowhere")
    assert r.returncode == 1
    assert str(tmp_path / "nowhere") in r.stderr
    assert not (tmp_path / "data" / ".prep.done").exists()


def test_paper_confs():
    """Every config the shared stages read is in conf/paper, parses, and has the paper's values."""
    conf = ROOT / "conf" / "paper"
    assert (conf / "fbank_vad.yaml").is_file() and (conf / "ivector.yaml").is_file()
    ivector = load_yaml(conf / "ivector.yaml")
    assert (ivector["ubm"]["num_components"], ivector["extractor"]["rank"],
            ivector["backend"]["lda_dim"]) == (1024, 400, 200)  # paper §4.2
    for model in ("rescnn", "gru"):
        for strategy in ("softmax", "triplet", "triplet_only", "transfer"):
            path = conf / f"{model}_{strategy}.yaml"
            cfg = train_config_from_dict(load_yaml(path), where=str(path))
            assert cfg.model.name == model and cfg.model.options["width"] == 1.0
            assert cfg.stage == ("softmax" if strategy == "softmax" else "triplet")
            assert (cfg.optimizer.lr_start, cfg.optimizer.lr_end, cfg.optimizer.momentum) == \
                (0.05, 0.005, 0.99)  # paper §4.3
            assert (cfg.epochs, cfg.batch_size) == ((10, 64) if cfg.stage == "softmax"
                                                    else (15, 128))
        build_model(model, **cfg.model.options)
        # The paper has one set of triplet values, for both T5 rows and for fine-tuning.
        triplet = load_yaml(conf / f"{model}_triplet.yaml")
        for other in ("triplet_only", "transfer"):
            assert load_yaml(conf / f"{model}_{other}.yaml") == triplet, other
    assert not list((ROOT / "egs").glob("*/conf/*_paper*.yaml"))  # one copy only
