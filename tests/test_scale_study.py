"""egs/mini_scale, the training-size study, through its run.sh on two tiny sizes; and the
study's own arithmetic (crossover, per-4x factors, claims, the cost table) on numbers."""

import math
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from deepspeaker.scoring import scale_study
from deepspeaker.scoring.metrics import Metrics
from deepspeaker.timing import StepTime, append_row, read_timing, run_timed
from deepspeaker.utils import DeepSpeakerError

ROOT = Path(__file__).resolve().parents[1]
SIZES = "8 16"
CORPUS_OPTS = ("--num-dev-spk 2 --num-eval-spk 6 --utts-per-dev-spk 3 --utts-per-eval-spk 7 "
               "--min-dur 1.0 --max-dur 1.5")


def _confs(tmp: Path) -> Path:
    """conf/spk<N>/ for the tiny sizes: the tiny recipe confs of the other recipe tests."""
    for n in SIZES.split():
        d = tmp / "conf" / f"spk{n}"
        d.mkdir(parents=True)
        shutil.copy(ROOT / "tests/conf_ivector_tiny.yaml", d / "ivector.yaml")
        for f in ("gru_softmax", "gru_triplet", "rescnn_softmax", "rescnn_triplet"):
            shutil.copy(ROOT / f"tests/conf_nnet_tiny/{f}.yaml", d / f"{f}.yaml")
    return tmp / "conf"


def _run(tmp, *extra):
    cmd = ["bash", str(ROOT / "egs/mini_scale/run.sh"), "--nj", "2", "--sizes", SIZES,
           "--utts-per-spk", "3", "--corpus-opts", CORPUS_OPTS, "--size-conf-dir", str(tmp / "conf"),
           "--data", str(tmp / "data"), "--exp", str(tmp / "exp"), "--corpus-dir", str(tmp / "corpus"),
           *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900,
                          env=dict(os.environ, LC_ALL="C"))


def _ok(r):
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scale")
    _confs(tmp)
    return tmp, _ok(_run(tmp))


def test_each_size_is_a_full_recipe_on_nested_speakers(study):
    tmp, _ = study
    spk = {n: sorted(set(line.split()[1] for line in
                         (tmp / f"data/spk{n}/train/utt2spk").read_text().splitlines()))
           for n in (8, 16)}
    assert len(spk[8]) == 8 and len(spk[16]) == 16
    assert set(spk[8]) <= set(spk[16])  # speaker i is the same voice at every size
    assert len((tmp / "data/spk16/train/utt2spk").read_text().splitlines()) == 48
    # the same eval speakers and the same trials at every size
    assert (tmp / "data/spk8/eval/trials").read_bytes() == (tmp / "data/spk16/eval/trials").read_bytes()
    for n in (8, 16):
        exp = tmp / f"exp/spk{n}"
        for tag in ("ivector", "gru_softmax_triplet", "rescnn_softmax_triplet", "fusion"):
            assert (exp / tag / "system.yaml").is_file(), tag
        assert (exp / "gru_softmax_triplet/scores/plda_trials").is_file()
        assert "training speakers" in (exp / "RESULTS.md").read_text()
    # the wavs of the smaller size were kept: size 16 made only its 8 new speakers' 24
    assert scale_study.generated(tmp / "exp", 16) == 24


def test_every_step_of_every_size_is_timed(study):
    tmp, _ = study
    timing = read_timing(tmp / "exp/timing.tsv")
    for n in (8, 16):
        for step in scale_study.STEP_LABELS:
            row = timing[(n, step)]
            assert row.wall_s > 0 and row.cpu_s >= 0 and row.max_rss_mb > 10, (n, step, row)
    # training loads torch and a model: well over the 10 MB of a shell
    assert timing[(16, "6")].max_rss_mb > 150


def test_the_study_report_has_the_table_crossover_claims_and_costs(study):
    tmp, _ = study
    text = (tmp / "exp/RESULTS.md").read_text()
    for part in ("## EER, minDCF and ACC against the number of training speakers",
                 "| i-vector + PLDA |", "| GRU, PLDA |", "| ResCNN, cosine |",
                 "## Deep Speaker against the i-vector", "## The paper's claims at each size",
                 "## What each step costs", "| 3 UBM |", "b 8->16", "dominant step",
                 "Training per epoch", "| gru_softmax | "):
        assert part in text, part
    assert ("**Measured**" in text) or ("**Not reached**" in text)
    assert (tmp / "exp/report/scale.png").stat().st_size > 10000
    # the numbers are those of each size's own report
    iv = (tmp / "exp/spk16/RESULTS.md").read_text().split("| i-vector + PLDA (baseline) | ")[1]
    assert f"{iv.split(' |')[0]}%" in text.split("| i-vector + PLDA |")[1].split("\n")[0]


def test_a_rerun_skips_the_work_and_keeps_the_timing_of_the_run_that_did_it(study):
    tmp, _ = study
    before = read_timing(tmp / "exp/timing.tsv")
    lines = len((tmp / "exp/timing.tsv").read_text().splitlines())
    r = _ok(_run(tmp, "--stop-stage", "3"))
    assert "stage 0: skipped" in r.stderr
    after = read_timing(tmp / "exp/timing.tsv")
    # generation, features and the UBM found their work done: their reruns took less
    for n in (8, 16):
        for step in ("0", "1", "3"):
            assert after[(n, step)] == before[(n, step)], (n, step)
    assert len((tmp / "exp/timing.tsv").read_text().splitlines()) == lines + 2 * 4


