"""The mini recipe, stages 0-12, on a small corpus, end to end through run.sh (as CI runs it).

One tree (the module fixture) is made by stages 0-2, an extra official-style list
``data/eval/trials_vox1_o``, then stages 3-10; the tests read it in file order, and the
last ones rerun single stages on it with changed options (the rerun rule of
deepspeaker/marker.py: same signature skips, another redoes, a trained model refuses),
so they stay at the end and each leaves what the next needs.
"""

import os
import shutil
import subprocess
from pathlib import Path

import kaldiio
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
CORPUS_OPTS = ("--num-train-spk 8 --num-dev-spk 2 --num-eval-spk 6 --utts-per-train-spk 3 "
               "--utts-per-dev-spk 3 --utts-per-eval-spk 7 --min-dur 1.0 --max-dur 1.5")


# The recipe's --cmd: run_jobs.sh behind a wrapper that records every call, so that the tests
# see which jobs went through the job runner (a Slurm runner would get the same calls).
RUNNER = """#!/bin/bash
printf '%s\\n' "$*" >> "$(dirname "$0")/runner_calls"
exec bash "$DS_ROOT/utils/run_jobs.sh" "$@"
"""


def _run(tmp_path, *extra):
    runner = tmp_path / "runner.sh"
    if not runner.exists():
        runner.write_text(RUNNER)
    cmd = ["bash", str(ROOT / "egs/mini/run.sh"), "--nj", "2", "--corpus-opts", CORPUS_OPTS,
           "--cmd", f"bash {runner} --mem 2G",
           "--data", str(tmp_path / "data"), "--exp", str(tmp_path / "exp"),
           "--corpus-dir", str(tmp_path / "corpus"),
           "--ivector-conf", str(ROOT / "tests/conf_ivector_tiny.yaml"),
           "--nnet-conf-dir", str(ROOT / "tests/conf_nnet_tiny"),
           "--nnet-strategies", "softmax triplet softmax_triplet", "--ablation", "true", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, LC_ALL="C"))


def _ok(r):
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


OFFICIAL = "trials_vox1_o"


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mini")
    _ok(_run(tmp, "--stop-stage", "2"))
    # A list of another name, as a corpus' data prep writes one (VoxCeleb1-O): every
    # later stage must score it and the report must show it.
    lines = (tmp / "data/eval/trials").read_text().splitlines()
    (tmp / "data/eval" / OFFICIAL).write_text("\n".join(lines[::3]) + "\n")
    r = _ok(_run(tmp, "--stage", "3"))
    return tmp, r


def test_every_job_goes_through_the_runner_of_cmd(recipe):
    """--cmd runs the single jobs (UBM, PLDA, scoring) and, as $DS_CMD, the jobs of the
    stages that split their work (stage 1's fbank + VAD and augmentation)."""
    tmp, _ = recipe
    calls = (tmp / "runner_calls").read_text().splitlines()
    assert all(c.startswith("--mem 2G ") for c in calls)
    def seen(*words):
        return sum(all(w in c for w in words) for c in calls)
    assert seen("JOB=1:2", "make_fbank_vad.JOB.log", "compute_fbank_vad") >= 3   # train dev eval
    assert seen("JOB=1:2", "augment.JOB.log", "augment_data_dir") == 1
    for stage in ("train_ubm", "train_ivector_extractor", "train_plda", "score_plda",
                  "score_embeddings", "fuse_scores", "save_operating_points"):
        assert seen("deepspeaker.bin." + stage), stage


