"""egs/real_speech: several recipes' training sets as one, every system on each eval set.

Tiny fake trees of both corpora (corpus_trees.py: speechocean762's own layout and
librispeech-mini's) go through ``egs/real_speech/run.sh`` as a user runs it, every stage
but 12, with the tests' tiny i-vector and network configs and no augmentation.  Checked:
the union keeps the speakers apart by a corpus prefix; each eval set is the one that
corpus' own recipe makes, with that recipe's trial lists; every system (the MFCC-stats
reference, the i-vector, both networks with cosine and PLDA, both fusions) is scored on
every list of both eval sets, into ``scores/`` and ``scores_<set>/``; and RESULTS.md's
table "Every eval set" holds the metrics recomputed here from those score files.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import corpus_trees as trees
import pytest

from deepspeaker.data.kaldi_dir import read_kaldi_map
from deepspeaker.scoring.experiment import trial_lists
from deepspeaker.scoring.report import evaluate
from deepspeaker.scoring.trials import read_trials

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "egs" / "real_speech" / "run.sh"
OTHER = "eval_librispeech_mini"
MAIN = "eval_speechocean762"
# 12 librispeech-mini speakers of 3 segments (eval 0.4 of each sex: 4 speakers, enough
# for the k = 1, 2 lists) and one of 1 segment, kept for training.
LS_SPEAKERS = {f"{100 + i}": ("F" if i % 2 else "M", f"{500 + i}", [0, 1, 2]) for i in range(12)}
LS_SPEAKERS["99"] = ("M", "77", [0])
SO_UTTS = 7   # per speaker: the k = 1, 2, 3, 5 enrollment lists need 6


def run(tmp: Path, *extra: str, recipe: Path = RECIPE) -> subprocess.CompletedProcess:
    cmd = ["bash", str(recipe), "--nj", "2", "--data", str(tmp / "data"),
           "--exp", str(tmp / "exp"), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900,
                          env=dict(os.environ, LC_ALL="C"))


def ok(r: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("corpora")
    saved = trees.SO_UTTS
    trees.SO_UTTS = SO_UTTS
    try:
        so = trees.make_speechocean762(tmp / "speechocean762")
    finally:
        trees.SO_UTTS = saved
    # 1.5-2.5 s a file (the speechocean762 tree's are 0.25-0.4 s: too short to train on).
    for i, path in enumerate(sorted(so.rglob("*.flac"))):
        trees.write_flac(path, 24000 + 160 * (i % 50), i)
    ls = trees.make_mini(tmp / "librispeech-mini", LS_SPEAKERS, samples=24000)
    return so, ls


@pytest.fixture(scope="module")
def recipe(corpora, tmp_path_factory):
    so, ls = corpora
    tmp = tmp_path_factory.mktemp("real_speech")
    ok(run(tmp, "--corpus-dirs", f"speechocean762={so} librispeech_mini={ls}",
           "--ivector-conf", str(ROOT / "tests/conf_ivector_tiny.yaml"),
           "--nnet-conf-dir", str(ROOT / "tests/conf_nnet_tiny"),
           "--nnet-strategies", "softmax", "--fusion-strategy", "softmax",
           "--augment-conf", "", "--transfer-from", "", "--stop-stage", "10"))
    return tmp


def test_the_union_keeps_each_corpus_speakers_apart_by_its_prefix(recipe):
    data = recipe / "data"
    utt2spk = read_kaldi_map(data / "train" / "utt2spk")
    own = {c: read_kaldi_map(data / c / "train" / "utt2spk")
           for c in ("speechocean762", "librispeech_mini")}
    assert utt2spk == {f"{c}-{u}": f"{c}-{s}" for c, m in own.items() for u, s in m.items()}
    assert all(u.startswith(s) for u, s in utt2spk.items())
    gender = read_kaldi_map(data / "train" / "spk2gender")
    assert set(gender) == set(utt2spk.values())
    # The dev set is speechocean762's (librispeech_mini has none), prefixed alike.
    dev = read_kaldi_map(data / "dev" / "utt2spk")
    assert dev == {f"speechocean762-{u}": f"speechocean762-{s}" for u, s in
                   read_kaldi_map(data / "speechocean762" / "dev" / "utt2spk").items()}


def test_each_eval_set_and_its_lists_are_those_of_the_corpus_own_recipe(recipe, corpora, tmp_path):
    so, ls = corpora
    for corpus, tree, lists in (("speechocean762", so, [1, 2, 3, 5]),
                                ("librispeech_mini", ls, [1, 2])):
        own = tmp_path / corpus
        ok(run(own, "--corpus-dir", str(tree), "--stop-stage", "0",
               recipe=ROOT / "egs" / corpus / "run.sh"))
        ours = recipe / "data" / f"eval_{corpus}"
        for name in ("utt2spk", "wav.scp", "spk2gender"):
            assert (ours / name).read_bytes() == (own / "data" / "eval" / name).read_bytes()
        assert trial_lists(ours) == ["trials"] + [f"trials_enroll{k}" for k in lists]
        # That recipe's stage 2 (make_trials with its --trials-opts) gives the same lists.
        ok(subprocess.run(["python", "-m", "deepspeaker.bin.make_trials", "--seed", "0",
                           "--enroll-counts", ",".join(map(str, lists)), str(own / "data" / "eval")],
                          capture_output=True, text=True))
        for name in trial_lists(ours) + ["enroll2utt"]:
            assert (ours / name).read_bytes() == (own / "data" / "eval" / name).read_bytes()


SYSTEMS = {"mfcc_stats": ["cosine"], "ivector": ["plda", "cosine"],
           "gru_softmax": ["cosine", "plda"], "rescnn_softmax": ["cosine", "plda"],
           "fusion": ["embedding", "score"]}


@pytest.mark.parametrize("eval_set,scores", [(MAIN, "scores"), (OTHER, f"scores_{OTHER}")])
def test_every_system_is_scored_on_every_list_of_both_eval_sets(recipe, eval_set, scores):
    eval_dir = recipe / "data" / eval_set
    for system, methods in SYSTEMS.items():
        for method in methods:
            for name in trial_lists(eval_dir):
                path = recipe / "exp" / system / scores / f"{method}_{name}"
                keys = [line.split()[:2] for line in path.read_text().splitlines()]
                assert keys == [[t.enroll, t.test] for t in read_trials(eval_dir / name)], path


def _eval_set_table(results: str) -> dict[str, list[str]]:
    block = results.split("## Every eval set")[1].split("\n## ")[0]
    rows = [line.strip("|").split("|") for line in block.splitlines() if line.startswith("| ")]
    head = [c.strip() for c in rows[0]]
    assert head[1::3] == [f"{MAIN} EER [%]", f"{OTHER} EER [%]"]
    return {r[0].strip(): [c.strip() for c in r[1:]] for r in rows[1:]}


def test_results_have_one_column_block_per_eval_set_from_its_scores(recipe):
    table = _eval_set_table((recipe / "exp" / "RESULTS.md").read_text())
    rows = {"MFCC-stats cosine (reference, no training)": ("mfcc_stats", "cosine"),
            "i-vector + PLDA (baseline)": ("ivector", "plda"),
            "GRU, softmax": ("gru_softmax", "cosine"),
            "ResCNN, softmax, PLDA": ("rescnn_softmax", "plda"),
            "score fusion": ("fusion", "score")}
    assert set(rows) < set(table) and len(table) == 9
    for label, (system, method) in rows.items():
        for block, (eval_set, scores) in enumerate(((MAIN, "scores"), (OTHER, f"scores_{OTHER}"))):
            data = recipe / "data" / eval_set
            metrics = evaluate(recipe / "exp" / system / scores / f"{method}_trials",
                               data / "trials", read_trials(data / "trials"))[0]
            eer, dcf, acc = table[label][3 * block: 3 * block + 3]
            assert float(eer) == pytest.approx(100 * metrics.eer, abs=0.006), (label, eval_set)
            assert float(dcf) == pytest.approx(metrics.min_dcf, abs=6e-5)
            assert float(acc) == pytest.approx(100 * metrics.acc, abs=0.006)
    # The main eval set keeps the report's tables and the operating points.
    results = (recipe / "exp" / "RESULTS.md").read_text()
    assert f"{MAIN}/trials" in results.split("## Every eval set")[0]
    for system in ("ivector", "gru_softmax", "fusion"):
        for points in (recipe / "exp" / system / "operating_points").glob("*.yaml"):
            trials = re.search(r"^trials: (.*)$", points.read_text(), re.M).group(1)
            assert trials == str(recipe / "data" / MAIN / "trials"), points


@pytest.mark.parametrize("args,message", [
    (["--corpora", "nope"], "--corpora: 'nope' is not a recipe under egs/"),
    (["--corpora", ""], "--corpora is empty"),
    (["--corpus-dirs", "voxceleb=/x"], "--corpus-dirs: 'voxceleb=/x' is not CORPUS=DIR"),
])
def test_a_bad_corpus_option_is_one_line(tmp_path, args, message):
    r = run(tmp_path, *args, "--stop-stage", "0")
    assert r.returncode != 0 and message in r.stderr + r.stdout
    assert "Traceback" not in r.stderr + r.stdout
    assert not (tmp_path / "data").exists()


def test_a_rerun_skips_the_prep(recipe, corpora):
    so, ls = corpora
    r = ok(run(recipe, "--corpus-dirs", f"speechocean762={so} librispeech_mini={ls}",
               "--stop-stage", "0"))
    assert re.search(r"stage 0: skipped", r.stdout + r.stderr)


@pytest.mark.parametrize("corpus,counts", [("speechocean762", "1,2,3,5"),
                                           ("librispeech_mini", "1,2")])
def test_an_eval_set_of_another_recipe_gets_that_recipe_trial_options(corpus, counts):
    r = ok(subprocess.run(["bash", str(ROOT / "egs" / corpus / "run.sh"), "--help"],
                          capture_output=True, text=True))
    assert f'--trials-opts "--enroll-counts {counts}"' in r.stdout + r.stderr
    r = ok(subprocess.run(["bash", "-c", f". {ROOT}/utils/recipe.sh 2>/dev/null; "
                           f"echo $trials_opts_eval_{corpus}"], capture_output=True, text=True,
                          cwd=ROOT / "egs" / corpus))
    assert r.stdout.strip() == f"--enroll-counts {counts}"


REAL_SO = ROOT.parent / "shared" / "data" / "speechocean762"


@pytest.mark.skipif(not REAL_SO.is_dir(), reason=f"{REAL_SO} not present")
def test_cross_corpora_adds_the_other_recipe_eval_set(corpora, tmp_path):
    """--cross-corpora of a one-corpus recipe: the other recipe's stage 0, its eval set as
    eval_<corpus> beside the recipe's own sets (the stages then score it like the others)."""
    _, ls = corpora
    ok(run(tmp_path, "--corpus-dir", str(ls), "--cross-corpora", "speechocean762",
           "--stop-stage", "0", recipe=ROOT / "egs" / "librispeech_mini" / "run.sh"))
    data = tmp_path / "data"
    for name in ("utt2spk", "wav.scp", "spk2age", "spk2gender"):
        assert ((data / "eval_speechocean762" / name).read_bytes()
                == (data / "speechocean762" / "eval" / name).read_bytes())
    assert len(read_kaldi_map(data / "eval_speechocean762" / "spk2age")) == 25
    assert (data / "eval" / "utt2spk").is_file() and (data / "train" / "utt2spk").is_file()
    r = run(tmp_path, "--corpus-dir", str(ls), "--cross-corpora", "nope", "--stop-stage", "0",
            recipe=ROOT / "egs" / "librispeech_mini" / "run.sh")
    assert r.returncode != 0 and "--cross-corpora: 'nope' is not a recipe" in r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