def test_bad_sizes_and_missing_confs_are_one_line(tmp_path):
    _confs(tmp_path)
    for args, says in ((("--sizes", "16 8"), "ascending"), (("--sizes", "8 x"), "ascending"),
                       (("--sizes", "8 24"), "no confs for 24"),
                       (("--ivector-conf", "x.yaml"), "--size-conf-dir"),
                       (("--nnet-conf-dir", str(tmp_path)), "do not apply here")):
        r = _run(tmp_path, *args)
        assert r.returncode != 0 and says in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert not (tmp_path / "exp/timing.tsv").exists()


def _point(size, iv, ds):
    def res(eer):
        m = Metrics(eer, 0.0, 0.5, 0.0, 0.01, 1 - eer, 10, 10, 990)
        return scale_study.Result(None, m, np.zeros(1), np.zeros(1, bool), 0, Path("x"))
    return scale_study.Point(size, {"i-vector + PLDA": res(iv), "GRU, PLDA": res(ds),
                                    "GRU, cosine": res(ds + 0.01)})


def test_crossover_measured_between_two_sizes():
    pts = [_point(250, 0.03, 0.06), _point(1000, 0.025, 0.03), _point(4000, 0.02, 0.015)]
    text = scale_study.crossover(pts)
    assert "**Measured**" in text and "between 1,000 speakers" in text and "4,000" in text
    # log(DS/iv) linear in log N: ratio 1.2 at 1,000, 0.75 at 4,000
    r0, r1 = math.log(1.2), math.log(0.75)
    at = math.exp(math.log(1000) + math.log(4) * r0 / (r0 - r1))
    assert f"near {at:,.0f} speakers" in text


def test_no_crossover_gives_the_gaps_factors_and_an_extrapolation():
    pts = [_point(250, 0.04, 0.08), _point(1000, 0.03, 0.045)]
    text = scale_study.crossover(pts)
    assert "**Not reached**" in text and "x2.00" in text and "x1.50" in text
    f_iv, f_ds = 0.75, 0.5625
    n = 1000 * 4 ** (math.log(1.5) / math.log(f_iv / f_ds))
    assert "i-vector x0.75, DS x0.56" in text and f"near {n:,.0f} speakers" in text
    assert "extrapolation" in text


def test_claims_at_each_size():
    pts = [_point(250, 0.04, 0.08), _point(1000, 0.03, 0.045), _point(4000, 0.028, 0.02)]
    lines = scale_study.claims_table(pts)
    assert lines[2].startswith("| 250 | **not held**") and lines[2].endswith("|  |")
    assert "| 1,000 | **not held**" in lines[3] and "**held**: DS +43.8%, i-vector +25.0%" in lines[3]
    assert lines[4].startswith("| 4,000 | **held**")
    assert scale_study.per_4x(0.08, 0.045, 250, 1000) == pytest.approx(0.5625)
    assert scale_study.per_4x(0.08, 0.02, 250, 4000) == pytest.approx(0.5)


def test_cost_table_exponents_and_the_dominant_step(tmp_path):
    table = tmp_path / "timing.tsv"
    for n, t3, t6 in ((250, 10.0, 100.0), (1000, 40.0, 200.0)):
        append_row(table, StepTime(n, "3", t3, t3, 300.0, "now"))
        append_row(table, StepTime(n, "6", t6, t6, 900.0, "now"))
    append_row(table, StepTime(1000, "6", 2.0, 1.0, 100.0, "rerun"))  # a skipped rerun
    lines, dominant = scale_study.cost_table(tmp_path, [250, 1000], 8)
    ubm = next(line for line in lines if line.startswith("| 3 UBM"))
    assert ubm == "| 3 UBM | 10 (300) | 40 (300) | 1.00 |"
    soft = next(line for line in lines if line.startswith("| 6 softmax"))
    assert soft.endswith("| 0.50 |")
    assert "6 softmax (both networks) (3.3 min, 83% of that size's 4.0 min)" in dominant


def test_timing_rows_only_for_commands_that_succeed(tmp_path):
    table = tmp_path / "t.tsv"
    assert run_timed(["python", "-c", "x = bytearray(50_000_000)"], table, 5, "1") == 0
    assert run_timed(["false"], table, 5, "2") == 1
    rows = read_timing(table)
    assert list(rows) == [(5, "1")] and rows[(5, "1")].max_rss_mb > 50
    table.write_text(table.read_text() + "5\t3\tnot-a-number\n")
    with pytest.raises(DeepSpeakerError, match=r"t.tsv:3"):
        read_timing(table)


def test_epoch_table_from_the_trainers_progress_lines(tmp_path):
    for n, rates in ((250, (100.0, 120.0, 110.0)), (1000, (100.0, 90.0, 110.0))):
        log = tmp_path / f"spk{n}/gru_softmax/log/train.rank0.log"
        log.parent.mkdir(parents=True)
        log.write_text("".join(f"2026 INFO [trainer.py:349] epoch 1 step {i}/31 (global {i}): loss 1.0 "
                               f"acc 0.5 lr 0.04 {r} utt/s\n" for i, r in enumerate(rates, 1))
                       + "2026 INFO [trainer.py:378] epoch 1 done: loss 1.0 dev EER 10.00% (best)\n")
    lines = scale_study.epoch_table(tmp_path, [250, 1000], 8)
    assert lines[0] == "| training | 250 spk: utt/s, s/epoch | 1,000 spk: utt/s, s/epoch | b 250->1,000 |"
    # medians 110 and 100 utt/s: 2,000 / 110 and 8,000 / 100 s an epoch
    b = math.log((8000 / 100) / (2000 / 110)) / math.log(4)
    assert lines[2] == f"| gru_softmax | 110, 18.2 | 100, 80.0 | {b:.2f} |"
    assert scale_study.epoch_table(tmp_path / "none", [250], 8) == []