def test_stages_0_to_2(recipe):
    tmp, r = recipe
    data = tmp / "data"
    for x, n in (("train", 24), ("dev", 6), ("eval", 42)):
        feats = kaldiio.load_scp(str(data / x / "feats.scp"))
        assert len(feats) == n
        assert all(m.shape[1] == 64 for m in feats.values())
        assert not (data / x / "failed_utts").exists()
    trials = (data / "eval" / "trials").read_text().splitlines()
    # 42 anchors, each with 1 positive and all 35 other-speaker utterances (< 99 exist).
    assert len(trials) == 42 * 36
    assert sum(t.endswith(" target") for t in trials) == 42
    for k in (1, 2, 3, 5):
        lines = (data / "eval" / f"trials_enroll{k}").read_text().splitlines()
        assert len(lines) == 6 * 2 * 6  # 7 - 5 anchors per speaker, 1 + 5 models each
    results = (tmp / "exp/mfcc_stats/RESULTS.md").read_text()
    rows = {r.split("|")[2].strip(): r.split("|") for r in results.splitlines() if r.startswith("| cosine")}
    assert sorted(rows) == ["trials", "trials_enroll1", "trials_enroll2", "trials_enroll3",
                            "trials_enroll5"]
    eer, acc = float(rows["trials"][3]), float(rows["trials"][5])
    assert 0 <= eer < 50 and 0 < acc <= 100
    assert rows["trials"][6].strip() == "42 / 1470"
    assert (tmp / "exp/make_fbank_vad/eval/make_fbank_vad.1.log").exists()
    assert (tmp / "exp/log/make_corpus.log").exists()


def test_stage_1_augments_the_networks_training_set(recipe):
    """conf/augment_quick.yaml: ~1 copy of a random kind per utterance + speed 0.9 / 1.1."""
    tmp, _ = recipe
    data = tmp / "data"
    aug = data / "aug/train_aug"
    uniq = dict(line.split() for line in (aug / "utt2uniq").read_text().splitlines())
    kinds = [line.split()[1] for line in (aug / "utt2aug").read_text().splitlines()]
    assert kinds.count("kind=speed") == 2 * 24
    assert 10 <= len(kinds) - 2 * 24 <= 40          # each kind for a seeded quarter
    clean_vad = kaldiio.load_scp(str(data / "train/vad.scp"))
    aug_vad = kaldiio.load_scp(str(aug / "vad.scp"))
    for utt, src in uniq.items():
        assert src in clean_vad
        if not utt.startswith("sp"):   # a copy keeps its clean source's VAD
            assert np.array_equal(aug_vad[utt], clean_vad[src]), utt
    combined = kaldiio.load_scp(str(data / "train_combined/feats.scp"))
    assert len(combined) == 24 + len(kinds)
    spk = {line.split()[1] for line in (data / "train_combined/utt2spk").read_text().splitlines()}
    assert len(spk) == 3 * 8                          # speed copies are new speakers
    assert (data / "aug_sources/rirs/wav.scp").exists()
    assert (tmp / "exp/augment/train/augment.1.log").exists()


def test_ivector_stages(recipe):
    tmp, _ = recipe
    ivec = tmp / "exp/ivector"
    for f in ("config.yaml", "models/ubm.npz", "models/extractor.npz", "models/lda.npz",
              "models/plda.npz"):
        assert (ivec / f).exists(), f
    vecs = kaldiio.load_scp(str(ivec / "eval/ivector.scp"))
    assert len(vecs) == 42 and all(v.shape == (10,) for v in vecs.values())
    results = (ivec / "RESULTS.md").read_text()
    systems = {(r.split("|")[1].strip(), r.split("|")[2].strip())
               for r in results.splitlines() if r.startswith("| ")}
    for method in ("plda", "cosine"):
        for name in ("trials", "trials_enroll1", "trials_enroll2", "trials_enroll3",
                     "trials_enroll5"):
            assert (method, name) in systems
        assert (ivec / "scores" / f"{method}_{OFFICIAL}").stat().st_size > 0
    assert system(ivec) == {"kind": "ivector", "train_set": str(tmp / "data/train"),
                            "fraction": 1.0}
    assert system(tmp / "exp/mfcc_stats") == {"kind": "reference", "fraction": 1.0}


def system(exp_dir):
    """What exp_dir/system.yaml says the experiment is (written by the stage that made it)."""
    from deepspeaker.utils import load_yaml

    return load_yaml(exp_dir / "system.yaml")


TAGS = [f"{m}_{s}" for m in ("rescnn", "gru") for s in ("softmax", "triplet", "softmax_triplet")]
# The ablation twins (--ablation true): the same systems on the clean training set.
NOAUG = [f"{m}_{s}_noaug" for m in ("rescnn", "gru") for s in ("softmax", "softmax_triplet")]
TRIALS = ["trials", "trials_enroll1", "trials_enroll2", "trials_enroll3", "trials_enroll5"]


def test_nnet_stages_6_to_9(recipe):
    from deepspeaker.scoring.trials import read_scores, read_trials

    tmp, _ = recipe
    exp = tmp / "exp"
    for tag in TAGS + NOAUG:
        assert (exp / tag / "best.pt").exists() and (exp / tag / "config.yaml").exists(), tag
        emb = kaldiio.load_scp(str(exp / tag / "eval/embedding.scp"))
        assert len(emb) == 42
        for v in emb.values():
            assert v.shape == (512,) and abs(float((v.astype("float64") ** 2).sum()) - 1) < 1e-5
        for t in [*TRIALS, OFFICIAL]:
            trials = read_trials(tmp / "data/eval" / t)
            scores = read_scores(exp / tag / "scores" / f"cosine_{t}")
            assert set(scores) == {(x.enroll, x.test) for x in trials}, (tag, t)
            assert all(-1.0001 <= s <= 1.0001 for s in scores.values())
        assert (exp / tag / "RESULTS.md").exists()
        assert (exp / tag / "log/extract_eval.log").exists()
        assert (exp / tag / "scores/plda_trials").stat().st_size > 0
        model, strategy = tag.split("_", 1)
        clean = strategy.endswith("_noaug")
        # The PLDA of an augmented system learns from the clean set and its speed copies
        # (--nnet-backend-set clean_speed), that of an ablation twin from the clean set.
        backend_set = "train" if clean else "train_clean_sp"
        assert (exp / tag / f"log/extract_{backend_set}.log").exists(), tag
        assert len(kaldiio.load_scp(str(exp / tag / backend_set / "embedding.scp"))) == (
            24 if clean else 24 + 2 * 24)
        strategy = strategy.removesuffix("_noaug")
        suffix = "_noaug" if clean else ""
        assert system(exp / tag) == {
            "kind": "deepspeaker", "model": model, "strategy": strategy,
            "train_set": str(tmp / ("data/train" if clean else "data/train_combined")),
            "fraction": 1.0, **({"augmented": False} if clean else {}),
            **({"init": str(exp / f"{model}_softmax{suffix}/best.pt")}
               if strategy == "softmax_triplet" else {})}


def test_networks_train_side_by_side(recipe):
    """--nnet-parallel (default): stages 6-9 of each network at once, one core each here."""
    _, r = recipe
    out = r.stdout + r.stderr
    assert "stages 6-9: rescnn gru side by side" in out
    for m in ("rescnn", "gru"):
        assert f"[{m}] " in out and f"stage 6: {m} softmax pre-training" in out
    from deepspeaker.threads import usable_cores

    share = max(1, usable_cores() // 2)
    assert "[gru] " in out and f"(DS_NUM_THREADS={share} / 1 job(s)" in out


def test_fusion_and_report_stage_10(recipe):
    tmp, r = recipe
    exp = tmp / "exp"
    assert system(exp / "fusion")["members"] == ["rescnn_softmax_triplet", "gru_softmax_triplet"]
    for t in [*TRIALS, OFFICIAL]:
        for kind in ("embedding", "score"):
            assert (exp / "fusion/scores" / f"{kind}_{t}").stat().st_size > 0
    report = (exp / "RESULTS.md").read_text()
    for heading in ("## T5", "## T6", "## T8", "## The paper's claims", "## Corpus",
                    "## Trial lists", "## Configs"):
        assert heading in report, heading
    for label in ("i-vector + PLDA (baseline)", "ResCNN, softmax |", "GRU, triplet |",
                  "embedding fusion", "score fusion"):
        assert label in report, label
    assert "not run" not in report
    assert "42 target + 1470 non-target" in report
    assert (exp / "report/det.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (exp / "report/hist_score_fusion.png").exists()
    assert "## T5" in r.stdout  # the report is printed at the end of the run




def test_asnorm_and_operating_points_of_every_system(recipe):
    """Every system also scores the main list after AS-norm (cohort: its training
    speakers), keeps the cohort, and saves operating points of both score sets; the
    report shows them; the Python API's <method>_asnorm gives the score file's numbers."""
    import deepspeaker
    from deepspeaker.scoring.trials import read_scores

    tmp, _ = recipe
    exp = tmp / "exp"
    methods = {"ivector": ("plda", "cosine"), "fusion": ("embedding", "score"),
               **{tag: ("cosine", "plda") for tag in TAGS + NOAUG}}
    for tag, ms in methods.items():
        for m in ms:
            assert (exp / tag / "scores" / f"{m}_asnorm_trials").stat().st_size > 0, (tag, m)
            for v in (m, f"{m}_asnorm"):
                assert (exp / tag / "operating_points" / f"{v}.yaml").is_file(), (tag, v)
            assert (exp / tag / "asnorm" / f"{m}.npz").is_file() == (m != "score"), (tag, m)
        if tag != "fusion":
            assert (exp / tag / "feature.yaml").is_file(), tag
    report = (exp / "RESULTS.md").read_text()
    section = report.split("## AS-norm")[1].split("\n## ")[0]
    assert "| GRU, softmax (pre-train) + triplet, PLDA |" in section
    assert "i-vector + PLDA (baseline), AS-norm" in report.split("## Operating points")[1]
    tag = "gru_softmax_triplet"
    system = deepspeaker.load(exp / tag, asnorm=True)
    assert (system.method, system.feature_source) == ("plda_asnorm",
                                                      str(exp / tag / "feature.yaml"))
    emb = kaldiio.load_scp(str(exp / tag / "eval/embedding.scp"))
    for (e, t), want in list(read_scores(exp / tag / "scores/plda_asnorm_trials").items())[:20]:
        got = system.score_vectors(system.model_of(emb[e][None, :]), emb[t][None, :])[0]
        assert got == pytest.approx(want, abs=1e-5)
    assert deepspeaker.load(exp / "fusion", asnorm=True).method == "embedding_asnorm"


def test_unknown_option_fails(tmp_path):
    r = _run(tmp_path, "--no-such-option", "1")
    assert r.returncode != 0 and "--no-such-option" in r.stderr


def _copy_exp(tmp, name):
    dst = tmp / name
    shutil.copytree(tmp / "exp/ivector", dst)
    return dst


def test_ivector_bad_inputs(recipe):
    """SPEC "Bad input" for the i-vector stages: named errors, skipped and listed utterances."""
    import numpy as np

    from deepspeaker.bin import extract_ivectors, score_plda, summarize_scores
    from deepspeaker.ivector.plda import TwoCovPLDA
    from deepspeaker.ivector.ubm import DiagGmm

    tmp, _ = recipe
    data = tmp / "data"
    # An utterance with no voiced frames: listed in failed_utts, its trials left out and listed.
    bad = data / "evalbad"
    shutil.copytree(data / "eval", bad)
    vad = dict(kaldiio.load_scp(str(bad / "vad.scp")).items())
    silent = sorted(vad)[3]
    vad[silent] = np.zeros_like(vad[silent])
    kaldiio.save_ark(str(bad / "vad2.ark"), vad, scp=str(bad / "vad.scp"))
    exp = _copy_exp(tmp, "exp_badvad")
    assert extract_ivectors.main([str(exp), str(bad)]) == 0
    assert silent in (exp / "evalbad/failed_utts").read_text()
    assert silent not in kaldiio.load_scp(str(exp / "evalbad/ivector.scp"))
    assert score_plda.main([str(exp), str(bad), str(bad / "trials"),
                            str(exp / "scores/plda_trials")]) == 0
    skipped = (exp / "scores/plda_trials.skipped").read_text().splitlines()
    assert skipped and all(silent in line for line in skipped)
    assert summarize_scores.main([str(exp), str(bad)]) == 0
    row = [r for r in (exp / "RESULTS.md").read_text().splitlines() if "| plda | trials |" in r][0]
    assert row.split("|")[7].strip() == str(len(skipped))

    # A trial naming an utterance the data dir does not have: error naming file and line.
    trials = tmp / "trials_unknown"
    trials.write_text((data / "eval/trials").read_text().splitlines()[0] + "\n"
                      "ev0000-u000 nobody-u1 nontarget\n")
    with pytest.raises(Exception, match=r"trials_unknown:2: test id nobody-u1"):
        score_plda.run(tmp / "exp/ivector", data / "eval", trials, tmp / "s", "plda", None)

    # A PLDA of another LDA size: refused, naming the file and both dimensions.
    exp = _copy_exp(tmp, "exp_badplda")
    TwoCovPLDA.from_covariances(np.zeros(3), np.eye(3), np.eye(3)).save(exp / "models/plda.npz")
    with pytest.raises(Exception, match=r"plda.npz.*3.*5|plda.npz.*5.*3"):
        score_plda.run(exp, data / "eval", data / "eval/trials", exp / "s", "plda", None)

    # A UBM that does not match the features' dimension: refused, naming the file.
    exp = _copy_exp(tmp, "exp_badubm")
    (exp / "eval").rename(exp / "eval_old")
    DiagGmm(np.full(4, 0.25), np.zeros((4, 40)), np.ones((4, 40))).save(exp / "models/ubm.npz")
    with pytest.raises(Exception, match=r"ubm.npz: the UBM is for 40-d features but .* gives 60-d"):
        extract_ivectors.run(exp, data / "eval")


def test_size_study_and_transfer_stages_11_12(recipe):
    """Stage 11 (T7) on half the training speakers; stage 12 (T9/T10) from a copy of this exp."""
    tmp, _ = recipe
    source = tmp / "source_exp"
    for m in ("rescnn", "gru"):
        shutil.copytree(tmp / "exp" / f"{m}_softmax_triplet", source / f"{m}_softmax_triplet")
    conf = tmp / "conf_nnet"
    shutil.copytree(ROOT / "tests/conf_nnet_tiny", conf)
    for f in conf.glob("*.yaml"):  # 4 speakers x 3 utterances make only 4 pairs
        f.write_text(f.read_text().replace("batch_size: 8", "batch_size: 4"))
    for m in ("rescnn", "gru"):
        shutil.copy(conf / f"{m}_triplet.yaml", conf / f"{m}_transfer.yaml")
    # AS-norm is tested above; here it would only add 4 scoring runs per system.
    r = _run(tmp, "--stage", "11", "--train-fractions", "0.5", "--transfer-from", str(source),
             "--nnet-conf-dir", str(conf), "--asnorm-top-n", "0")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    sub = (tmp / "data/train_spk50/spk2utt").read_text().splitlines()
    assert len(sub) == 4  # 50% of 8 speakers, all their utterances
    exp = tmp / "exp"
    for m in ("rescnn", "gru"):
        for tag in (f"{m}_softmax_triplet_spk50", f"{m}_source_only", f"{m}_transfer"):
            assert len(kaldiio.load_scp(str(exp / tag / "eval/embedding.scp"))) == 42, tag
    report = (exp / "RESULTS.md").read_text()
    assert "## T7" in report and "## T9/T10" in report
    assert "| ResCNN | 50% |" in report and "| ResCNN | 100% |" in report
    for m in ("rescnn", "gru"):
        src = str(source / f"{m}_softmax_triplet")
        assert system(exp / f"{m}_softmax_triplet_spk50") == {
            "kind": "deepspeaker", "model": m, "strategy": "softmax_triplet",
            "train_set": str(tmp / "data/train_spk50"), "fraction": 0.5,
            "init": str(exp / f"{m}_softmax_spk50/best.pt")}
        assert system(exp / f"{m}_source_only") == {"kind": "deepspeaker", "model": m,
                                                    "strategy": "source_only", "fraction": 1.0,
                                                    "source": src}
        assert system(exp / f"{m}_transfer") == {
            "kind": "deepspeaker", "model": m, "strategy": "transfer",
            "train_set": str(tmp / "data/train"), "fraction": 1.0, "source": src,
            "init": str(exp / f"{m}_source_only/best.pt")}


def test_official_list_reaches_results(recipe):
    """A trials_<name> list of the eval dir has its own table in exp/RESULTS.md, and its
    i-vector PLDA row is the EER computed here from that system's score file."""
    from deepspeaker.scoring.metrics import compute_eer
    from deepspeaker.scoring.trials import read_scores, read_trials

    tmp, _ = recipe
    report = (tmp / "exp/RESULTS.md").read_text().splitlines()
    start = report.index(next(line for line in report if line.startswith(f"### `{OFFICIAL}`")))
    rows = {}
    for line in report[start + 3:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = cells
    trials = read_trials(tmp / "data/eval" / OFFICIAL)
    scores = read_scores(tmp / "exp/ivector/scores" / f"plda_{OFFICIAL}")
    eer = compute_eer(np.array([scores[(t.enroll, t.test)] for t in trials]),
                      np.array([t.target for t in trials]))[0]
    assert rows["i-vector + PLDA (baseline)"][1] == f"{100 * eer:.2f}"
    assert rows["i-vector + PLDA (baseline)"][4] == \
        f"{sum(t.target for t in trials)} / {sum(not t.target for t in trials)}"
    assert any(label.startswith("GRU") for label in rows), rows


# ---------------------------------------------------------------- reruns (keep these last)
# One rule (deepspeaker/marker.py): the same signature skips, another redoes, and a
# trained model made from another signature is refused with "rm -r <exp dir> and rerun".

def _output(r):
    return r.stdout + r.stderr


def test_rerun_stage_0_with_the_same_options_skips(recipe):
    tmp, _ = recipe
    before = (tmp / "data/train/wav.scp").stat().st_mtime_ns
    r = _ok(_run(tmp, "--stop-stage", "0"))
    assert "stage 0: skipped" in r.stderr and "make_corpus.py" not in r.stderr
    assert (tmp / "data/train/wav.scp").stat().st_mtime_ns == before
    # Another corpus option is another signature: the data dirs are made again.
    r = _ok(_run(tmp, "--stop-stage", "0", "--corpus-opts", CORPUS_OPTS + " --min-dur 1.0"))
    assert "stage 0: skipped" not in r.stderr and "make_corpus.py" in r.stderr
    r = _ok(_run(tmp, "--stop-stage", "0"))  # back to the fixture's signature
    assert "make_corpus.py" in r.stderr


def test_rerun_stage_1_with_the_same_conf_skips(recipe):
    tmp, _ = recipe
    before = {x: (tmp / "data" / x / "feats.scp").stat().st_mtime_ns for x in ("train", "eval")}
    _ok(_run(tmp, "--stage", "1", "--stop-stage", "1", "--nj", "1"))  # --nj is in no signature
    after = {x: (tmp / "data" / x / "feats.scp").stat().st_mtime_ns for x in ("train", "eval")}
    assert after == before


def test_changed_nnet_conf_is_refused(recipe):
    tmp, _ = recipe
    best = tmp / "exp/rescnn_softmax/best.pt"
    before = best.read_bytes()
    _ok(_run(tmp, "--stage", "6", "--stop-stage", "6"))  # the same confs: nothing to do
    conf = tmp / "conf_changed"
    shutil.copytree(ROOT / "tests/conf_nnet_tiny", conf)
    path = conf / "rescnn_softmax.yaml"
    path.write_text(path.read_text().replace("epochs: 1", "epochs: 2"))
    r = _run(tmp, "--stage", "6", "--stop-stage", "6", "--nnet-conf-dir", str(conf))
    assert r.returncode != 0
    assert "rm -r" in _output(r) and "rescnn_softmax" in _output(r), _output(r)[-3000:]
    assert best.read_bytes() == before
    # The networks ran side by side: the failure names the one that failed, after the
    # other one finished (its unchanged conf: nothing to do).
    assert "stages 6-9 failed for: rescnn (" in _output(r), _output(r)[-3000:]
    assert "[gru] " in _output(r)


def test_new_source_checkpoint_makes_a_new_copy(recipe):
    """Stage 12 copies the source model again when its best.pt changed, and only then."""
    tmp, _ = recipe
    source, exp = tmp / "source_exp", tmp / "exp"
    kept = (exp / "rescnn_source_only/best.pt").stat().st_mtime_ns
    shutil.copy(exp / "gru_softmax_triplet_spk50/best.pt", source / "gru_softmax_triplet/best.pt")
    r = _run(tmp, "--stage", "12", "--stop-stage", "12", "--transfer-from", str(source),
             "--nnet-conf-dir", str(tmp / "conf_nnet"))
    assert "copying" in r.stderr, _output(r)[-3000:]
    assert (exp / "gru_source_only/best.pt").read_bytes() == \
        (source / "gru_softmax_triplet/best.pt").read_bytes()
    assert (exp / "rescnn_source_only/best.pt").stat().st_mtime_ns == kept
    # The model fine-tuned from the old copy is refused, not overwritten.
    assert r.returncode != 0 and "rm -r" in _output(r), _output(r)[-3000:]


def test_new_seed_redoes_the_subset(recipe):
    tmp, _ = recipe
    spk2utt = tmp / "data/train_spk50/spk2utt"
    before = spk2utt.read_text()
    r = _run(tmp, "--stage", "11", "--stop-stage", "11", "--train-fractions", "0.5", "--seed",
             "1", "--nnet-conf-dir", str(tmp / "conf_nnet"))
    after = spk2utt.read_text()
    assert after != before and len(after.splitlines()) == 4
    # The models trained on the old subset are refused, not retrained underneath.
    assert r.returncode != 0 and "rm -r" in _output(r), _output(r)[-3000:]


def test_new_seed_rewrites_the_trials(recipe):
    tmp, _ = recipe
    eval_dir = tmp / "data/eval"
    lists = ["trials", "trials_enroll1", "trials_enroll2", "trials_enroll3", "trials_enroll5"]
    before = {t: (eval_dir / t).read_text() for t in lists}
    _ok(_run(tmp, "--stage", "2", "--stop-stage", "2", "--seed", "1"))
    after = {t: (eval_dir / t).read_text() for t in lists}
    assert after != before
    assert len(after["trials"].splitlines()) == 42 * 36
    assert sum(t.endswith(" target") for t in after["trials"].splitlines()) == 42


def test_other_feat_conf_redoes_the_features(recipe):
    import numpy as np

    tmp, _ = recipe
    conf = tmp / "fbank_other.yaml"
    text = (ROOT / "conf/paper/fbank_vad.yaml").read_text()
    assert "low_freq: 20.0" in text
    conf.write_text(text.replace("low_freq: 20.0", "low_freq: 300.0"))
    before = dict(kaldiio.load_scp(str(tmp / "data/eval/feats.scp")).items())
    _ok(_run(tmp, "--stage", "1", "--stop-stage", "1", "--feat-conf", str(conf)))
    after = dict(kaldiio.load_scp(str(tmp / "data/eval/feats.scp")).items())
    assert sorted(after) == sorted(before)
    assert not any(np.array_equal(before[u], after[u]) for u in before)
